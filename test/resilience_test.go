package test

import (
	"context"
	"errors"
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

	"github.com/ferry-tunnel/ferry/internal/testutil"
	"github.com/ferry-tunnel/ferry/store"
)

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// TestGatewayKilledAndRestarted: after the gateway dies without a word
// (SIGKILL) and comes back on the same ports and data, the agent reconnects
// by itself and connections work again.
func TestGatewayKilledAndRestarted(t *testing.T) {
	t.Parallel()
	echo := testutil.NewEchoServer(t)
	s := newStack(t, map[string]string{"echo": echo.Addr}, []string{echo.Addr})
	checkEcho(t, s.GW.Conns["echo"])
	okBefore := s.Agent.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})

	s.GW.Proc.Kill()
	testutil.Poll(t, 10*time.Second, "agent notices the gateway is gone", func() (bool, string) {
		up := s.Agent.Metric(t, "ferry_agent_tunnels_connected", nil)
		return up == 0, "tunnels_connected " + ftoa(up)
	})

	o := s.GW.Opts
	o.Tunnel, o.Admin = s.GW.TunnelAddr, s.GW.AdminAddr // same ports, written out
	o.Connections[0].Listen = s.GW.Conns["echo"]
	start := time.Now()
	g2 := startGateway(t, o)
	d := s.Agent.WaitTunnels(t, 2)
	t.Logf("agent reconnected %s after the gateway restarted", d.Round(time.Millisecond))
	g2.WaitOnline(t, s.Name, 1)
	checkEcho(t, g2.Conns["echo"])
	t.Logf("restart to working connection: %s", time.Since(start).Round(time.Millisecond))

	okAfter := s.Agent.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})
	if okAfter <= okBefore {
		t.Errorf("ferry_agent_tunnel_connects_total{result=ok} = %v after the restart, want more than %v", okAfter, okBefore)
	}
}

var reTokenRejected = regexp.MustCompile(regexp.QuoteMeta("token rejected by gateway (401)"))

// TestTokenRotation: rotating the agent's token closes its tunnels at once;
// the agent says so in one log line however often it retries, and picks up
// the new token from its token_file without a restart.
func TestTokenRotation(t *testing.T) {
	t.Parallel()
	echo := testutil.NewEchoServer(t)
	// A generous failed-handshake limit: with max_interval 1s the agent
	// retries far more often than a real one (60s) would.
	s := newStackWith(t, gatewayOpts{Extra: "[limits]\nfailed_auth_per_minute = 10000"},
		map[string]string{"echo": echo.Addr}, []string{echo.Addr})
	checkEcho(t, s.GW.Conns["echo"])
	authFailedBefore := s.Agent.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "auth_failed"})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	newTok, err := s.GW.API.RotateToken(ctx, s.Name)
	if err != nil {
		t.Fatalf("rotate token: %v", err)
	}
	d := testutil.Poll(t, 10*time.Second, "agent tunnels closed after token rotation", func() (bool, string) {
		up := s.Agent.Metric(t, "ferry_agent_tunnels_connected", nil)
		ready := s.Agent.Readyz()
		return ready == http.StatusServiceUnavailable && up == 0, "/readyz " + strconv.Itoa(ready) + ", tunnels_connected " + ftoa(up)
	})
	t.Logf("tunnels closed %s after the rotation", d.Round(time.Millisecond))

	// Let it retry at max_interval (1s) at least three times with the old
	// token; the log must still hold one line about it.
	testutil.Poll(t, 20*time.Second, "agent retried with the old token at least 3 times", func() (bool, string) {
		n := s.Agent.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "auth_failed"}) - authFailedBefore
		return n >= 3 && time.Since(start) >= 3*time.Second, "auth_failed attempts " + ftoa(n)
	})
	if n := s.Agent.Proc.Log.Count(reTokenRejected); n != 1 {
		t.Errorf("agent logged %d lines containing %q after repeated rejections, want exactly 1", n, reTokenRejected)
	}

	if err := writeFile(s.Agent.TokenFile, newTok+"\n"); err != nil {
		t.Fatal(err)
	}
	d = s.Agent.WaitTunnels(t, 1)
	t.Logf("agent reconnected %s after the new token was written", d.Round(time.Millisecond))
	s.GW.WaitOnline(t, s.Name, 1)
	checkEcho(t, s.GW.Conns["echo"])
	checkNoSecret(t, s.Agent.Proc, "new agent token", newTok)
	checkNoSecret(t, s.GW.Proc, "new agent token", newTok)
}

