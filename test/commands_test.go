package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// TestSecondAgentRefused: a second `ferry-agent run` with the same lock file
// exits at once, non-zero, naming the agent that runs.
func TestSecondAgentRefused(t *testing.T) {
	t.Parallel()
	// No gateway is needed: the first agent keeps retrying and holds the lock.
	first := writeAgentConfig(t, nil, agentOpts{URL: "wss://127.0.0.1:9/v1/tunnel", Token: "fat_unused"})
	first.Start(t)

	second := writeAgentConfig(t, nil, agentOpts{URL: "wss://127.0.0.1:9/v1/tunnel", Token: "fat_unused", LockFile: first.LockFile})
	start := time.Now()
	res := testutil.Run(t, 10*time.Second, nil, agentBin, "run", "--config", second.ConfigPath)
	t.Logf("second agent exited with %d after %s: %s", res.Code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(res.Stderr))
	if res.Code == 0 {
		t.Fatalf("second agent exited 0, want non-zero")
	}
	if !strings.Contains(res.Stderr, "already running") {
		t.Errorf("second agent's message does not say %q: %s", "already running", res.Stderr)
	}
	pid := regexp.MustCompile(`\b` + strconv.Itoa(first.Proc.PID()) + `\b`)
	if !pid.MatchString(res.Stderr) {
		t.Errorf("second agent's message does not name the running agent's pid %d: %s", first.Proc.PID(), res.Stderr)
	}
	if first.Proc.Exited() {
		t.Errorf("the first agent exited")
	}
}

// TestAgentConfigErrors: a broken config stops `ferry-agent run` at once,
// with a message that names what is wrong.
func TestAgentConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "agent.token")
	if err := os.WriteFile(tokenFile, []byte("fat_unused\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	head := "[gateway]\nurl = \"wss://127.0.0.1:9/v1/tunnel\"\ntoken_file = " + strconv.Quote(tokenFile) + "\n"
	tail := "\n[agent]\nlock_file = " + strconv.Quote(filepath.Join(dir, "agent.lock")) + "\n[metrics]\nlisten = \"\"\n"
	tests := []struct {
		name string
		cfg  string
		want []string // each must appear in stderr
	}{
		{"unknown key", head + "retry_every = \"5s\"\n" + tail, []string{"retry_every"}},
		{"unknown table", head + "[acess]\nallow = []\n" + tail, []string{"acess"}},
		{"bad duration", head + "[reconnect]\ninitial_interval = \"fast\"\n" + tail, []string{"initial_interval", "fast"}},
		{"duration without unit", head + "[reconnect]\nmax_interval = 60\n" + tail, []string{"max_interval"}},
		{"missing url", "[gateway]\ntoken_file = " + strconv.Quote(tokenFile) + "\n" + tail, []string{"gateway.url"}},
		{"allow rule without port", head + "[access]\nallow = [\"db.internal\"]\n" + tail, []string{"db.internal"}},
		{"allow rule bad CIDR", head + "[access]\nallow = [\"10.0.0.0/33:5432\"]\n" + tail, []string{"10.0.0.0/33:5432"}},
		{"allow rule bad port range", head + "[access]\nallow = [\"db.internal:5439-5432\"]\n" + tail, []string{"db.internal:5439-5432"}},
		{"not TOML", "[gateway\nurl = \n", []string{"agent.toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "agent.toml")
			if err := os.WriteFile(path, []byte(tt.cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			res := testutil.Run(t, 10*time.Second, nil, agentBin, "run", "--config", path)
			t.Logf("exit %d: %s", res.Code, strings.TrimSpace(res.Stderr))
			if res.Code == 0 {
				t.Fatalf("ferry-agent run exited 0 with a broken config")
			}
			for _, w := range tt.want {
				if !strings.Contains(res.Stderr, w) {
					t.Errorf("stderr does not name %q:\n%s", w, res.Stderr)
				}
			}
		})
	}
}

var reAgentToken = regexp.MustCompile(`fat_[A-Za-z0-9_-]{20,}`)

// TestCLI drives the gateway's admin CLI and the agent's status command as
// an operator would.
func TestCLI(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	env := []string{"FERRY_API=http://" + g.AdminAddr, "FERRY_ADMIN_TOKEN=" + g.Opts.AdminToken}
	cli := func(args ...string) testutil.Result {
		t.Helper()
		res := testutil.Run(t, 20*time.Second, env, gatewayBin, args...)
		t.Logf("$ ferry-gateway %s → exit %d\n%s%s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
		return res
	}

	res := cli("agents", "create", "cli-agent", "--description", "made by the CLI test")
	if res.Code != 0 {
		t.Fatalf("agents create: exit %d", res.Code)
	}
	toks := reAgentToken.FindAllString(res.Stdout+res.Stderr, -1)
	if len(toks) != 1 {
		t.Fatalf("agents create printed %d tokens, want exactly 1", len(toks))
	}
	tok := toks[0]
	if !strings.Contains(res.Stdout, tok) {
		t.Errorf("agents create printed the token on stderr, want stdout (so it can be captured)")
	}

	a := startAgent(t, g, agentOpts{Token: tok})
	a.WaitTunnels(t, 2)
	g.WaitOnline(t, "cli-agent", 2)

	res = cli("agents", "list")
	if res.Code != 0 {
		t.Fatalf("agents list: exit %d", res.Code)
	}
	line := lineWith(res.Stdout, "cli-agent")
	if line == "" {
		t.Fatalf("agents list does not show cli-agent")
	}
	if !regexp.MustCompile(`(?i)\b(online|yes|true|up)\b`).MatchString(line) || regexp.MustCompile(`(?i)\boffline\b`).MatchString(line) {
		t.Errorf("agents list does not show cli-agent online: %q", line)
	}
	if strings.Contains(res.Stdout+res.Stderr, tok) {
		t.Errorf("agents list printed the agent token")
	}

	res = cli("agents", "show", "cli-agent")
	if res.Code != 0 {
		t.Fatalf("agents show: exit %d", res.Code)
	}
	if !strings.Contains(res.Stdout, "cli-agent") {
		t.Errorf("agents show does not name the agent")
	}
	if strings.Contains(res.Stdout+res.Stderr, tok) || reAgentToken.MatchString(res.Stdout+res.Stderr) {
		t.Errorf("agents show printed a token")
	}

	// `ferry-agent status` asks the address in the config: give it the one
	// the running agent got for 127.0.0.1:0.
	cfg, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	statusCfg := filepath.Join(t.TempDir(), "agent.toml")
	fixed := strings.Replace(string(cfg), `listen = "127.0.0.1:0"`, `listen = "`+a.MetricsAddr+`"`, 1)
	if err := os.WriteFile(statusCfg, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	st := testutil.Run(t, 10*time.Second, nil, agentBin, "status", "--config", statusCfg)
	t.Logf("$ ferry-agent status → exit %d\n%s%s", st.Code, st.Stdout, st.Stderr)
	if st.Code != 0 {
		t.Fatalf("ferry-agent status: exit %d", st.Code)
	}
	if n := strings.Count(st.Stdout, "connected"); n < 2 {
		t.Errorf("ferry-agent status shows %d connected tunnels, want 2", n)
	}
	if strings.Contains(st.Stdout+st.Stderr, tok) {
		t.Errorf("ferry-agent status printed the agent token")
	}
}

// lineWith returns the first line of s that contains sub, or "".
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
