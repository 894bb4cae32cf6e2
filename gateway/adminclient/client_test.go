package adminclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/admin/admintest"
	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/gateway/adminclient"
	"github.com/ferry-tunnel/ferry/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const adminToken = admintest.AdminToken

func TestClientRoundTrip(t *testing.T) {
	t.Parallel()
	srv := admintest.NewServer(t)
	ctx := context.Background()
	c := adminclient.New(srv.URL+"/", adminToken, srv.Client)
	if c.BaseURL() != srv.URL {
		t.Errorf("BaseURL = %q", c.BaseURL())
	}

	created, err := c.CreateAgent(ctx, "acme-dc1", "Acme DC 1")
	if err != nil {
		t.Fatal(err)
	}
	if created.Name != "acme-dc1" || created.Description != "Acme DC 1" || !strings.HasPrefix(created.Token, "fat_") ||
		created.CreatedAt.IsZero() || created.Online || created.Tunnels == nil {
		t.Errorf("CreateAgent = %+v", created)
	}

	connected := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	wantTunnel := adminapi.Tunnel{Node: "gw1", RemoteAddr: "198.51.100.1:1234", Version: "1.0.0", Hostname: "h", Instance: "i", OS: "linux/amd64", ConnectedAt: connected, Draining: true}
	srv.Backend.SetTunnels("acme-dc1", []adminapi.Tunnel{wantTunnel})
	got, err := c.GetAgent(ctx, "acme-dc1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Online || len(got.Tunnels) != 1 || got.Tunnels[0] != wantTunnel {
		t.Errorf("GetAgent = %+v", got)
	}

	list, err := c.ListAgents(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "acme-dc1" {
		t.Errorf("ListAgents = %+v, %v", list, err)
	}

	tok, err := c.RotateToken(ctx, "acme-dc1")
	if err != nil || !strings.HasPrefix(tok, "fat_") || tok == created.Token {
		t.Errorf("RotateToken = %q, %v", tok, err)
	}

	conn, err := c.CreateConnection(ctx, adminapi.ConnectionRequest{Name: "crm", Agent: "acme-dc1", Target: "crm.internal:443", Listen: "127.0.0.1:18443"})
	if err != nil {
		t.Fatal(err)
	}
	if conn.Name != "crm" || conn.Source != "api" || conn.CreatedAt.IsZero() {
		t.Errorf("CreateConnection = %+v", conn)
	}
	conns, err := c.ListConnections(ctx)
	if err != nil || len(conns) != 2 || conns[0].Name != "crm" || conns[1].Source != "config" || !conns[1].CreatedAt.IsZero() {
		t.Errorf("ListConnections = %+v, %v", conns, err)
	}
	if err := c.DeleteConnection(ctx, "crm"); err != nil {
		t.Error(err)
	}
	if err := c.DeleteAgent(ctx, "acme-dc1"); err != nil {
		t.Error(err)
	}

	events, err := c.Audit(ctx, 0)
	if err != nil || len(events) != 5 || events[0].Action != "agent.delete" || events[4].Action != "agent.create" || events[0].Actor != "admin" {
		t.Errorf("Audit = %+v, %v", events, err)
	}
	if events, err := c.Audit(ctx, 2); err != nil || len(events) != 2 {
		t.Errorf("Audit(2) = %d events, %v", len(events), err)
	}

	var raw json.RawMessage
	if err := c.Do(ctx, http.MethodGet, "/api/v1/agents", nil, &raw); err != nil || string(raw) != "[]" {
		t.Errorf("Do raw = %q, %v", raw, err)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	srv := admintest.NewServer(t)
	ctx := context.Background()
	c := adminclient.New(srv.URL, adminToken, srv.Client)
	tests := []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"not found", func() error { _, err := c.GetAgent(ctx, "ghost"); return err }, 404, `agent "ghost" not found`},
		{"bad name", func() error { _, err := c.CreateAgent(ctx, "Bad", ""); return err }, 400, `invalid agent name "Bad": use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"static delete", func() error { return c.DeleteConnection(ctx, "erp-db") }, 409, `connection "erp-db" is defined in the config file: remove its [[connections]] entry there and restart ferry-gateway`},
		{"bad limit", func() error { _, err := c.Audit(ctx, -1); return err }, 400, `invalid limit "-1": use a number from 1 to 1000`},
		{"wrong token", func() error {
			_, err := adminclient.New(srv.URL, "wrong", srv.Client).ListAgents(ctx)
			return err
		}, 401, "missing or invalid admin token"},
	}
	for _, tt := range tests {
		err := tt.call()
		var ae *adminclient.APIError
		if !errors.As(err, &ae) || ae.Status != tt.status || ae.Message != tt.msg {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	_, err := c.GetAgent(ctx, "ghost")
	if err.Error() != `admin API: 404 agent "ghost" not found` {
		t.Errorf("Error() = %q", err)
	}
}

func TestNotTheAPI(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/agents" {
			w.Write([]byte("<html>hello</html>"))
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	c := adminclient.New(srv.URL, "x", srv.Client())
	_, err := c.GetAgent(context.Background(), "a")
	var ae *adminclient.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Message != "Not Found (not an answer of the Ferry admin API: check the address)" {
		t.Errorf("plain 404: %v", err)
	}
	_, err = c.ListAgents(context.Background())
	if !errors.As(err, &ae) || ae.Status != 200 || !strings.Contains(ae.Message, "is "+srv.URL+" the gateway's admin API?") {
		t.Errorf("HTML answer: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	url := "http://" + testutil.ClosedAddr(t)
	_, err := adminclient.New(url, "x", nil).ListAgents(context.Background())
	var ce *adminclient.ConnError
	if !errors.As(err, &ce) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v", err)
	}
	if want := "cannot reach the admin API at " + url + ": connection refused"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := adminclient.New(url, "x", nil).ListAgents(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