// TestStoreChangedByAnotherNode: what another gateway node writes to the
// shared store (here: written straight into the gateway's SQLite file)
// takes effect on this node within its store sync: a connection created
// there listens here and a deleted one stops; a token rotated or an agent
// deleted closes this node's tunnels, and the old token stays out.
func TestStoreChangedByAnotherNode(t *testing.T) {
	t.Parallel()
	echo := testutil.NewEchoServer(t)
	s := newStackWith(t, gatewayOpts{Extra: "[limits]\nfailed_auth_per_minute = 10000"},
		map[string]string{"echo": echo.Addr}, []string{echo.Addr})
	checkEcho(t, s.GW.Conns["echo"])
	st, err := store.Open(context.Background(), "sqlite", filepath.Join(s.GW.Opts.DataDir, "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Spans both syncs below (each up to 5 s away) and the waits between.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A connection created by another node: this one listens for it and
	// carries it, then stops when it is deleted there.
	if err := st.CreateConnection(ctx, store.Connection{Name: "elsewhere", Agent: s.Name, Target: echo.Addr, Listen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	m, err := s.GW.Proc.Log.WaitFor(regexp.MustCompile(`msg="connection listening" connection=elsewhere listen=(\S+)`), 20*time.Second)
	if err != nil {
		t.Fatalf("connection created in the store: %v", err)
	}
	checkEcho(t, m[1])
	if err := st.DeleteConnection(ctx, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 20*time.Second, "the deleted connection's listener closed", func() (bool, string) {
		c, err := net.DialTimeout("tcp", m[1], time.Second)
		if err != nil {
			return true, ""
		}
		c.Close()
		return false, m[1] + " still accepts"
	})

	// A second agent, online too, whose token does not change: its tunnel
	// must stay.
	other, err := s.GW.API.CreateAgent(ctx, "bystander", "")
	if err != nil {
		t.Fatal(err)
	}
	by := startAgent(t, s.GW, agentOpts{Token: other.Token, Allow: []string{echo.Addr}, HA: 1})
	by.WaitTunnels(t, 1)

	if err := st.SetAgentToken(ctx, s.Name, []byte("another node's new hash, 32 bytes")); err != nil {
		t.Fatal(err)
	}
	d := testutil.Poll(t, 20*time.Second, "agent tunnels closed after the token changed in the store", func() (bool, string) {
		up := s.Agent.Metric(t, "ferry_agent_tunnels_connected", nil)
		return up == 0 && s.Agent.Readyz() == http.StatusServiceUnavailable, "tunnels_connected " + ftoa(up)
	})
	t.Logf("tunnels closed %s after the change in the store", d.Round(time.Millisecond))
	if _, err := s.GW.Proc.Log.WaitFor(regexp.MustCompile(`msg="closing agent tunnel: token no longer valid" agent=`+regexp.QuoteMeta(s.Name)+` `), 5*time.Second); err != nil {
		t.Errorf("gateway log: %v", err)
	}
	testutil.Poll(t, 20*time.Second, "agent refused with the old token", func() (bool, string) {
		n := s.Agent.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "auth_failed"})
		return n >= 1, "auth_failed " + ftoa(n)
	})
	// Its agent reconnects within 100 ms, so "1 tunnel now" would not show a
	// close: neither a close logged nor a second connect may have happened.
	byClosed := regexp.MustCompile(`msg="closing agent tunnel: token no longer valid" agent=bystander `)
	if n := s.GW.Proc.Log.Count(byClosed); n != 0 {
		t.Errorf("the other agent's tunnel was closed %d time(s) (its token did not change)", n)
	}
	if n := by.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"}); n != 1 {
		t.Errorf("the other agent connected %v times, want 1 (its tunnel must stay up)", n)
	}

	// Deleted on another node: the bystander's tunnel closes too.
	if err := st.DeleteAgent(ctx, "bystander"); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 20*time.Second, "deleted agent's tunnel closed", func() (bool, string) {
		up := by.Metric(t, "ferry_agent_tunnels_connected", nil)
		return up == 0, "tunnels_connected " + ftoa(up)
	})
}

