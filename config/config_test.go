package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/access"
)

const minimalAgent = `[gateway]
url = "wss://gw.example.com"
`

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestExampleConfigsLoad(t *testing.T) {
	t.Parallel()
	a, err := loadAgent("../configs/agent.toml", env(map[string]string{EnvAgentToken: "tok-from-env"}))
	if err != nil {
		t.Fatalf("configs/agent.toml: %v", err)
	}
	if tok, err := a.ResolveToken(env(map[string]string{EnvAgentToken: "tok-from-env"})); err != nil || tok != "tok-from-env" {
		t.Errorf("ResolveToken = %q, %v", tok, err)
	}
	if len(a.Access.Allow) == 0 || a.Gateway.URL == "" {
		t.Errorf("example agent config lost values: %+v", a)
	}
	g, err := loadGateway("../configs/gateway.toml", env(nil))
	if err != nil {
		t.Fatalf("configs/gateway.toml: %v", err)
	}
	if len(g.Connections) == 0 {
		t.Errorf("example gateway config lost its connection: %+v", g)
	}
}

// TestExamplesShowEveryKey keeps the annotated examples complete: every key of
// the schema must appear in them.
func TestExamplesShowEveryKey(t *testing.T) {
	t.Parallel()
	for file, v := range map[string]any{"../configs/agent.toml": Agent{}, "../configs/gateway.toml": Gateway{}} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := keyLines(string(data))
		// Commented-out keys count as shown.
		uncommented := keyLines(regexp.MustCompile(`(?m)^# ([a-z_]+ = )`).ReplaceAllString(string(data), "$1"))
		schema := map[string]reflect.Type{}
		schemaOf(reflect.TypeOf(v), "", schema)
		for k := range schema {
			if _, ok := lines[k]; !ok {
				if _, ok := uncommented[k]; !ok {
					t.Errorf("%s does not show key %q", file, k)
				}
			}
		}
	}
}

