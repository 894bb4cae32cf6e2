package test

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

var reReloaded = regexp.MustCompile(`msg="allow-list reloaded" rules=2`)

// TestSIGHUPReloadsAccess: a target outside the allow-list is refused until
// the rule is added to the config file and the agent gets SIGHUP; the
// tunnels stay up throughout.
func TestSIGHUPReloadsAccess(t *testing.T) {
	t.Parallel()
	first, second := testutil.NewEchoServer(t), testutil.NewEchoServer(t)
	s := newStack(t, map[string]string{"first": first.Addr, "second": second.Addr}, []string{first.Addr})
	checkEcho(t, s.GW.Conns["first"])
	if got, err := echoOnce(s.GW.Conns["second"], []byte("x")); len(got) != 0 || second.Accepted() != 0 {
		t.Fatalf("before the reload a target outside the allow-list answered %q (%v), accepted %d", got, err, second.Accepted())
	}
	connects := s.Agent.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})

	cfg, err := os.ReadFile(s.Agent.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("allow = [" + strconv.Quote(first.Addr) + "]")
	if !bytes.Contains(cfg, old) {
		t.Fatalf("config has no %s", old)
	}
	cfg = bytes.Replace(cfg, old, []byte("allow = ["+strconv.Quote(first.Addr)+", "+strconv.Quote(second.Addr)+"]"), 1)
	if err := writeFile(s.Agent.ConfigPath, string(cfg)); err != nil {
		t.Fatal(err)
	}
	s.Agent.Proc.Cmd.Process.Signal(syscall.SIGHUP)
	if _, err := s.Agent.Proc.Log.WaitFor(reReloaded, 10*time.Second); err != nil {
		t.Fatalf("agent did not reload: %v", err)
	}
	checkEcho(t, s.GW.Conns["second"])
	checkEcho(t, s.GW.Conns["first"])
	if now := s.Agent.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"}); now != connects {
		t.Fatalf("tunnels reconnected on reload: connects %v -> %v", connects, now)
	}
}
