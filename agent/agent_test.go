//go:build unix

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/internal/testutil"
	"github.com/ferry-tunnel/ferry/mux"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const secret = "fat_do-not-print-me"

func newTestAgent(t *testing.T, allow ...string) *Agent {
	t.Helper()
	cfg := config.DefaultAgent()
	cfg.Gateway.URL = "wss://gateway.invalid/v1/tunnel"
	cfg.Gateway.Token = secret
	cfg.Access.Allow = allow
	a, err := New(&cfg, Options{Version: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDialDecisions(t *testing.T) {
	open := netip.MustParseAddrPort(testutil.NewCountingListener(t).Addr).Port()
	closed := closedPort(t)
	onlyCIDR := closedPort(t)
	a := newTestAgent(t,
		fmt.Sprintf("127.0.0.1:%d", open),
		fmt.Sprintf("127.0.0.1:%d", closed),
		fmt.Sprintf("10.0.0.0/8:%d", onlyCIDR), // admits names only if they resolve into 10/8
	)
	for _, tc := range []struct {
		target string
		want   mux.Code
	}{
		{fmt.Sprintf("127.0.0.1:%d", open), mux.CodeOK},
		{fmt.Sprintf("[::ffff:127.0.0.1]:%d", open), mux.CodeOK},
		{fmt.Sprintf("127.0.0.1:%d", open+1), mux.CodeDenied},
		{fmt.Sprintf("127.0.0.1:%d", closed), mux.CodeDialFailed},
		{fmt.Sprintf("localhost:%d", open), mux.CodeOK},         // a name admitted by the IP it resolves to
		{fmt.Sprintf("localhost:%d", onlyCIDR), mux.CodeDenied}, // resolves to loopback, outside 10/8
		{fmt.Sprintf("2130706433:%d", open), mux.CodeBadRequest},
		{"127.0.0.1:0", mux.CodeBadRequest},
		{"no-port", mux.CodeBadRequest},
	} {
		conn, code, msg := a.dial(context.Background(), tc.target)
		if conn != nil {
			conn.Close()
		}
		if code != tc.want {
			t.Errorf("%s: got %s (%s), want %s", tc.target, code, msg, tc.want)
		}
		if code != mux.CodeOK && msg == "" {
			t.Errorf("%s: refusal without a message", tc.target)
		}
	}
}

// closedPort is the port of testutil.ClosedAddr.
func closedPort(t *testing.T) int {
	return int(netip.MustParseAddrPort(testutil.ClosedAddr(t)).Port())
}

func TestStatusNeverShowsToken(t *testing.T) {
	a := newTestAgent(t, "db:5432")
	b, err := json.Marshal(a.Status())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) {
		t.Fatalf("status reveals the token: %s", b)
	}
	if a.Ready() {
		t.Fatal("ready without a tunnel")
	}
}

func TestLockIsExclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.lock")
	l, err := AcquireLock(path, "config /etc/ferry/agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(path, "second")
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second lock: %v, want ErrAlreadyRunning", err)
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(msg, "/etc/ferry/agent.toml") {
		t.Fatalf("message does not name the running agent: %s", msg)
	}
	l.Release()
	l2, err := AcquireLock(path, "third")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Release()
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := config.DefaultAgent()
	cfg.Gateway.URL = "wss://gateway.invalid/v1/tunnel"
	cfg.Gateway.Token = secret
	cfg.Access.Allow = []string{"db:99999"}
	_, err := New(&cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "db:99999") {
		t.Fatalf("got %v", err)
	}
}