func TestAgentDefaults(t *testing.T) {
	t.Parallel()
	a, err := ParseAgent([]byte(minimalAgent), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultAgent()
	want.Gateway.URL = "wss://gw.example.com/v1/tunnel"
	if !reflect.DeepEqual(*a, want) {
		t.Errorf("ParseAgent(minimal) =\n%+v\nwant\n%+v", *a, want)
	}
	if a.Metrics.Listen != "127.0.0.1:9464" || a.Gateway.HAConnections != 2 || a.Reconnect.MaxInterval != time.Minute {
		t.Errorf("defaults not applied: %+v", a)
	}
}

func TestAgentValues(t *testing.T) {
	t.Parallel()
	a, err := ParseAgent([]byte(`
[gateway]
url = "wss://gw.example.com:8443/custom"
allowed_ips = ["203.0.113.10", "198.51.100.0/24", "::ffff:192.0.2.1"]
keepalive_interval = "2s"
keepalive_timeout = "5s"
[metrics]
listen = ""
[agent]
lock_file = ""
shutdown_grace = "0s"
[log]
level = "debug"
`), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	if a.Gateway.URL != "wss://gw.example.com:8443/custom" {
		t.Errorf("URL = %q, want it unchanged", a.Gateway.URL)
	}
	if a.Metrics.Listen != "" {
		t.Errorf(`metrics.listen = "" did not disable metrics: %q`, a.Metrics.Listen)
	}
	if a.Agent.LockFile != DefaultAgent().Agent.LockFile || a.Agent.ShutdownGrace != 0 {
		t.Errorf("agent = %+v", a.Agent)
	}
	if a.Gateway.KeepaliveTimeout != 5*time.Second {
		t.Errorf("keepalive_timeout = %s", a.Gateway.KeepaliveTimeout)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("203.0.113.10/32"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("192.0.2.1/32"),
	}
	if !reflect.DeepEqual(a.Gateway.AllowedPrefixes, want) {
		t.Errorf("AllowedPrefixes = %v, want %v", a.Gateway.AllowedPrefixes, want)
	}
	if a.Log.SlogLevel() != slog.LevelDebug {
		t.Errorf("SlogLevel = %v", a.Log.SlogLevel())
	}
}

func TestAgentErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		toml string
		want []string // substrings of the error
	}{
		{"unknown key", "[gateway]\nurl = \"wss://gw.example.com\"\ntokne_file = \"/x\"\n",
			[]string{`agent.toml: unknown key "gateway.tokne_file" (line 3)`, `did you mean "gateway.token_file"`}},
		{"unknown key case", "[gateway]\nURL = \"wss://gw.example.com\"\n",
			[]string{`unknown key "gateway.URL" (line 2)`, `did you mean "gateway.url"`}},
		{"unknown table", minimalAgent + "[gatewya]\nurl = \"x\"\n[x.y]\nz = 1\n",
			[]string{`unknown key "gatewya" (line 3)`, `unknown key "x" (line 5)`}},
		{"unknown dotted key", minimalAgent + "[access]\nallow.x = 1\n", []string{`access.allow`}},
		{"unknown key in inline table", "gateway = { url = \"wss://gw.example.com\", tokn = \"x\" }\n",
			[]string{`unknown key "gateway.tokn" (line 1)`}},
		{"unknown key after multiline", minimalAgent + "[access]\nallow = [\n  \"db:1\", # c\n  \"\"\"x\ny\"\"\",\n]\nbogus = 1\n",
			[]string{`unknown key "access.bogus" (line 9)`}},
		{"bad duration", minimalAgent + "[reconnect]\nmax_interval = \"6o s\"\n",
			[]string{`key "reconnect.max_interval" (line 4)`, "invalid duration"}},
		{"number duration", minimalAgent + "[reconnect]\n\nmax_interval = 60\n",
			[]string{`key "reconnect.max_interval" (line 5)`, `"30s"`}},
		{"wrong type", "[gateway]\nurl = \"wss://gw.example.com\"\nha_connections = \"2\"\n",
			[]string{`agent.toml: key "gateway.ha_connections" (line 3): want an integer, got a string`}},
		{"table type", "gateway = 1\n", []string{`key "gateway" (line 1): want a table, got an integer`}},
		{"syntax", "[gateway\n", []string{"agent.toml: line ", "table name"}},
		{"missing url", "[gateway]\n", []string{"gateway.url is required"}},
		{"ws url", "[gateway]\nurl = \"ws://gw.example.com\"\n", []string{"gateway.url", "wss://"}},
		{"url without host", "[gateway]\nurl = \"wss:///v1/tunnel\"\n", []string{"gateway.url", "missing host"}},
		{"url with userinfo", "[gateway]\nurl = \"wss://tok:secret@gw.example.com\"\n", []string{"gateway.url must not contain user info"}},
		{"bad allow rule", minimalAgent + "[access]\nallow = [\"db:99999\"]\n",
			[]string{`agent.toml: access.allow: allow rule "db:99999": port 99999 out of range 1-65535`}},
		{"bare star", minimalAgent + "[access]\nallow = [\"*:443\"]\n", []string{"access.allow", "0.0.0.0/0"}},
		{"ha_connections 0", minimalAgent + "ha_connections = 0\n", []string{"gateway.ha_connections = 0", "between 1 and 16"}},
		{"ha_connections 17", minimalAgent + "ha_connections = 17\n", []string{"gateway.ha_connections = 17"}},
		{"keepalive equal", minimalAgent + "keepalive_interval = \"30s\"\n", []string{"gateway.keepalive_timeout = 30s must be longer than gateway.keepalive_interval = 30s"}},
		{"keepalive less", minimalAgent + "keepalive_interval = \"10s\"\nkeepalive_timeout = \"5s\"\n", []string{"gateway.keepalive_timeout"}},
		{"handshake", minimalAgent + "handshake_timeout = \"0s\"\n", []string{"gateway.handshake_timeout = 0s: must be positive"}},
		{"allowed_ips", minimalAgent + "allowed_ips = [\"gw.example.com\", \"10.0.0.1/8\"]\n",
			[]string{`gateway.allowed_ips: "gw.example.com" is not an IP`, `did you mean "10.0.0.0/8"`}},
		{"proxy scheme", minimalAgent + "proxy = \"socks5://u:pw@p:1080\"\n", []string{"gateway.proxy", "http://"}},
		{"token with space", minimalAgent + "token = \"a b\"\n", []string{"gateway.token", "white space"}},
		{"reconnect order", minimalAgent + "[reconnect]\ninitial_interval = \"2m\"\n", []string{"reconnect.initial_interval = 2m0s must not exceed reconnect.max_interval = 1m0s"}},
		{"dial timeout", minimalAgent + "[access]\ndial_timeout = \"-1s\"\n", []string{"access.dial_timeout"}},
		{"max streams", minimalAgent + "[access]\nmax_streams = 0\n", []string{"access.max_streams"}},
		{"metrics listen", minimalAgent + "[metrics]\nlisten = \"9464\"\n", []string{"metrics.listen"}},
		{"log level", minimalAgent + "[log]\nlevel = \"verbose\"\nformat = \"xml\"\n", []string{"log.level \"verbose\"", "log.format \"xml\""}},
		{"grace", minimalAgent + "[agent]\nshutdown_grace = \"-1s\"\n", []string{"agent.shutdown_grace"}},
		{"max procs", minimalAgent + "[agent]\nmax_procs = -1\n", []string{"agent.max_procs = -1: must be 0 (automatic) or a number of CPUs"}},
		{"every problem", "[gateway]\nha_connections = 0\n[access]\nmax_streams = 0\n",
			[]string{"agent.toml: gateway.url", "agent.toml: gateway.ha_connections", "agent.toml: access.max_streams"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseAgent([]byte(tt.toml), "agent.toml")
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		minimalAgent + "proxy = \"ftp://user:hunter2@p:21\"\n",
		minimalAgent + "proxy = \"http://user:hunter2@p:21/%zz\"\n",
		"[gateway]\nurl = \"ws://user:hunter2@gw.example.com\"\n",
		minimalAgent + "token = \"hunter2 x\"\n",
	} {
		_, err := ParseAgent([]byte(s), "agent.toml")
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseAgent(%q) = %v: want an error without the secret", s, err)
		}
	}
}

func TestValidateDoesNotMutate(t *testing.T) {
	t.Parallel()
	a := DefaultAgent()
	a.Gateway.URL = "wss://gw.example.com"
	a.Access.Allow = []string{"DB:1"}
	a.Agent.LockFile = ""
	before := a
	before.Access.Allow = []string{"DB:1"}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, before) {
		t.Errorf("Validate changed the agent config:\n%+v\n%+v", a, before)
	}
	g := DefaultGateway()
	g.TLS.SelfSigned = true
	gBefore := g
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, gBefore) {
		t.Error("Validate changed the gateway config")
	}
}

func TestResolveToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.token")
	if err := os.WriteFile(file, []byte("  file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		env, tok, tfile string
		want, wantErr   string
	}{
		{name: "env wins", env: "env-token", tok: "inline-token", tfile: file, want: "env-token"},
		{name: "token over file", tok: "inline-token", tfile: file, want: "inline-token"},
		{name: "file trimmed", tfile: file, want: "file-token"},
		{name: "missing", wantErr: "no agent token: set gateway.token_file (a file holding only the token), gateway.token, or the FERRY_AGENT_TOKEN environment variable"},
		{name: "unreadable", tfile: filepath.Join(dir, "nope"), wantErr: "gateway.token_file: open "},
		{name: "empty file", tfile: empty, wantErr: "is empty"},
		{name: "bad env", env: "a\x01b", wantErr: "FERRY_AGENT_TOKEN contains white space"},
	}
	for _, tt := range tests {
		a := DefaultAgent()
		a.Gateway.Token, a.Gateway.TokenFile = tt.tok, tt.tfile
		got, err := a.ResolveToken(env(map[string]string{EnvAgentToken: tt.env}))
		switch {
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("%s: ResolveToken = %q, %v; want %q", tt.name, got, err, tt.want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: ResolveToken error = %v; want %q", tt.name, err, tt.wantErr)
		case err != nil && (strings.Contains(err.Error(), "token\n") || got != ""):
			t.Errorf("%s: error case returned %q / %v", tt.name, got, err)
		}
	}
	a := DefaultAgent()
	if _, err := a.ResolveToken(env(nil)); !errors.Is(err, ErrNoToken) {
		t.Errorf("missing token error = %v, want ErrNoToken", err)
	}
}

func TestLoadAgentNeedsToken(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(minimalAgent), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadAgent(path, env(nil)); !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), path) {
		t.Errorf("loadAgent without token = %v, want ErrNoToken naming the file", err)
	}
	if _, err := loadAgent(path, env(map[string]string{EnvAgentToken: "t"})); err != nil {
		t.Errorf("loadAgent with env token: %v", err)
	}
	if _, err := LoadAgent(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("LoadAgent(missing) = %v", err)
	}
}

func TestDefaultLockFile(t *testing.T) {
	t.Parallel()
	tests := []struct{ goos, programData, want string }{
		{"linux", "", "/run/ferry-agent.lock"},
		{"windows", `D:\PD`, `D:\PD\Ferry\ferry-agent.lock`},
		{"windows", "", `C:\ProgramData\Ferry\ferry-agent.lock`},
		{"darwin", "", filepath.Join("/tmp/x", "ferry-agent.lock")},
	}
	for _, tt := range tests {
		got := defaultLockFile(tt.goos, env(map[string]string{"ProgramData": tt.programData}), "/tmp/x")
		if got != tt.want {
			t.Errorf("defaultLockFile(%s) = %q, want %q", tt.goos, got, tt.want)
		}
	}
}