// TestTunnelCutMidTransfer: when the tunnel breaks under a long response,
// the client's read ends in a reset (never a clean EOF that would pass a
// truncated response off as complete), and the target's connection ends too.
func TestTunnelCutMidTransfer(t *testing.T) {
	t.Parallel()
	target := testutil.NewWriterServer(t)
	g := startGateway(t, gatewayOpts{Connections: []conn{{Name: "stream", Agent: "a1", Target: target.Addr}}})
	fwd := testutil.NewForwarder(t, g.TunnelAddr)
	_, fwdPort, _ := net.SplitHostPort(fwd.Addr)
	tok := g.CreateAgent(t, "a1")
	a := startAgent(t, g, agentOpts{Token: tok, Allow: []string{target.Addr}, URL: "wss://localhost:" + fwdPort + "/v1/tunnel"})
	a.WaitTunnels(t, 2)
	g.WaitOnline(t, "a1", 2)

	c := dial(t, g.Conns["stream"])
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	var got int64
	for got < 8<<20 { // well into the response
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			t.Fatalf("read before the cut, after %d bytes: %v", got, err)
		}
	}
	cut := time.Now()
	n := fwd.CutAll()
	t.Logf("cut %d tunnel connections after %d MiB", n, got>>20)

	var err error
	for err == nil {
		var k int
		k, err = c.Read(buf)
		got += int64(k)
	}
	t.Logf("client read ended %s after the cut, %d bytes in all: %v", time.Since(cut).Round(time.Millisecond), got, err)
	switch {
	case errors.Is(err, io.EOF):
		t.Fatalf("client read a clean EOF after the tunnel broke: a cut response looks complete")
	case !testutil.IsReset(err):
		t.Fatalf("client read ended with %v, want ECONNRESET", err)
	}

	select {
	case err := <-target.Ended:
		switch {
		case testutil.IsReset(err):
			t.Logf("target connection was reset: %v", err)
		default:
			t.Logf("target connection was closed: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the target's connection still runs 15 s after the tunnel broke")
	}
	// The agent heals the tunnel through the same path.
	a.WaitTunnels(t, 1)
}

// TestSilentLinkDeath: when the path to the gateway goes silent (no FIN, no
// reset; packets just vanish), both sides notice within their keepalive
// timeout: the client's in-flight connection is reset, and the agent opens
// new tunnels that work.
func TestSilentLinkDeath(t *testing.T) {
	t.Parallel()
	target := testutil.NewWriterServer(t)
	echo := testutil.NewEchoServer(t)
	g := startGateway(t, gatewayOpts{
		Extra: "[limits]\nkeepalive_interval = \"500ms\"\nkeepalive_timeout = \"2s\"",
		Connections: []conn{
			{Name: "stream", Agent: "a1", Target: target.Addr},
			{Name: "echo", Agent: "a1", Target: echo.Addr},
		},
	})
	fwd := testutil.NewForwarder(t, g.TunnelAddr)
	_, fwdPort, _ := net.SplitHostPort(fwd.Addr)
	tok := g.CreateAgent(t, "a1")
	a := writeAgentConfig(t, g, agentOpts{
		Token: tok, Allow: []string{target.Addr, echo.Addr},
		URL: "wss://localhost:" + fwdPort + "/v1/tunnel",
	})
	// The [gateway] table's keepalive keys go before the next table header.
	cfg, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "ha_connections = 2\n",
		"ha_connections = 2\nkeepalive_interval = \"500ms\"\nkeepalive_timeout = \"2s\"\n", 1))
	if err := os.WriteFile(a.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	a.Start(t)
	a.WaitTunnels(t, 2)
	g.WaitOnline(t, "a1", 2)
	okBefore := a.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})

	c := dial(t, g.Conns["stream"])
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	if _, err := io.ReadAtLeast(c, buf, 1); err != nil {
		t.Fatalf("read before the link died: %v", err)
	}
	frozen := time.Now()
	t.Logf("froze %d tunnel connections", fwd.FreezeAll())

	var got int64
	for err == nil {
		var k int
		k, err = c.Read(buf)
		got += int64(k)
	}
	t.Logf("client read ended %s after the link died (%d more bytes): %v", time.Since(frozen).Round(time.Millisecond), got, err)
	if !testutil.IsReset(err) {
		t.Errorf("client read ended with %v, want ECONNRESET", err)
	}

	testutil.Poll(t, 15*time.Second, "agent replaced its dead tunnels", func() (bool, string) {
		ok := a.Metric(t, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})
		return ok >= okBefore+2, "connects ok " + ftoa(ok) + ", before " + ftoa(okBefore)
	})
	t.Logf("agent reconnected %s after the link died", time.Since(frozen).Round(time.Millisecond))
	testutil.Poll(t, 15*time.Second, "a connection through the new tunnels", func() (bool, string) {
		msg := []byte("after " + randomHex(8))
		b, err := echoOnce(g.Conns["echo"], msg)
		return err == nil && string(b) == string(msg), fmt.Sprintf("got %q, %v", b, err)
	})
}
