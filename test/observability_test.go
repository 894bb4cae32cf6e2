package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-tunnel/ferry/internal/testutil"
	"github.com/ferry-tunnel/ferry/metrics"
)

const (
	alertsFile    = "../configs/prometheus/ferry-alerts.yml"
	alertTestFile = "../configs/prometheus/ferry-alerts_test.yml"
	dashboardFile = "../configs/grafana/ferry.json"
)

// promtool finds promtool, or skips (fails when FERRY_REQUIRE_SERVICES=1).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	msg := "promtool not found: install Debian's prometheus package (scripts/test-services.sh start does)"
	if os.Getenv(testutil.EnvRequireServices) == "1" {
		t.Fatal(msg + "; " + testutil.EnvRequireServices + "=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}

// TestAlertRulesPromtool: the rules load in Prometheus, and their unit
// tests (configs/prometheus/ferry-alerts_test.yml) pass.
func TestAlertRulesPromtool(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", alertTestFile},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Errorf("promtool %s: %v", strings.Join(args, " "), err)
		}
	}
}

// TestAlertRulesShape checks what promtool does not: every alert the docs
// promise exists, with a for:, a summary and a description.
func TestAlertRulesShape(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	rules := regexp.MustCompile(`(?m)^\s*- alert: `).Split(string(data), -1)[1:]
	names := map[string]bool{}
	for _, r := range rules {
		name, _, _ := strings.Cut(r, "\n")
		names[name] = true
		for _, want := range []string{"expr:", "for:", "summary:", "description:", "severity:"} {
			if !strings.Contains(r, want) {
				t.Errorf("alert %s has no %s", name, want)
			}
		}
	}
	for _, want := range []string{"FerryAgentDown", "FerryAgentNoTunnel", "FerryAgentReconnectStorm", "FerryAgentDialFailures",
		"FerryAgentDeniedBurst", "FerryAgentAuthFailed", "FerryGatewayHandshakeFailures", "FerryGatewayAgentOffline"} {
		if !names[want] {
			t.Errorf("no alert %s", want)
		}
	}
	docs, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range names {
		if !strings.Contains(string(docs), name) {
			t.Errorf("docs/observability.md does not say what to do for %s", name)
		}
	}
}

// descNames records the metric names of every collector registered on it.
type descNames map[string]bool

var fqNameRe = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d descNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := fqNameRe.FindStringSubmatch(desc.String()); m != nil {
			d[m[1]] = true
		}
	}
	return nil
}

func (d descNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}

func (d descNames) Unregister(prometheus.Collector) bool { return false }

// knownMetrics are the names of both programs' metric sets, as the code
// defines them.
func knownMetrics() descNames {
	d := descNames{}
	metrics.NewAgent(d, "test", time.Now())
	metrics.NewGateway(d, "test")
	return d
}

var metricRe = regexp.MustCompile(`\bferry_[a-z0-9_]+`)

// checkNames fails for each ferry_* name in expr that the code does not
// define (histogram series may add _bucket, _sum or _count).
func checkNames(t *testing.T, where, expr string, known descNames, used map[string]bool) {
	t.Helper()
	for _, n := range metricRe.FindAllString(expr, -1) {
		base := n
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suf); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			t.Errorf("%s uses %s, which no metric set defines", where, n)
		}
		used[base] = true
	}
}

// TestDashboardAndAlertsUseRealMetrics: the dashboard is a valid Grafana
// dashboard with a data source variable, it shows what the docs promise,
// and every metric it or the alert rules name exists in the code.
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	t.Parallel()
	known := knownMetrics()
	if len(known) < 15 {
		t.Fatalf("found only %d metric names: %v", len(known), known)
	}
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion < 36 {
		t.Errorf("dashboard title %q uid %q schemaVersion %d", dash.Title, dash.UID, dash.SchemaVersion)
	}
	hasDS := false
	for _, v := range dash.Templating.List {
		hasDS = hasDS || v.Type == "datasource" && v.Name == "datasource"
	}
	if !hasDS {
		t.Error("the dashboard has no datasource variable")
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkNames(t, "dashboard panel "+p.Title, tg.Expr, known, used)
		}
	}
	for _, want := range []string{
		"ferry_agent_tunnel_connected_seconds_total", "ferry_agent_tunnels_connected", "ferry_agent_bytes_total",
		"ferry_agent_streams_total", "ferry_agent_streams_active", "ferry_agent_dial_duration_seconds",
		"ferry_agent_tunnel_rtt_seconds", "ferry_agent_tunnel_connects_total", "ferry_agent_start_time_seconds",
		"ferry_gateway_agents_online", "ferry_gateway_handshakes_total", "ferry_gateway_bytes_total",
		"ferry_gateway_streams_total", "ferry_gateway_stream_open_duration_seconds",
	} {
		if !used[want] {
			t.Errorf("the dashboard shows nothing of %s", want)
		}
	}
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	checkNames(t, alertsFile, string(alerts), known, map[string]bool{})
}

