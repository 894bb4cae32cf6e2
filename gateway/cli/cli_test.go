package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ferry-tunnel/ferry/gateway/admin/admintest"
	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const adminToken = admintest.AdminToken

var now = admintest.Now

type env struct {
	*admintest.Server
	t    *testing.T
	vars map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := admintest.NewServer(t)
	return &env{Server: srv, t: t, vars: map[string]string{"FERRY_API": srv.URL, "FERRY_ADMIN_TOKEN": adminToken}}
}

func (e *env) getenv(k string) string { return e.vars[k] }

// run runs the CLI and returns stdout and the error.
func (e *env) run(args ...string) (string, error) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, e.getenv, &out, &errOut)
	if errOut.Len() > 0 {
		e.t.Errorf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

func (e *env) mustRun(args ...string) string {
	e.t.Helper()
	out, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("%v: %v", args, err)
	}
	return out
}

// apiGet returns the API's JSON for path, indented as the CLI prints it.
func (e *env) apiGet(path string) string {
	e.t.Helper()
	_, _, body := e.Do(e.t, "GET", path, "", "Bearer "+adminToken)
	return body
}

var tokenRE = regexp.MustCompile(`fat_[A-Za-z0-9_-]{43}`)

func TestWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	out := e.mustRun("agents", "create", "acme-dc1", "--description", "Acme DC 1")
	token := tokenRE.FindString(out)
	want := "agent \"acme-dc1\" created\ntoken: " + token + "\n" + tokenAdvice + "\n"
	if token == "" || out != want {
		t.Errorf("agents create:\n%s\nwant\n%s", out, want)
	}
	e.mustRun("agents", "create", "b-agent")

	e.Backend.SetTunnels("acme-dc1", []adminapi.Tunnel{{Node: "gw1", RemoteAddr: "198.51.100.7:40000", Version: "1.2.3", Hostname: "dc1-vm", Instance: "i-1", OS: "linux/amd64", ConnectedAt: now}})

	out = e.mustRun("agents", "list")
	want = `NAME      ONLINE  TUNNELS  CREATED               DESCRIPTION
acme-dc1  yes     1        2025-06-07T08:09:10Z  Acme DC 1
b-agent   no      0        2025-06-07T08:09:10Z  
`
	if out != want {
		t.Errorf("agents list:\n%s\nwant\n%s", out, want)
	}

	out = e.mustRun("agents", "show", "acme-dc1")
	want = `name:           acme-dc1
description:    Acme DC 1
created:        2025-06-07T08:09:10Z
token rotated:  2025-06-07T08:09:10Z
online:         yes (1 tunnels)

NODE  REMOTE ADDRESS      VERSION  HOSTNAME  INSTANCE  OS           CONNECTED             DRAINING
gw1   198.51.100.7:40000  1.2.3    dc1-vm    i-1       linux/amd64  2025-06-07T08:09:10Z  no
`
	if out != want {
		t.Errorf("agents show:\n%s\nwant\n%s", out, want)
	}
	if strings.Contains(out, token) {
		t.Error("show prints the token")
	}

	out = e.mustRun("agents", "token", "acme-dc1")
	newToken := tokenRE.FindString(out)
	if newToken == "" || newToken == token || !strings.HasPrefix(out, "new token for agent \"acme-dc1\"\ntoken: "+newToken+"\nThe old token no longer works") {
		t.Errorf("agents token:\n%s", out)
	}

	out = e.mustRun("connections", "create", "crm", "--agent", "acme-dc1", "--target=crm.internal:443", "--listen", "127.0.0.1:18443")
	if want := "connection \"crm\" created: 127.0.0.1:18443 -> agent acme-dc1 -> crm.internal:443\n"; out != want {
		t.Errorf("connections create: %q", out)
	}
	out = e.mustRun("connections", "list")
	want = `NAME    AGENT     TARGET            LISTEN           SOURCE  CREATED
crm     acme-dc1  crm.internal:443  127.0.0.1:18443  api     2025-06-07T08:09:10Z
erp-db  acme-dc1  db.internal:5432  127.0.0.1:15432  config  -
`
	if out != want {
		t.Errorf("connections list:\n%s\nwant\n%s", out, want)
	}
	if out := e.mustRun("connections", "delete", "crm"); out != "connection \"crm\" deleted\n" {
		t.Errorf("connections delete: %q", out)
	}
	if out := e.mustRun("agents", "delete", "b-agent"); out != "agent \"b-agent\" deleted (its tunnels were closed and its API connections deleted)\n" {
		t.Errorf("agents delete: %q", out)
	}

	out = e.mustRun("audit", "--limit", "2")
	want = `TIME                  ACTOR  ACTION             SUBJECT  DETAIL
2025-06-07T08:09:10Z  admin  agent.delete       b-agent  tunnels closed
2025-06-07T08:09:10Z  admin  connection.delete  crm      
`
	if out != want {
		t.Errorf("audit:\n%s\nwant\n%s", out, want)
	}
	if out := e.mustRun("audit"); strings.Count(out, "\n") != 7 || strings.Contains(out, token) || strings.Contains(out, newToken) {
		t.Errorf("audit:\n%s", out)
	}
}

