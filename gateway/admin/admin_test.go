package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/admin"
	"github.com/ferry-tunnel/ferry/gateway/admin/admintest"
	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const adminToken = admintest.AdminToken

type env struct {
	*admintest.Server
	t *testing.T
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{Server: admintest.NewServer(t), t: t}
}

// do sends a request with the admin token and returns status, headers and
// body.
func (e *env) do(method, path, body string) (int, http.Header, string) {
	e.t.Helper()
	return e.Do(e.t, method, path, body, "Bearer "+adminToken)
}

// mustJSON decodes body into a fresh V.
func mustJSON[V any](t *testing.T, body string) V {
	t.Helper()
	var v V
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

func errorOf(t *testing.T, body string) string {
	t.Helper()
	return mustJSON[map[string]string](t, body)["error"]
}

// createAgent creates an agent and returns its token.
func (e *env) createAgent(name string) string {
	e.t.Helper()
	st, _, body := e.do("POST", "/api/v1/agents", fmt.Sprintf(`{"name":%q,"description":"test agent"}`, name))
	if st != http.StatusCreated {
		e.t.Fatalf("create agent %s: %d %s", name, st, body)
	}
	return mustJSON[map[string]any](e.t, body)["token"].(string)
}

func TestNewHandlerConfigErrors(t *testing.T) {
	t.Parallel()
	st := admintest.NewStore(t)
	b := &admintest.Backend{}
	tests := []struct {
		name string
		cfg  admin.Config
		want string
	}{
		{"no store", admin.Config{Backend: b, AdminToken: "x"}, "Store is nil"},
		{"no backend", admin.Config{Store: st, AdminToken: "x"}, "Backend is nil"},
		{"no token", admin.Config{Store: st, Backend: b}, "no admin token"},
		{"agent token", admin.Config{Store: st, Backend: b, AdminToken: "fat_abc"}, "like an agent token"},
		{"duplicate static", admin.Config{Store: st, Backend: b, AdminToken: "x", StaticConnections: []store.Connection{{Name: "a"}, {Name: "a"}}}, `"a" is defined twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.NewHandler(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewHandler: %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestGenerateToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tok, err := admin.GenerateToken()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(tok, "fat_") || len(tok) != 4+43 || strings.ContainsAny(tok, "+/=") {
			t.Fatalf("token %q: want fat_ + 43 base64url characters", tok)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
	if got := admin.HashToken("abc"); len(got) != 32 || fmt.Sprintf("%x", got) != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("admin.HashToken(abc) = %x", got)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	agentToken := e.createAgent("acme-dc1")
	tests := []struct {
		name, auth string
	}{
		{"none", ""},
		{"empty bearer", "Bearer "},
		{"wrong token", "Bearer nope"},
		{"token prefix", "Bearer " + adminToken[:5]},
		{"basic scheme", "Basic " + adminToken},
		{"no scheme", adminToken},
		{"agent token", "Bearer " + agentToken},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/v1/agents", "/api/v1/agents/acme-dc1", "/api/v1/nothing-here"} {
			st, hdr, body := e.Do(t, "GET", path, "", tt.auth)
			if st != http.StatusUnauthorized || body != "{\n  \"error\": \"missing or invalid admin token\"\n}\n" {
				t.Errorf("%s GET %s: %d %q", tt.name, path, st, body)
			}
			if hdr.Get("WWW-Authenticate") == "" || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%s: headers %v", tt.name, hdr)
			}
		}
	}
	// Lower-case scheme is fine (RFC 9110: case-insensitive).
	if st, _, _ := e.Do(t, "GET", "/api/v1/agents", "", "bearer "+adminToken); st != http.StatusOK {
		t.Errorf("lower-case bearer: %d", st)
	}
	if strings.Contains(e.Logs(), agentToken) || strings.Contains(e.Logs(), adminToken) {
		t.Error("a token was logged")
	}
}

func TestCreateAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st, hdr, body := e.do("POST", "/api/v1/agents", `{"name":"acme-dc1","description":"Acme data centre 1"}`)
	if st != http.StatusCreated {
		t.Fatalf("status %d: %s", st, body)
	}
	if hdr.Get("Location") != "/api/v1/agents/acme-dc1" || hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: %v", hdr)
	}
	got := mustJSON[map[string]any](t, body)
	token, _ := got["token"].(string)
	if !strings.HasPrefix(token, "fat_") {
		t.Fatalf("token %q", token)
	}
	want := map[string]any{
		"name": "acme-dc1", "description": "Acme data centre 1",
		"created_at": "2025-06-07T08:09:10Z", "token_rotated_at": "2025-06-07T08:09:10Z",
		"online": false, "tunnels": []any{}, "token": token,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("body = %v\nwant  %v", got, want)
	}
	a, err := e.Store.AgentByTokenHash(context.Background(), admin.HashToken(token))
	if err != nil || a.Name != "acme-dc1" {
		t.Errorf("stored hash lookup: %v %v", a.Name, err)
	}

	// The token is never shown again.
	for _, path := range []string{"/api/v1/agents", "/api/v1/agents/acme-dc1", "/api/v1/audit"} {
		st, _, body := e.do("GET", path, "")
		if st != http.StatusOK || strings.Contains(body, token) || strings.Contains(body, `"token"`) {
			t.Errorf("GET %s shows the token: %d %s", path, st, body)
		}
	}
	if strings.Contains(e.Logs(), token) {
		t.Error("token logged")
	}

	st, _, body = e.do("POST", "/api/v1/agents", `{"name":"acme-dc1"}`)
	if st != http.StatusConflict || errorOf(t, body) != `agent "acme-dc1" already exists` {
		t.Errorf("duplicate: %d %s", st, body)
	}
}

func TestBadBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createAgent("acme-dc1")
	big := `{"name":"x","description":"` + strings.Repeat("a", 70<<10) + `"}`
	tests := []struct {
		name, path, body, want string
	}{
		{"empty", "/api/v1/agents", "", "request body is empty: send a JSON object"},
		{"blank", "/api/v1/agents", "  \n", "request body is empty: send a JSON object"},
		{"syntax", "/api/v1/agents", `{"name":}`, "request body is not valid JSON (at byte 9): invalid character '}' looking for beginning of value"},
		{"truncated", "/api/v1/agents", `{"name":"x"`, "request body is not valid JSON: it ends too early"},
		{"array", "/api/v1/agents", `["x"]`, "request body must be a JSON object, not array"},
		{"string", "/api/v1/agents", `"x"`, "request body must be a JSON object, not string"},
		{"null", "/api/v1/agents", `null`, "request body must be a JSON object, not null"},
		{"unknown field", "/api/v1/agents", `{"name":"x","token":"fat_x"}`, `unknown field "token" in request body (known fields: name, description)`},
		{"trailing object", "/api/v1/agents", `{"name":"x"}{"name":"y"}`, "request body has data after the JSON object"},
		{"trailing junk", "/api/v1/agents", `{"name":"x"} x`, "request body has data after the JSON object"},
		{"wrong type", "/api/v1/agents", `{"name":42}`, `field "name" must be a string, not number`},
		{"too large", "/api/v1/agents", big, "request body is larger than 64 KiB"},
		{"missing name", "/api/v1/agents", `{"description":"d"}`, "agent name is required"},
		{"upper case name", "/api/v1/agents", `{"name":"Acme"}`, `invalid agent name "Acme": use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"leading dash", "/api/v1/agents", `{"name":"-a"}`, `invalid agent name "-a": use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"long name", "/api/v1/agents", `{"name":"` + strings.Repeat("a", 64) + `"}`, `invalid agent name "` + strings.Repeat("a", 64) + `": use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"newline description", "/api/v1/agents", `{"name":"x","description":"a\nb"}`, "description must not contain control characters such as newlines"},
		{"long description", "/api/v1/agents", `{"name":"x","description":"` + strings.Repeat("d", 1025) + `"}`, "description is longer than 1024 bytes"},
		{"conn unknown field", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"h:1","listen":":2","port":1}`, `unknown field "port" in request body (known fields: name, agent, target, listen)`},
		{"conn no name", "/api/v1/connections", `{"agent":"acme-dc1","target":"h:1","listen":":2"}`, "connection name is required"},
		{"conn bad agent name", "/api/v1/connections", `{"name":"c","agent":"A B","target":"h:1","listen":":2"}`, `invalid agent name "A B": use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"conn no target", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","listen":":2"}`, "target is required (host:port)"},
		{"conn target no port", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"db.internal","listen":":2"}`, `invalid target "db.internal": want host:port (IPv6 as [addr]:port)`},
		{"conn target no host", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":":5432","listen":":2"}`, `invalid target ":5432": the host is missing`},
		{"conn target port 0", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"h:0","listen":":2"}`, `invalid target "h:0": the port must be a number from 1 to 65535`},
		{"conn target port big", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"h:65536","listen":":2"}`, `invalid target "h:65536": the port must be a number from 1 to 65535`},
		{"conn target port name", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"h:http","listen":":2"}`, `invalid target "h:http": the port must be a number from 1 to 65535`},
		{"conn target bad host", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"a/b:1","listen":":2"}`, `invalid target "a/b:1": the host has the character '/'`},
		{"conn no listen", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"h:1"}`, "listen is required (host:port)"},
		{"conn listen no port", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"h:1","listen":"127.0.0.1"}`, `invalid listen "127.0.0.1": want host:port (IPv6 as [addr]:port)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, body := e.do("POST", tt.path, tt.body)
			if st != http.StatusBadRequest || errorOf(t, body) != tt.want {
				t.Errorf("%d %s\nwant 400 %q", st, body, tt.want)
			}
		})
	}
	if _, _, conns := e.do("GET", "/api/v1/connections", ""); strings.Contains(conns, `"c"`) {
		t.Errorf("a rejected connection was stored: %s", conns)
	}
}

func TestGetAndListAgents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createAgent("b-agent")
	e.createAgent("a-agent")
	connected := time.Date(2025, 6, 7, 9, 0, 0, 0, time.UTC)
	e.Backend.SetTunnels("a-agent", []adminapi.Tunnel{{Node: "gw1", RemoteAddr: "198.51.100.7:40000", Version: "1.2.3", Hostname: "dc1-vm", Instance: "i-1", OS: "linux/amd64", ConnectedAt: connected}})

	st, _, body := e.do("GET", "/api/v1/agents/a-agent", "")
	if st != http.StatusOK {
		t.Fatalf("%d %s", st, body)
	}
	wantA := `{
  "name": "a-agent",
  "description": "test agent",
  "created_at": "2025-06-07T08:09:10Z",
  "token_rotated_at": "2025-06-07T08:09:10Z",
  "online": true,
  "tunnels": [
    {
      "node": "gw1",
      "remote_addr": "198.51.100.7:40000",
      "agent_version": "1.2.3",
      "hostname": "dc1-vm",
      "instance": "i-1",
      "os": "linux/amd64",
      "connected_at": "2025-06-07T09:00:00Z",
      "draining": false
    }
  ]
}
`
	if body != wantA {
		t.Errorf("GET agent:\n%s\nwant\n%s", body, wantA)
	}

	st, _, body = e.do("GET", "/api/v1/agents", "")
	list := mustJSON[[]map[string]any](t, body)
	if st != http.StatusOK || len(list) != 2 || list[0]["name"] != "a-agent" || list[1]["name"] != "b-agent" ||
		list[0]["online"] != true || list[1]["online"] != false || fmt.Sprint(list[1]["tunnels"]) != "[]" {
		t.Errorf("list: %d %s", st, body)
	}

	st, _, body = e.do("GET", "/api/v1/agents/ghost", "")
	if st != http.StatusNotFound || errorOf(t, body) != `agent "ghost" not found` {
		t.Errorf("missing: %d %s", st, body)
	}
	st, _, body = e.do("GET", "/api/v1/agents/Bad%20Name", "")
	if st != http.StatusBadRequest || !strings.HasPrefix(errorOf(t, body), `invalid agent name "Bad Name"`) {
		t.Errorf("bad name: %d %s", st, body)
	}
}

func TestEmptyListsAreArrays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/api/v1/agents", "/api/v1/audit"} {
		if st, _, body := e.do("GET", path, ""); st != http.StatusOK || body != "[]\n" {
			t.Errorf("GET %s: %d %q", path, st, body)
		}
	}
}

func TestRotateToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := e.createAgent("acme-dc1")
	st, _, body := e.do("POST", "/api/v1/agents/acme-dc1/token", "")
	if st != http.StatusOK {
		t.Fatalf("%d %s", st, body)
	}
	got := mustJSON[map[string]string](t, body)
	if len(got) != 1 || !strings.HasPrefix(got["token"], "fat_") || got["token"] == old {
		t.Fatalf("body %s", body)
	}
	ctx := context.Background()
	if _, err := e.Store.AgentByTokenHash(ctx, admin.HashToken(old)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old token still valid: %v", err)
	}
	if a, err := e.Store.AgentByTokenHash(ctx, admin.HashToken(got["token"])); err != nil || a.Name != "acme-dc1" {
		t.Errorf("new token: %v %v", a.Name, err)
	}
	closed, _, _ := e.Backend.Calls()
	if !slices.Equal(closed, []string{"acme-dc1: agent token rotated"}) {
		t.Errorf("CloseAgentTunnels calls: %v", closed)
	}
	if strings.Contains(e.Logs(), got["token"]) {
		t.Error("token logged")
	}

	st, _, body = e.do("POST", "/api/v1/agents/ghost/token", "")
	if st != http.StatusNotFound || errorOf(t, body) != `agent "ghost" not found` {
		t.Errorf("missing: %d %s", st, body)
	}
	if closed, _, _ := e.Backend.Calls(); len(closed) != 1 {
		t.Errorf("tunnels closed for a missing agent: %v", closed)
	}
}

func TestDeleteAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.createAgent("acme-dc1")
	e.createAgent("other")
	for _, c := range []string{
		`{"name":"c1","agent":"acme-dc1","target":"h:1","listen":"127.0.0.1:20001"}`,
		`{"name":"c2","agent":"other","target":"h:1","listen":"127.0.0.1:20002"}`,
	} {
		if st, _, body := e.do("POST", "/api/v1/connections", c); st != http.StatusCreated {
			t.Fatalf("%d %s", st, body)
		}
	}
	st, _, body := e.do("DELETE", "/api/v1/agents/acme-dc1", "")
	if st != http.StatusNoContent || body != "" {
		t.Fatalf("%d %q", st, body)
	}
	closed, _, stopped := e.Backend.Calls()
	if !slices.Equal(closed, []string{"acme-dc1: agent deleted"}) || !slices.Equal(stopped, []string{"c1"}) {
		t.Errorf("closed %v stopped %v", closed, stopped)
	}
	if _, err := e.Store.AgentByTokenHash(context.Background(), admin.HashToken(tok)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted agent's token: %v", err)
	}
	if st, _, _ := e.do("GET", "/api/v1/agents/acme-dc1", ""); st != http.StatusNotFound {
		t.Errorf("GET after delete: %d", st)
	}
	_, _, body = e.do("GET", "/api/v1/connections", "")
	if strings.Contains(body, `"c1"`) || !strings.Contains(body, `"c2"`) {
		t.Errorf("connections after delete: %s", body)
	}
	st, _, body = e.do("DELETE", "/api/v1/agents/acme-dc1", "")
	if st != http.StatusNotFound || errorOf(t, body) != `agent "acme-dc1" not found` {
		t.Errorf("second delete: %d %s", st, body)
	}
}

func TestConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createAgent("acme-dc1")
	st, hdr, body := e.do("POST", "/api/v1/connections", `{"name":"crm-api","agent":"acme-dc1","target":"crm.internal:443","listen":"127.0.0.1:18443"}`)
	if st != http.StatusCreated || hdr.Get("Location") != "/api/v1/connections/crm-api" {
		t.Fatalf("%d %s", st, body)
	}
	want := `{
  "name": "crm-api",
  "agent": "acme-dc1",
  "target": "crm.internal:443",
  "listen": "127.0.0.1:18443",
  "source": "api",
  "created_at": "2025-06-07T08:09:10Z"
}
`
	if body != want {
		t.Errorf("create:\n%s\nwant\n%s", body, want)
	}
	if _, started, _ := e.Backend.Calls(); !slices.Equal(started, []string{"crm-api"}) {
		t.Errorf("started %v", started)
	}

	conflicts := []struct {
		name, body string
		status     int
		want       string
	}{
		{"duplicate", `{"name":"crm-api","agent":"acme-dc1","target":"h:1","listen":"127.0.0.1:1"}`, 409, `connection "crm-api" already exists`},
		{"static name", `{"name":"erp-db","agent":"acme-dc1","target":"h:1","listen":"127.0.0.1:1"}`, 409, `connection "erp-db" already exists (defined in the config file)`},
		{"listen used by static", `{"name":"x","agent":"acme-dc1","target":"h:1","listen":"127.0.0.1:15432"}`, 409, `listen address 127.0.0.1:15432 is already used by connection "erp-db"`},
		{"listen used by api", `{"name":"x","agent":"acme-dc1","target":"h:1","listen":"127.0.0.1:18443"}`, 409, `listen address 127.0.0.1:18443 is already used by connection "crm-api"`},
		{"missing agent", `{"name":"x","agent":"ghost","target":"h:1","listen":"127.0.0.1:1"}`, 404, `agent "ghost" not found: create it first (POST /api/v1/agents)`},
	}
	for _, c := range conflicts {
		st, _, body := e.do("POST", "/api/v1/connections", c.body)
		if st != c.status || errorOf(t, body) != c.want {
			t.Errorf("%s: %d %s, want %d %q", c.name, st, body, c.status, c.want)
		}
	}

	st, _, body = e.do("GET", "/api/v1/connections", "")
	wantList := `[
  {
    "name": "crm-api",
    "agent": "acme-dc1",
    "target": "crm.internal:443",
    "listen": "127.0.0.1:18443",
    "source": "api",
    "created_at": "2025-06-07T08:09:10Z"
  },
  {
    "name": "erp-db",
    "agent": "acme-dc1",
    "target": "db.internal:5432",
    "listen": "127.0.0.1:15432",
    "source": "config"
  }
]
`
	if st != http.StatusOK || body != wantList {
		t.Errorf("list: %d\n%s\nwant\n%s", st, body, wantList)
	}

	st, _, body = e.do("DELETE", "/api/v1/connections/erp-db", "")
	if st != http.StatusConflict || errorOf(t, body) != `connection "erp-db" is defined in the config file: remove its [[connections]] entry there and restart ferry-gateway` {
		t.Errorf("delete static: %d %s", st, body)
	}
	st, _, body = e.do("DELETE", "/api/v1/connections/crm-api", "")
	if st != http.StatusNoContent || body != "" {
		t.Errorf("delete: %d %s", st, body)
	}
	if _, _, stopped := e.Backend.Calls(); !slices.Equal(stopped, []string{"crm-api"}) {
		t.Errorf("stopped %v", stopped)
	}
	st, _, body = e.do("DELETE", "/api/v1/connections/crm-api", "")
	if st != http.StatusNotFound || errorOf(t, body) != `connection "crm-api" not found` {
		t.Errorf("delete again: %d %s", st, body)
	}
}

func TestConnectionStartFailureRollsBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"address in use", fmt.Errorf("listen tcp 127.0.0.1:9: %w", syscall.EADDRINUSE), 409, `cannot start connection "c": listen tcp 127.0.0.1:9: address already in use`},
		{"other", errors.New("listen tcp 10.9.9.9:9: bind: cannot assign requested address"), 400, `cannot start connection "c": listen tcp 10.9.9.9:9: bind: cannot assign requested address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.createAgent("a")
			e.Backend.FailStart(tt.err)
			st, _, body := e.do("POST", "/api/v1/connections", `{"name":"c","agent":"a","target":"h:1","listen":"127.0.0.1:9"}`)
			if st != tt.status || errorOf(t, body) != tt.want {
				t.Errorf("%d %s", st, body)
			}
			if conns, _ := e.Store.ListConnections(context.Background()); len(conns) != 0 {
				t.Errorf("row not rolled back: %v", conns)
			}
			if ev, _ := e.Store.ListAudit(context.Background(), 10); len(ev) != 1 {
				t.Errorf("failed create audited: %v", ev)
			}
		})
	}
}

func TestAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.createAgent("acme-dc1")
	_, _, rot := e.do("POST", "/api/v1/agents/acme-dc1/token", "")
	e.do("POST", "/api/v1/connections", `{"name":"c","agent":"acme-dc1","target":"h:1","listen":"127.0.0.1:1"}`)
	e.do("DELETE", "/api/v1/connections/c", "")
	e.do("DELETE", "/api/v1/agents/acme-dc1", "")
	e.do("GET", "/api/v1/agents", "") // reads are not audited

	st, _, body := e.do("GET", "/api/v1/audit", "")
	if st != http.StatusOK {
		t.Fatalf("%d %s", st, body)
	}
	if strings.Contains(body, tok) || strings.Contains(body, mustJSON[map[string]string](t, rot)["token"]) {
		t.Error("audit holds a token")
	}
	events := mustJSON[[]map[string]any](t, body)
	var got []string
	for _, ev := range events {
		if ev["actor"] != "admin" || ev["at"] != "2025-06-07T08:09:10Z" {
			t.Errorf("event %v", ev)
		}
		got = append(got, fmt.Sprintf("%s %s %s", ev["action"], ev["subject"], ev["detail"]))
	}
	want := []string{
		"agent.delete acme-dc1 tunnels closed",
		"connection.delete c ",
		"connection.create c agent=acme-dc1 target=h:1 listen=127.0.0.1:1",
		"agent.token_rotate acme-dc1 old token revoked, tunnels closed",
		`agent.create acme-dc1 description="test agent"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if events[0]["id"].(float64) <= events[1]["id"].(float64) {
		t.Errorf("not newest first: %v", events)
	}

	_, _, body = e.do("GET", "/api/v1/audit?limit=2", "")
	if n := len(mustJSON[[]any](t, body)); n != 2 {
		t.Errorf("limit=2 gave %d", n)
	}
	for _, bad := range []string{"0", "-1", "1001", "x", "1.5"} {
		st, _, body := e.do("GET", "/api/v1/audit?limit="+bad, "")
		if st != http.StatusBadRequest || errorOf(t, body) != fmt.Sprintf("invalid limit %q: use a number from 1 to 1000", bad) {
			t.Errorf("limit=%s: %d %s", bad, st, body)
		}
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		method, path string
		status       int
		allow, want  string
	}{
		{"PUT", "/api/v1/agents", 405, "GET, POST", "method PUT is not allowed on /api/v1/agents: use GET, POST"},
		{"POST", "/api/v1/agents/x", 405, "GET, DELETE", "method POST is not allowed on /api/v1/agents/x: use GET, DELETE"},
		{"GET", "/api/v1/agents/x/token", 405, "POST", "method GET is not allowed on /api/v1/agents/x/token: use POST"},
		{"DELETE", "/api/v1/connections", 405, "GET, POST", "method DELETE is not allowed on /api/v1/connections: use GET, POST"},
		{"GET", "/api/v1/connections/x", 405, "DELETE", "method GET is not allowed on /api/v1/connections/x: use DELETE"},
		{"POST", "/api/v1/audit", 405, "GET", "method POST is not allowed on /api/v1/audit: use GET"},
		{"GET", "/api/v2/agents", 404, "", "no such API endpoint: GET /api/v2/agents"},
		{"GET", "/api/v1/agents/x/y", 404, "", "no such API endpoint: GET /api/v1/agents/x/y"},
		{"GET", "/", 404, "", "no such API endpoint: GET /"},
	}
	for _, tt := range tests {
		st, hdr, body := e.do(tt.method, tt.path, "")
		if st != tt.status || hdr.Get("Allow") != tt.allow || errorOf(t, body) != tt.want {
			t.Errorf("%s %s: %d allow=%q %s", tt.method, tt.path, st, hdr.Get("Allow"), body)
		}
	}
}
