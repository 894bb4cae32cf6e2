package test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminclient"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

const startTimeout = 20 * time.Second

var (
	reGatewayStarted = regexp.MustCompile(`msg="ferry-gateway started".* tunnel=(\S+) admin=(\S+)`)
	reConnListening  = regexp.MustCompile(`msg="connection listening" connection=(\S+) listen=(\S+)`)
	reAgentMetrics   = regexp.MustCompile(`msg="metrics and status listening" addr=(\S+)`)
)

// conn is a static connection in the gateway's config.
type conn struct {
	Name, Agent, Target string
	Listen              string // "" means 127.0.0.1:0
}

// gatewayOpts say how to run a gateway. Zero values: fresh data dir, ports
// chosen by the kernel.
type gatewayOpts struct {
	DataDir     string
	Tunnel      string
	Admin       string
	AdminToken  string
	Connections []conn
	Extra       string // more TOML, appended
}

// Gateway is a running ferry-gateway.
type Gateway struct {
	Opts       gatewayOpts
	Proc       *testutil.Process
	ConfigPath string
	TunnelAddr string
	AdminAddr  string
	CertFile   string
	Conns      map[string]string // connection name → the address it listens on
	API        *adminclient.Client
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func startGateway(t *testing.T, o gatewayOpts) *Gateway {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Tunnel == "" {
		o.Tunnel = "127.0.0.1:0"
	}
	if o.Admin == "" {
		o.Admin = "127.0.0.1:0"
	}
	if o.AdminToken == "" {
		o.AdminToken = "adm-" + randomHex(16)
	}
	cfgPath := writeGatewayConfig(t, o, "e2e", "self_signed = true")
	g := &Gateway{Opts: o, ConfigPath: cfgPath, CertFile: filepath.Join(o.DataDir, "tls", "cert.pem"), Conns: map[string]string{}}
	// A restart reuses ports the kernel chose for the first run: while the
	// gateway was down, another test's socket may have taken one for a
	// moment (as testutil.GatewayNode.Start knows). Try again briefly.
	for attempt := 1; ; attempt++ {
		g.Proc = testutil.Start(t, "ferry-gateway", []string{"FERRY_ADMIN_TOKEN=" + o.AdminToken}, gatewayBin, "serve", "--config", cfgPath)
		_, err := g.Proc.Log.WaitFor(reGatewayStarted, startTimeout)
		if err == nil || attempt == 20 || !g.Proc.Exited() || !strings.Contains(g.Proc.Log.String(), "address already in use") {
			break
		}
		t.Logf("gateway start %d: a port is still taken, trying again", attempt)
		time.Sleep(100 * time.Millisecond)
	}
	g.awaitStart(t)
	g.API = adminclient.New("http://"+g.AdminAddr, o.AdminToken, &http.Client{Timeout: 10 * time.Second})
	return g
}

// writeGatewayConfig writes o as a gateway config with node_id nodeID and
// tls as the keys of its [tls] table, and returns the file's path.
func writeGatewayConfig(t *testing.T, o gatewayOpts, nodeID, tls string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir = %q\nnode_id = %q\n\n[listen]\ntunnel = %q\nadmin = %q\n\n", o.DataDir, nodeID, o.Tunnel, o.Admin)
	fmt.Fprintf(&b, "[tls]\n%s\n\n[store]\ndriver = \"sqlite\"\n\n[log]\nlevel = \"debug\"\n\n", tls)
	if o.Extra != "" {
		b.WriteString(o.Extra + "\n\n")
	}
	for _, c := range o.Connections {
		l := c.Listen
		if l == "" {
			l = "127.0.0.1:0"
		}
		fmt.Fprintf(&b, "[[connections]]\nname = %q\nagent = %q\ntarget = %q\nlisten = %q\n\n", c.Name, c.Agent, c.Target, l)
	}
	cfgPath := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// awaitStart waits for g.Proc to log that it started and reads from its log
// the addresses it listens on, for tunnels, the API and each connection.
func (g *Gateway) awaitStart(t *testing.T) {
	t.Helper()
	m, err := g.Proc.Log.WaitFor(reGatewayStarted, startTimeout)
	if err != nil {
		t.Fatalf("gateway did not start: %v", err)
	}
	g.TunnelAddr, g.AdminAddr = m[1], m[2]
	for _, line := range g.Proc.Log.Lines() {
		if m := reConnListening.FindStringSubmatch(line); m != nil {
			g.Conns[m[1]] = m[2]
		}
	}
	for _, c := range g.Opts.Connections {
		if g.Conns[c.Name] == "" {
			t.Fatalf("gateway logged no listen address for connection %q", c.Name)
		}
	}
}

// TunnelPort is the port agents connect to.
func (g *Gateway) TunnelPort() string {
	_, p, _ := net.SplitHostPort(g.TunnelAddr)
	return p
}

// URL is the tunnel URL for agents, with the name the certificate holds.
func (g *Gateway) URL() string { return "wss://localhost:" + g.TunnelPort() + "/v1/tunnel" }

// CreateAgent creates an agent through the API and returns its token.
func (g *Gateway) CreateAgent(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := g.API.CreateAgent(ctx, name, "end-to-end test agent")
	if err != nil {
		t.Fatalf("create agent %s: %v", name, err)
	}
	if a.Token == "" {
		t.Fatalf("create agent %s: the answer holds no token", name)
	}
	return a.Token
}

// WaitOnline polls the API until the agent is online with n tunnels.
func (g *Gateway) WaitOnline(t *testing.T, name string, n int) {
	t.Helper()
	d := testutil.Poll(t, startTimeout, "agent "+name+" online in the API", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a, err := g.API.GetAgent(ctx, name)
		if err != nil {
			return false, err.Error()
		}
		return a.Online && len(a.Tunnels) >= n, fmt.Sprintf("online=%v tunnels=%d", a.Online, len(a.Tunnels))
	})
	t.Logf("agent %s online in the API with %d tunnel(s) after %s", name, n, d.Round(time.Millisecond))
}

// agentOpts say how to configure an agent.
type agentOpts struct {
	URL      string // default: the gateway's
	CAFile   string // default: the gateway's self-signed certificate
	Token    string
	Allow    []string
	HA       int    // default 2
	LockFile string // default: in the agent's dir
	LogLevel string // default info (debug repeats handshake errors on every retry)
	Extra    string // more TOML, appended
}

// Agent is a ferry-agent: its files and, once started, its process.
type Agent struct {
	Dir         string
	ConfigPath  string
	TokenFile   string
	LockFile    string
	Proc        *testutil.Process
	MetricsAddr string
}

// writeAgentConfig writes an agent's config and token file into a new
// directory.
func writeAgentConfig(t *testing.T, g *Gateway, o agentOpts) *Agent {
	t.Helper()
	dir := t.TempDir()
	a := &Agent{Dir: dir, ConfigPath: filepath.Join(dir, "agent.toml"), TokenFile: filepath.Join(dir, "agent.token"), LockFile: o.LockFile}
	if a.LockFile == "" {
		a.LockFile = filepath.Join(dir, "agent.lock")
	}
	if o.URL == "" && g != nil {
		o.URL = g.URL()
	}
	if o.CAFile == "" && g != nil {
		o.CAFile = g.CertFile
	}
	if o.HA == 0 {
		o.HA = 2
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if err := os.WriteFile(a.TokenFile, []byte(o.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(o.Allow))
	for i, r := range o.Allow {
		quoted[i] = strconv.Quote(r)
	}
	cfg := fmt.Sprintf(`[gateway]
url = %q
token_file = %q
ca_file = %q
ha_connections = %d

[reconnect]
initial_interval = "100ms"
max_interval = "1s"

[access]
allow = [%s]

[metrics]
listen = "127.0.0.1:0"

[log]
level = %q

[agent]
lock_file = %q
shutdown_grace = "5s"
%s
`, o.URL, a.TokenFile, o.CAFile, o.HA, strings.Join(quoted, ", "), o.LogLevel, a.LockFile, o.Extra)
	if err := os.WriteFile(a.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

// startAgent writes a config and runs the agent with it, until its metrics
// address is known.
func startAgent(t *testing.T, g *Gateway, o agentOpts) *Agent {
	t.Helper()
	a := writeAgentConfig(t, g, o)
	a.Start(t)
	return a
}

// Start runs the agent with its config.
func (a *Agent) Start(t *testing.T) {
	t.Helper()
	a.Proc = testutil.Start(t, "ferry-agent", nil, agentBin, "run", "--config", a.ConfigPath)
	m, err := a.Proc.Log.WaitFor(reAgentMetrics, startTimeout)
	if err != nil {
		t.Fatalf("agent did not start: %v", err)
	}
	a.MetricsAddr = m[1]
}

func (a *Agent) get(path string) (int, string, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + a.MetricsAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// Metrics is the gateway's /metrics body, from its admin listener.
func (g *Gateway) Metrics(t *testing.T) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + g.AdminAddr + "/metrics")
	if err != nil {
		t.Fatalf("gateway /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("gateway /metrics: HTTP %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// Metric reads one metric from the gateway's /metrics (summed over
// matching series).
func (g *Gateway) Metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return testutil.Metric(g.Metrics(t), name, labels)
}

// Metrics is the agent's /metrics body.
func (a *Agent) Metrics(t *testing.T) string {
	t.Helper()
	code, body, err := a.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("agent /metrics: HTTP %d %v", code, err)
	}
	return body
}

// Metric reads one metric from /metrics (summed over matching series).
func (a *Agent) Metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return testutil.Metric(a.Metrics(t), name, labels)
}

// StatusStreams is streams_active from the agent's /status: the
// connections its stream limit counts. The agent logs a connection and
// drops the streams_active gauge a moment before it releases the count.
func (a *Agent) StatusStreams() (int64, error) {
	code, body, err := a.get("/status")
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("/status: HTTP %d %v", code, err)
	}
	var st struct {
		StreamsActive int64 `json:"streams_active"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return 0, fmt.Errorf("/status: %w", err)
	}
	return st.StreamsActive, nil
}

// Readyz is the status code of /readyz (0 when it did not answer).
func (a *Agent) Readyz() int {
	code, _, _ := a.get("/readyz")
	return code
}

// WaitTunnels polls /readyz and the tunnels gauge until n tunnels are up.
func (a *Agent) WaitTunnels(t *testing.T, n int) time.Duration {
	t.Helper()
	return testutil.Poll(t, startTimeout, fmt.Sprintf("agent with %d tunnels up", n), func() (bool, string) {
		code, body, err := a.get("/metrics")
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprintf("/metrics: HTTP %d %v", code, err)
		}
		up := testutil.Metric(body, "ferry_agent_tunnels_connected", nil)
		ready := a.Readyz()
		return ready == http.StatusOK && up >= float64(n), fmt.Sprintf("/readyz %d, tunnels_connected %v", ready, up)
	})
}

// checkNoSecret fails the test when a process's log holds secret.
func checkNoSecret(t *testing.T, p *testutil.Process, what, secret string) {
	t.Helper()
	if secret == "" {
		return
	}
	if n := p.Log.Count(regexp.MustCompile(regexp.QuoteMeta(secret))); n > 0 {
		t.Errorf("%s log holds the %s on %d line(s)", p.Name, what, n)
	}
}

// stack is a gateway and one agent connected to it with all its tunnels.
type stack struct {
	GW    *Gateway
	Agent *Agent
	Name  string // the agent's name
}

// newStack starts a gateway with a connection to each target (name →
// host:port) through agent "a1", creates the agent, starts it with allow,
// and waits until both its tunnels are up and the API shows it online.
func newStack(t *testing.T, targets map[string]string, allow []string) *stack {
	t.Helper()
	return newStackWith(t, gatewayOpts{}, targets, allow)
}

// newStackWith is newStack with more gateway options.
func newStackWith(t *testing.T, o gatewayOpts, targets map[string]string, allow []string) *stack {
	t.Helper()
	const name = "a1"
	for cn, target := range targets {
		o.Connections = append(o.Connections, conn{Name: cn, Agent: name, Target: target})
	}
	g := startGateway(t, o)
	tok := g.CreateAgent(t, name)
	a := startAgent(t, g, agentOpts{Token: tok, Allow: allow})
	d := a.WaitTunnels(t, 2)
	t.Logf("agent tunnels up after %s", d.Round(time.Millisecond))
	g.WaitOnline(t, name, 2)
	t.Cleanup(func() {
		// The tokens never appear in logs (checked as the test ends).
		checkNoSecret(t, a.Proc, "agent token", tok)
		checkNoSecret(t, g.Proc, "agent token", tok)
		checkNoSecret(t, g.Proc, "admin token", g.Opts.AdminToken)
	})
	return &stack{GW: g, Agent: a, Name: name}
}

// writeFile replaces path's content at once (write and rename), so a
// process reading it never sees half of it.
func writeFile(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dial connects to a gateway connection listener.
func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// echoOnce sends msg through addr to an echo target, half-closes, and
// returns what came back.
func echoOnce(addr string, msg []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return nil, fmt.Errorf("close write: %w", err)
	}
	return io.ReadAll(c)
}

// checkEcho asserts that a message goes through addr and back intact.
func checkEcho(t *testing.T, addr string) {
	t.Helper()
	msg := []byte("ferry " + randomHex(32))
	got, err := echoOnce(addr, msg)
	if err != nil {
		t.Fatalf("echo through %s: %v", addr, err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo through %s: sent %q, got %q", addr, msg, got)
	}
}
