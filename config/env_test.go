package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func lookupMap(m map[string]string) lookupFunc {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestAgentEnvOverrides(t *testing.T) {
	t.Parallel()
	file := minimalAgent + "[access]\nallow = [\"db.internal:5432\"]\n[metrics]\nlisten = \"127.0.0.1:9464\"\n"
	tests := []struct {
		name  string
		env   map[string]string
		check func(a *Agent) bool
	}{
		{"none keeps the file", nil, func(a *Agent) bool {
			return a.Gateway.URL == "wss://gw.example.com/v1/tunnel" && reflect.DeepEqual(a.Access.Allow, []string{"db.internal:5432"})
		}},
		{"string wins over the file", map[string]string{"FERRY_AGENT_GATEWAY_URL": "wss://other.example.com:8443"}, func(a *Agent) bool {
			return a.Gateway.URL == "wss://other.example.com:8443/v1/tunnel" // derived values still apply
		}},
		{"list, comma-separated and trimmed", map[string]string{"FERRY_AGENT_ACCESS_ALLOW": " a.internal:1, 10.0.0.0/8:5432-5439 ,,[fd00::1]:22"}, func(a *Agent) bool {
			return reflect.DeepEqual(a.Access.Allow, []string{"a.internal:1", "10.0.0.0/8:5432-5439", "[fd00::1]:22"})
		}},
		{"empty list", map[string]string{"FERRY_AGENT_ACCESS_ALLOW": ""}, func(a *Agent) bool {
			return len(a.Access.Allow) == 0
		}},
		{"empty string disables metrics", map[string]string{"FERRY_AGENT_METRICS_LISTEN": ""}, func(a *Agent) bool {
			return a.Metrics.Listen == ""
		}},
		{"int", map[string]string{"FERRY_AGENT_GATEWAY_HA_CONNECTIONS": " 4 "}, func(a *Agent) bool {
			return a.Gateway.HAConnections == 4
		}},
		{"duration", map[string]string{"FERRY_AGENT_AGENT_SHUTDOWN_GRACE": "90s", "FERRY_AGENT_RECONNECT_MAX_INTERVAL": "2m"}, func(a *Agent) bool {
			return a.Agent.ShutdownGrace == 90*time.Second && a.Reconnect.MaxInterval == 2*time.Minute
		}},
		{"lock file", map[string]string{"FERRY_AGENT_AGENT_LOCK_FILE": "/run/ferry/agent.lock"}, func(a *Agent) bool {
			return a.Agent.LockFile == "/run/ferry/agent.lock"
		}},
		{"empty lock file means the default", map[string]string{"FERRY_AGENT_AGENT_LOCK_FILE": ""}, func(a *Agent) bool {
			return a.Agent.LockFile == DefaultAgent().Agent.LockFile
		}},
		{"allowed ips are parsed after the override", map[string]string{"FERRY_AGENT_GATEWAY_ALLOWED_IPS": "203.0.113.10"}, func(a *Agent) bool {
			return len(a.Gateway.AllowedPrefixes) == 1 && a.Gateway.AllowedPrefixes[0].String() == "203.0.113.10/32"
		}},
		{"lower case and unknown names are ignored", map[string]string{"ferry_agent_gateway_url": "wss://x", "FERRY_AGENT_METRICS_SERVICE_HOST": "10.0.0.1", "FERRY_AGENT_PORT": "tcp://10.0.0.1:9464"}, func(a *Agent) bool {
			return a.Gateway.URL == "wss://gw.example.com/v1/tunnel"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := parseAgent([]byte(file), "agent.toml", lookupMap(tt.env))
			if err != nil {
				t.Fatalf("parseAgent: %v", err)
			}
			if !tt.check(a) {
				t.Errorf("with %v: got %+v", tt.env, *a)
			}
		})
	}
}

func TestGatewayEnvOverrides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		check func(g *Gateway) bool
	}{
		{"top-level key", map[string]string{"FERRY_GATEWAY_DATA_DIR": "/var/lib/ferry", "FERRY_GATEWAY_NODE_ID": "gw-7"}, func(g *Gateway) bool {
			return g.DataDir == "/var/lib/ferry" && g.NodeID == "gw-7" && g.StoreDSN() == "/var/lib/ferry/ferry.db"
		}},
		{"section keys", map[string]string{"FERRY_GATEWAY_LISTEN_TUNNEL": ":8443", "FERRY_GATEWAY_LISTEN_ADMIN": "0.0.0.0:8081"}, func(g *Gateway) bool {
			return g.Listen.Tunnel == ":8443" && g.Listen.Admin == "0.0.0.0:8081"
		}},
		{"bool", map[string]string{"FERRY_GATEWAY_TLS_SELF_SIGNED": "false", "FERRY_GATEWAY_TLS_CERT_FILE": "/c.pem", "FERRY_GATEWAY_TLS_KEY_FILE": "/k.pem"}, func(g *Gateway) bool {
			return !g.TLS.SelfSigned && g.TLS.CertFile == "/c.pem" && g.TLS.KeyFile == "/k.pem"
		}},
		{"int and duration", map[string]string{"FERRY_GATEWAY_LIMITS_MAX_STREAMS_PER_AGENT": "7", "FERRY_GATEWAY_LIMITS_SHUTDOWN_GRACE": "1m30s"}, func(g *Gateway) bool {
			return g.Limits.MaxStreamsPerAgent == 7 && g.Limits.ShutdownGrace == 90*time.Second
		}},
		{"static connections stay in the file", map[string]string{"FERRY_GATEWAY_CONNECTIONS": "x", "FERRY_GATEWAY_CONNECTIONS_NAME": "x"}, func(g *Gateway) bool {
			return len(g.Connections) == 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := parseGateway([]byte(minimalGateway), "gateway.toml", lookupMap(tt.env))
			if err != nil {
				t.Fatalf("parseGateway: %v", err)
			}
			if !tt.check(g) {
				t.Errorf("with %v: got %+v", tt.env, *g)
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	t.Parallel()
	const secret = "fat_SECRETSECRETSECRET"
	tests := []struct {
		name    string
		env     map[string]string
		want    []string // each must be in the error
		gateway bool
	}{
		{name: "not an int", env: map[string]string{"FERRY_AGENT_GATEWAY_HA_CONNECTIONS": secret},
			want: []string{"FERRY_AGENT_GATEWAY_HA_CONNECTIONS", "gateway.ha_connections", "want an integer"}},
		{name: "int out of range", env: map[string]string{"FERRY_AGENT_ACCESS_MAX_STREAMS": "99999999999999999999"},
			want: []string{"FERRY_AGENT_ACCESS_MAX_STREAMS", "out of range"}},
		{name: "bare number duration", env: map[string]string{"FERRY_AGENT_ACCESS_DIAL_TIMEOUT": "30"},
			want: []string{"FERRY_AGENT_ACCESS_DIAL_TIMEOUT", "with a unit"}},
		{name: "empty duration", env: map[string]string{"FERRY_AGENT_ACCESS_DIAL_TIMEOUT": " "},
			want: []string{"FERRY_AGENT_ACCESS_DIAL_TIMEOUT", "set but empty"}},
		{name: "not a bool", env: map[string]string{"FERRY_GATEWAY_TLS_SELF_SIGNED": secret}, gateway: true,
			want: []string{"FERRY_GATEWAY_TLS_SELF_SIGNED", "want true or false"}},
		{name: "all problems at once", env: map[string]string{"FERRY_AGENT_GATEWAY_HA_CONNECTIONS": "x", "FERRY_AGENT_RECONNECT_MAX_INTERVAL": "y"},
			want: []string{"FERRY_AGENT_GATEWAY_HA_CONNECTIONS", "FERRY_AGENT_RECONNECT_MAX_INTERVAL"}},
		{name: "validation names the variable", env: map[string]string{"FERRY_AGENT_GATEWAY_URL": "https://gw.example.com"},
			want: []string{"FERRY_AGENT_GATEWAY_URL: gateway.url", "wss://"}},
		{name: "validation of a bad value", env: map[string]string{"FERRY_AGENT_GATEWAY_HA_CONNECTIONS": "99"},
			want: []string{"FERRY_AGENT_GATEWAY_HA_CONNECTIONS: gateway.ha_connections = 99"}},
		{name: "longest key wins", env: map[string]string{"FERRY_AGENT_GATEWAY_KEEPALIVE_TIMEOUT": "1s"},
			want: []string{"FERRY_AGENT_GATEWAY_KEEPALIVE_TIMEOUT: gateway.keepalive_timeout"}},
		{name: "file keys keep the file name", env: map[string]string{"FERRY_AGENT_METRICS_LISTEN": "127.0.0.1:1", "FERRY_AGENT_ACCESS_ALLOW": "nope"},
			want: []string{"FERRY_AGENT_ACCESS_ALLOW: access.allow"}},
		{name: "token in env never echoed", env: map[string]string{"FERRY_AGENT_GATEWAY_TOKEN": "bad token " + secret},
			want: []string{"FERRY_AGENT_GATEWAY_TOKEN", "white space"}},
		{name: "gateway validation", env: map[string]string{"FERRY_GATEWAY_STORE_DRIVER": "mysql"}, gateway: true,
			want: []string{"FERRY_GATEWAY_STORE_DRIVER: store.driver"}},
		{name: "gateway top-level", env: map[string]string{"FERRY_GATEWAY_DATA_DIR": ""}, gateway: true,
			want: []string{"FERRY_GATEWAY_DATA_DIR: data_dir is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tt.gateway {
				_, err = parseGateway([]byte(minimalGateway), "gateway.toml", lookupMap(tt.env))
			} else {
				_, err = parseAgent([]byte(minimalAgent), "agent.toml", lookupMap(tt.env))
			}
			if err == nil {
				t.Fatalf("with %v: no error", tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the value of a variable", err)
			}
		})
	}
}

// TestEnvVarsCoverSchema keeps every key settable: a new config field of a
// type the environment cannot express fails here, not silently.
func TestEnvVarsCoverSchema(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		v      any
		vars   []EnvVar
		prefix string
		skip   map[string]bool // arrays of tables
	}{
		{&Agent{}, AgentEnvVars(), EnvAgentPrefix, nil},
		{&Gateway{}, GatewayEnvVars(), EnvGatewayPrefix, map[string]bool{"connections": true}},
	} {
		schema := map[string]reflect.Type{}
		schemaOf(reflect.TypeOf(tt.v).Elem(), "", schema)
		have := map[string]bool{}
		names := map[string]string{}
		for _, v := range tt.vars {
			have[v.Key] = true
			if k, dup := names[v.Name]; dup {
				t.Errorf("%s sets both %s and %s", v.Name, k, v.Key)
			}
			names[v.Name] = v.Key
			if want := tt.prefix + strings.ToUpper(strings.ReplaceAll(v.Key, ".", "_")); v.Name != want {
				t.Errorf("key %s: variable %s, want %s", v.Key, v.Name, want)
			}
		}
		for k, typ := range schema {
			top, _, _ := strings.Cut(k, ".")
			if tt.skip[top] || typ.Kind() == reflect.Struct {
				continue
			}
			if !have[k] {
				t.Errorf("%T key %s (%s) has no environment variable", tt.v, k, typ)
			}
		}
	}
	if n := len(AgentEnvVars()); n < 15 {
		t.Errorf("only %d agent variables", n)
	}
}

func TestEnvOnlyWithoutDefaultFile(t *testing.T) {
	// Not parallel: it compares against the real default paths.
	missing := filepath.Join(t.TempDir(), "agent.toml")
	env := lookupMap(map[string]string{"FERRY_AGENT_GATEWAY_URL": "wss://gw.example.com", "FERRY_AGENT_GATEWAY_TOKEN": "tok"})

	// A --config that does not exist stays an error, environment or not.
	if _, _, err := readAgent(missing, env); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readAgent(missing explicit file) = %v, want not-exist error", err)
	}
	if _, err := LoadAgent(missing); err == nil || !strings.Contains(err.Error(), "agent.toml") {
		t.Errorf("LoadAgent(missing) = %v", err)
	}

	def := DefaultAgentPath()
	if _, err := os.Stat(def); err == nil {
		t.Skipf("%s exists on this machine", def)
	}
	a, name, err := readAgent(def, env)
	if err != nil {
		t.Fatalf("readAgent(default, env) = %v", err)
	}
	if a.Gateway.URL != "wss://gw.example.com/v1/tunnel" || !strings.Contains(name, "FERRY_AGENT_") {
		t.Errorf("readAgent(default, env) = %+v, %q", a.Gateway, name)
	}
	// Without any variable the missing default file is the error, with a hint.
	if _, _, err := readAgent(def, lookupMap(nil)); err == nil || !strings.Contains(err.Error(), def) || !strings.Contains(err.Error(), "FERRY_AGENT_<SECTION>_<KEY>") {
		t.Errorf("readAgent(default, no env) = %v", err)
	}
	// FERRY_AGENT_TOKEN alone configures nothing else.
	if _, _, err := readAgent(def, lookupMap(map[string]string{EnvAgentToken: "t"})); err == nil {
		t.Error("readAgent(default, only FERRY_AGENT_TOKEN) succeeded")
	}
	// Missing required keys name the environment.
	_, _, err = readAgent(def, lookupMap(map[string]string{"FERRY_AGENT_ACCESS_ALLOW": "db:1"}))
	if err == nil || !strings.Contains(err.Error(), "FERRY_AGENT_* environment") || !strings.Contains(err.Error(), "gateway.url is required") {
		t.Errorf("readAgent(default, no url) = %v", err)
	}
	// The token check of LoadAgent names the environment too.
	_, err = loadAgent(def, func(k string) string {
		return map[string]string{"FERRY_AGENT_GATEWAY_URL": "wss://gw.example.com"}[k]
	})
	if !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), "environment") {
		t.Errorf("loadAgent(default, no token) = %v", err)
	}

	gdef := DefaultGatewayPath()
	if _, err := os.Stat(gdef); err == nil {
		t.Skipf("%s exists on this machine", gdef)
	}
	g, _, err := readGateway(gdef, lookupMap(map[string]string{"FERRY_GATEWAY_TLS_SELF_SIGNED": "true", "FERRY_GATEWAY_DATA_DIR": "/var/lib/ferry"}))
	if err != nil || !g.TLS.SelfSigned || g.DataDir != "/var/lib/ferry" {
		t.Errorf("readGateway(default, env) = %+v, %v", g, err)
	}
}

func TestEnvWithFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(minimalAgent+"[gateway.x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A broken file stays broken whatever the environment says.
	if _, _, err := readAgent(path, lookupMap(map[string]string{"FERRY_AGENT_GATEWAY_URL": "wss://a"})); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Errorf("readAgent(bad file) = %v", err)
	}
	if err := os.WriteFile(path, []byte(minimalAgent), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _, err := readAgent(path, lookupMap(map[string]string{"FERRY_AGENT_LOG_LEVEL": "debug"}))
	if err != nil || a.Log.Level != "debug" || a.Gateway.URL != "wss://gw.example.com/v1/tunnel" {
		t.Errorf("readAgent(file, env) = %+v, %v", a, err)
	}
}