func TestEmptyLists(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if out := e.mustRun("agents", "list"); out != "no agents (create one with: ferry-gateway agents create NAME)\n" {
		t.Errorf("%q", out)
	}
	if out := e.mustRun("audit"); out != "no audit events\n" {
		t.Errorf("%q", out)
	}
}

func TestJSONOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := e.mustRun("--json", "agents", "create", "acme-dc1")
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil || !strings.HasPrefix(created["token"].(string), "fat_") || created["name"] != "acme-dc1" {
		t.Errorf("create --json: %s (%v)", out, err)
	}
	// Global flags anywhere; the output is the API's JSON.
	for _, args := range [][]string{
		{"agents", "list", "--json"},
		{"agents", "--json", "list"},
		{"--json=true", "agents", "list"},
	} {
		if out := e.mustRun(args...); out != e.apiGet("/api/v1/agents") {
			t.Errorf("%v:\n%s\nwant\n%s", args, out, e.apiGet("/api/v1/agents"))
		}
	}
	for _, c := range []struct {
		args []string
		path string
	}{
		{[]string{"agents", "show", "acme-dc1", "--json"}, "/api/v1/agents/acme-dc1"},
		{[]string{"connections", "list", "--json"}, "/api/v1/connections"},
		{[]string{"audit", "--json", "--limit=1"}, "/api/v1/audit?limit=1"},
	} {
		if out := e.mustRun(c.args...); out != e.apiGet(c.path) {
			t.Errorf("%v:\n%s\nwant\n%s", c.args, out, e.apiGet(c.path))
		}
	}
	out = e.mustRun("connections", "create", "c", "--agent", "acme-dc1", "--target", "h:1", "--listen", "127.0.0.1:1", "--json")
	if !strings.Contains(out, `"source": "api"`) {
		t.Errorf("connections create --json: %s", out)
	}
	out = e.mustRun("agents", "token", "acme-dc1", "--json")
	if !tokenRE.MatchString(out) || !strings.HasPrefix(out, "{\n  \"token\": ") {
		t.Errorf("token --json: %s", out)
	}
	if out := e.mustRun("connections", "delete", "c", "--json"); out != "" {
		t.Errorf("delete --json printed %q", out)
	}
	if out := e.mustRun("agents", "delete", "acme-dc1", "--json"); out != "" {
		t.Errorf("delete --json printed %q", out)
	}
}

func TestAPIAddressAndToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin.token")
	os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600)
	emptyFile := filepath.Join(dir, "empty")
	os.WriteFile(emptyFile, []byte("\n"), 0o600)

	// --api wins over FERRY_API; the file wins over FERRY_ADMIN_TOKEN.
	e.vars = map[string]string{"FERRY_API": "http://127.0.0.1:1", "FERRY_ADMIN_TOKEN": "wrong"}
	if _, err := e.run("agents", "list", "--api", e.URL, "--admin-token-file", tokenFile); err != nil {
		t.Errorf("--api and --admin-token-file: %v", err)
	}
	e.vars = map[string]string{"FERRY_API": e.URL + "/", "FERRY_ADMIN_TOKEN": adminToken}
	if _, err := e.run("agents", "list"); err != nil {
		t.Errorf("FERRY_API: %v", err)
	}

	tests := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"no token", map[string]string{"FERRY_API": e.URL}, nil,
			"no admin token: set FERRY_ADMIN_TOKEN or pass --admin-token-file PATH"},
		{"wrong token", map[string]string{"FERRY_API": e.URL, "FERRY_ADMIN_TOKEN": "wrong"}, nil,
			"admin API: 401 missing or invalid admin token (set FERRY_ADMIN_TOKEN)"},
		{"wrong token file", map[string]string{"FERRY_API": e.URL}, []string{"--admin-token-file", emptyFile + "x"},
			"read admin token: open " + emptyFile + "x: no such file or directory"},
		{"empty token file", map[string]string{"FERRY_API": e.URL}, []string{"--admin-token-file", emptyFile},
			"admin token file " + emptyFile + " is empty"},
		{"bad api", map[string]string{"FERRY_ADMIN_TOKEN": adminToken}, []string{"--api", "127.0.0.1:8081"},
			`invalid admin API address "127.0.0.1:8081": want http://HOST:PORT or https://HOST:PORT (set --api or FERRY_API)`},
		{"not found", map[string]string{"FERRY_API": e.URL, "FERRY_ADMIN_TOKEN": adminToken}, []string{"agents", "show", "ghost"},
			`admin API: 404 agent "ghost" not found`},
	}
	for _, tt := range tests {
		e.vars = tt.vars
		args := tt.args
		if len(args) == 0 || args[0] != "agents" {
			args = append([]string{"agents", "list"}, args...)
		}
		_, err := e.run(args...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: %v\nwant %s", tt.name, err, tt.want)
		}
		if errors.Is(err, ErrUsage) {
			t.Errorf("%s: a usage error", tt.name)
		}
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	url := "http://" + testutil.ClosedAddr(t)
	var out bytes.Buffer
	err := Run(context.Background(), []string{"agents", "list"}, func(k string) string {
		return map[string]string{"FERRY_API": url, "FERRY_ADMIN_TOKEN": "x"}[k]
	}, &out, io.Discard)
	want := "cannot reach the admin API at " + url + ": connection refused (is ferry-gateway serve running? set --api or FERRY_API)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"agents"}, "agents: missing subcommand (create, list, show, token, delete)"},
		{[]string{"agents", "rename"}, `agents: unknown subcommand "rename" (use create, list, show, token, delete)`},
		{[]string{"agents", "create"}, "agents create: missing NAME"},
		{[]string{"agents", "show", "a", "b"}, `agents show: unexpected argument "b"`},
		{[]string{"agents", "list", "--verbose"}, "unknown flag --verbose"},
		{[]string{"agents", "list", "--agent", "x"}, "agents list: flag --agent does not apply"},
		{[]string{"agents", "create", "x", "--description"}, "flag --description needs a value"},
		{[]string{"agents", "list", "--json=maybe"}, `flag --json takes no value (or true/false), not "maybe"`},
		{[]string{"agents", "list", "--api", "a", "--api", "b"}, "flag --api given twice"},
		{[]string{"connections", "create", "c", "--agent", "a", "--target", "h:1"}, "connections create: missing --listen"},
		{[]string{"audit", "--limit", "ten"}, `audit: --limit must be a positive number, not "ten"`},
	}
	for _, tt := range tests {
		_, err := e.run(tt.args...)
		if !errors.Is(err, ErrUsage) || err.Error() != tt.want {
			t.Errorf("%v: %v\nwant usage error %q", tt.args, err, tt.want)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"agents", "--help"}} {
		if out, err := e.run(args...); err != nil || out != helpText {
			t.Errorf("%v: %v %q", args, err, out)
		}
	}
	// "--" ends flags: a name that looks like a flag is rejected by the API.
	if _, err := e.run("agents", "show", "--", "-x"); err == nil || !strings.Contains(err.Error(), `400 invalid agent name "-x"`) {
		t.Errorf("-- handling: %v", err)
	}
}