// TestLogFile runs both programs with [log] file set: each writes its log
// to stderr and to the file, the agent's per-connection activity lines
// included; a bad [log] section stops a program with a clear error.
func TestLogFile(t *testing.T) {
	dir := t.TempDir()
	gwLog := filepath.Join(dir, "gw", "gateway.log") // the directory does not exist yet
	echo := testutil.NewEchoServer(t)
	g := startGateway(t, gatewayOpts{
		Extra:       fmt.Sprintf("file = %q\nmax_size_mb = 1\nmax_files = 2", gwLog), // lands in [log]
		Connections: []conn{{Name: "echo", Agent: "a1", Target: echo.Addr}},
	})
	tok := g.CreateAgent(t, "a1")
	a := writeAgentConfig(t, g, agentOpts{Token: tok, Allow: []string{echo.Addr}, LogLevel: "info"})
	agentLog := filepath.Join(dir, "agent.log")
	cfg, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	withFile := strings.Replace(string(cfg), "[log]\n", fmt.Sprintf("[log]\nformat = \"json\"\nfile = %q\nmax_size_mb = 1\nmax_files = 3\n", agentLog), 1)
	if err := os.WriteFile(a.ConfigPath, []byte(withFile), 0o600); err != nil {
		t.Fatal(err)
	}
	// Start as Agent.Start does, reading the JSON log.
	a.Proc = testutil.Start(t, "ferry-agent", nil, agentBin, "run", "--config", a.ConfigPath)
	m, err := a.Proc.Log.WaitFor(regexp.MustCompile(`"msg":"metrics and status listening","addr":"([^"]+)"`), startTimeout)
	if err != nil {
		t.Fatalf("agent did not start: %v", err)
	}
	a.MetricsAddr = m[1]
	a.WaitTunnels(t, 2)
	g.WaitOnline(t, "a1", 2)
	checkEcho(t, g.Conns["echo"])

	// The activity line: one JSON object with the connection's fields.
	var line map[string]any
	testutil.Poll(t, 10*time.Second, "a connection line in the agent's log file", func() (bool, string) {
		b, _ := os.ReadFile(agentLog)
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(l, `"msg":"connection"`) {
				line = nil
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					return false, fmt.Sprintf("not JSON: %q", l)
				}
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d bytes, no connection line", len(b))
	})
	for _, k := range []string{"time", "level", "conn", "target", "result", "bytes_to_target", "bytes_from_target", "duration"} {
		if _, ok := line[k]; !ok {
			t.Errorf("the connection line has no %q: %v", k, line)
		}
	}
	if line["target"] != echo.Addr || line["result"] != "ok" {
		t.Errorf("connection line %v", line)
	}
	// The file holds what stderr shows. stderr reaches the test through a
	// pipe, so its copy of the line may lag the file's: wait for it.
	b, _ := os.ReadFile(agentLog)
	_, stderrErr := a.Proc.Log.WaitFor(regexp.MustCompile(`"msg":"connection"`), 10*time.Second)
	if !strings.Contains(string(b), `"msg":"ferry-agent started"`) || stderrErr != nil {
		t.Errorf("agent log file and stderr differ:\nfile:\n%s\nstderr:\n%s", b, a.Proc.Log.String())
	}
	gb, err := os.ReadFile(gwLog)
	if err != nil || !strings.Contains(string(gb), `msg="ferry-gateway started"`) {
		t.Errorf("gateway log file: %v\n%s", err, gb)
	}
	checkNoSecret(t, a.Proc, "agent token", tok)
	if strings.Contains(string(b)+string(gb), tok) {
		t.Error("a log file holds the agent token")
	}

	// status, for a person: uptime, the gateway IPs, connections, errors.
	// The agent logs a connection before it stops counting it as active:
	// wait for the count to drop.
	testutil.Poll(t, 10*time.Second, "no active connection in /status", func() (bool, string) {
		n, err := a.StatusStreams()
		if err != nil {
			return false, err.Error()
		}
		return n == 0, fmt.Sprintf("streams_active %d", n)
	})
	st := a.status(t)
	for _, want := range []string{"uptime:", "tunnels:            2 of 2 up", "active connections: 0", "127.0.0.1", "recent errors"} {
		if !strings.Contains(st, want) {
			t.Errorf("ferry-agent status lacks %q", want)
		}
	}

	// Bad [log] settings stop the programs at start with the key named.
	for _, tc := range []struct{ extra, want string }{
		{"max_files = 0", "log.max_files = 0"},
		{"max_size_mb = 0", "log.max_size_mb = 0"},
		{fmt.Sprintf("file = %q", filepath.Join(echoFile(t), "x.log")), "[log] file"},
	} {
		bad := strings.Replace(string(cfg), "[log]\n", "[log]\n"+tc.extra+"\n", 1)
		path := filepath.Join(t.TempDir(), "agent.toml")
		os.WriteFile(path, []byte(bad), 0o600)
		res := testutil.Run(t, 10*time.Second, nil, agentBin, "run", "--config", path)
		if res.Code != 1 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("[log] %s: exit %d, stderr %q; want 1 and %q", tc.extra, res.Code, res.Stderr, tc.want)
		}
	}
}

// echoFile is a regular file, so that a path under it cannot be created.
func echoFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "plain-file")
	os.WriteFile(p, []byte("x"), 0o600)
	return p
}

// status runs `ferry-agent status` against the running agent.
func (a *Agent) status(t *testing.T) string {
	t.Helper()
	cfg, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "status.toml")
	fixed := strings.Replace(string(cfg), `listen = "127.0.0.1:0"`, `listen = "`+a.MetricsAddr+`"`, 1)
	os.WriteFile(path, []byte(fixed), 0o600)
	res := testutil.Run(t, 10*time.Second, nil, agentBin, "status", "--config", path)
	t.Logf("ferry-agent status: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	if res.Code != 0 {
		t.Fatalf("ferry-agent status: exit %d", res.Code)
	}
	if code, _, _ := a.get("/status"); code != http.StatusOK {
		t.Fatalf("/status: %d", code)
	}
	return res.Stdout
}