func TestSlogLevel(t *testing.T) {
	t.Parallel()
	for level, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError, "": slog.LevelInfo} {
		if got := (Log{Level: level}).SlogLevel(); got != want {
			t.Errorf("SlogLevel(%q) = %v, want %v", level, got, want)
		}
	}
}

const minimalGateway = `[tls]
self_signed = true
`

func TestGatewayDefaults(t *testing.T) {
	t.Parallel()
	g, err := ParseGateway([]byte(minimalGateway), "gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultGateway()
	want.TLS.SelfSigned = true
	if !reflect.DeepEqual(*g, want) {
		t.Errorf("ParseGateway(minimal) = %+v, want %+v", *g, want)
	}
	if g.NodeID == "" || g.StoreDSN() != filepath.Join("data", "ferry.db") {
		t.Errorf("NodeID %q, StoreDSN %q", g.NodeID, g.StoreDSN())
	}
	g.Store = Store{Driver: "postgres", DSN: "postgres://db/ferry"}
	if g.StoreDSN() != "postgres://db/ferry" {
		t.Errorf("StoreDSN = %q", g.StoreDSN())
	}
}

func TestGatewayErrors(t *testing.T) {
	t.Parallel()
	conn := func(name, agent, target, listen string) string {
		return "[[connections]]\nname = \"" + name + "\"\nagent = \"" + agent + "\"\ntarget = \"" + target + "\"\nlisten = \"" + listen + "\"\n"
	}
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"tls neither", "", []string{"tls: set cert_file and key_file, or self_signed = true"}},
		{"tls both", "[tls]\ncert_file = \"c\"\nkey_file = \"k\"\nself_signed = true\n", []string{"tls: set either cert_file and key_file, or self_signed = true, not both"}},
		{"tls key missing", "[tls]\ncert_file = \"c\"\n", []string{"tls.key_file is required"}},
		{"same port", minimalGateway + "[listen]\ntunnel = \":8443\"\nadmin = \"127.0.0.1:8443\"\n", []string{"listen.admin \"127.0.0.1:8443\" must not use the tunnel port 8443"}},
		{"bad listen", minimalGateway + "[listen]\ntunnel = \"443\"\n", []string{"listen.tunnel \"443\""}},
		{"driver", minimalGateway + "[store]\ndriver = \"mysql\"\n", []string{`store.driver "mysql"`}},
		{"postgres dsn", minimalGateway + "[store]\ndriver = \"postgres\"\n", []string{"store.dsn is required"}},
		{"limits", minimalGateway + "[limits]\nmax_streams_per_agent = 0\nfailed_auth_per_minute = 0\nopen_timeout = \"0s\"\nkeepalive_timeout = \"10s\"\nmax_procs = -2\n",
			[]string{"limits.max_procs = -2", "limits.max_streams_per_agent", "limits.failed_auth_per_minute", "limits.open_timeout", "limits.keepalive_timeout = 10s must be longer"}},
		{"unknown key", minimalGateway + "[limits]\nmax_stream_per_agent = 5\n", []string{`unknown key "limits.max_stream_per_agent" (line 4)`, `did you mean "limits.max_streams_per_agent"`}},
		{"unknown connection key", minimalGateway + "[[connections]]\nname = \"a\"\n[[connections]]\nnmae = \"b\"\n", []string{`unknown key "connections.nmae" (line 6)`}},
		{"duration number", minimalGateway + "[limits]\nopen_timeout = 15\n", []string{`key "limits.open_timeout" (line 4)`}},
		{"duplicate names", minimalGateway + conn("erp-db", "a1", "db:5432", "127.0.0.1:1") + conn("erp-db", "a2", "db:5432", "127.0.0.1:2"),
			[]string{`connections[1] ("erp-db"): duplicate connection name "erp-db", also used by connections[0]`}},
		{"duplicate listen", minimalGateway + conn("a", "a1", "db:5432", "127.0.0.1:1") + conn("b", "a1", "db:5432", "127.0.0.1:1"),
			[]string{`listen "127.0.0.1:1" is also used by connections[0]`}},
		{"bad connection", minimalGateway + conn("Bad Name", "", "db", "x"),
			[]string{`connections[0] ("Bad Name"): name: invalid name "Bad Name"`, "agent is required", `target: bad target "db": missing port`, `listen "x"`}},
		{"missing connection fields", minimalGateway + "[[connections]]\n", []string{"connections[0]: name is required", "target is required", "listen is required"}},
		{"node id", minimalGateway + "node_id = \"a b\"\n", []string{"node_id"}},
		{"data dir", "data_dir = \"\"\n" + minimalGateway, []string{"data_dir is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseGateway([]byte(tt.toml), "gateway.toml")
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestGatewayListenPortZero(t *testing.T) {
	t.Parallel()
	_, err := ParseGateway([]byte(minimalGateway+"[listen]\ntunnel = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n"), "gateway.toml")
	if err != nil {
		t.Errorf("port 0 on both listeners (tests): %v", err)
	}
}

func TestResolveAdminToken(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(file, []byte("file-admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := DefaultGateway()
	if tok, err := g.ResolveAdminToken(env(nil)); tok != "" || err != nil {
		t.Errorf("neither set = %q, %v; want \"\", nil", tok, err)
	}
	g.Admin.TokenFile = file
	if tok, err := g.ResolveAdminToken(env(nil)); tok != "file-admin" || err != nil {
		t.Errorf("file = %q, %v", tok, err)
	}
	if tok, err := g.ResolveAdminToken(env(map[string]string{EnvAdminToken: "env-admin"})); tok != "env-admin" || err != nil {
		t.Errorf("env = %q, %v", tok, err)
	}
	g.Admin.TokenFile = file + ".missing"
	if _, err := g.ResolveAdminToken(env(nil)); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Errorf("missing file = %v", err)
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"a", "acme-dc1", "erp.db_1", "0", strings.Repeat("a", 63)} {
		if err := ValidName(s); err != nil {
			t.Errorf("ValidName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "-a", ".a", "_a", "A", "a b", "é", "a/b", strings.Repeat("a", 64)} {
		if err := ValidName(s); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidName", s, err)
		}
	}
}

func TestConnectionTargetUsesAccessSyntax(t *testing.T) {
	t.Parallel()
	_, err := ParseGateway([]byte(minimalGateway+"[[connections]]\nname = \"a\"\nagent = \"b\"\ntarget = \"0x7f.1:22\"\nlisten = \":1\"\n"), "gateway.toml")
	if !errors.Is(err, access.ErrBadTarget) {
		t.Errorf("ambiguous target error = %v, want access.ErrBadTarget", err)
	}
}

func TestKeyLines(t *testing.T) {
	t.Parallel()
	src := `# comment
top = 1
[a]
b = "x # not a comment"
"quoted.key" = 2
c.d = [
  1, # comment ]
  2,
]
e = '''
[fake]
'''
[[arr]]
f = """ \"""
"""
g = 'lit'
[ h . 'i' ]
j = {k = 1}
`
	want := map[string]int{
		"top": 2, "a": 3, "a.b": 4, `a."quoted.key"`: 5, "a.c": 6, "a.c.d": 6,
		"a.e": 10, "arr": 13, "arr.f": 14, "arr.g": 16, "h": 17, "h.i": 17, "h.i.j": 18,
	}
	got := keyLines(src)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keyLines =\n%v\nwant\n%v", got, want)
	}
}

func FuzzLoadAgent(f *testing.F) {
	for _, s := range []string{
		minimalAgent,
		"",
		"[gateway]\nurl = 1\n",
		minimalAgent + "[access]\nallow = [\"db:1\", \"*.x:2-3\", \"[::1]:4\"]\n",
		minimalAgent + "[reconnect]\nmax_interval = 60\n",
		"gateway = { url = \"wss://x\", tokn = 1 }\n",
		"[[gateway]]\n",
		"a = \"\"\"\n\"\"\"\"\nb.c = 1\n",
		"[x]\n[x.y]\n'z' = [[1], {a=1}]\n",
	} {
		f.Add([]byte(s))
	}
	if data, err := os.ReadFile("../configs/agent.toml"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAgent(data, "fuzz.toml")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("ParseAgent succeeded but Validate fails: %v", err)
		}
		if _, err := access.Parse(a.Access.Allow); err != nil {
			t.Fatalf("ParseAgent accepted allow rules access.Parse rejects: %v", err)
		}
		_ = keyLines(string(data))
	})
}

func FuzzParseGateway(f *testing.F) {
	f.Add([]byte(minimalGateway))
	f.Add([]byte(minimalGateway + "[[connections]]\nname = \"a\"\nagent = \"b\"\ntarget = \"db:1\"\nlisten = \":1\"\n"))
	if data, err := os.ReadFile("../configs/gateway.toml"); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGateway(data, "fuzz.toml")
		if err == nil {
			if err := g.Validate(); err != nil {
				t.Fatalf("ParseGateway succeeded but Validate fails: %v", err)
			}
			_ = g.StoreDSN()
		}
	})
}
