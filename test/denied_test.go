package test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// TestDeniedTarget: a connection whose target the agent's allow-list does
// not admit ends at once for the client, is counted as denied, and never
// reaches the target.
func TestDeniedTarget(t *testing.T) {
	t.Parallel()
	allowed := testutil.NewEchoServer(t)
	forbidden := testutil.NewCountingListener(t)
	s := newStack(t, map[string]string{"forbidden": forbidden.Addr, "allowed": allowed.Addr}, []string{allowed.Addr})
	deniedBefore := s.Agent.Metric(t, "ferry_agent_streams_total", map[string]string{"result": "denied"})

	start := time.Now()
	var n int
	c, err := net.DialTimeout("tcp", s.GW.Conns["forbidden"], 5*time.Second)
	if err == nil {
		defer c.Close()
		c.Write([]byte("hello?")) // the client may talk before it learns the answer
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err = c.Read(make([]byte, 1024))
	}
	// On a loaded machine the reset can arrive before the client's dial has
	// returned; the dial then reports it. Either way the connection ended
	// at once with a reset.
	elapsed := time.Since(start)
	switch {
	case n > 0:
		t.Fatalf("read %d bytes from a denied connection", n)
	case errors.Is(err, io.EOF):
		t.Logf("denied connection ended with EOF after %s", elapsed.Round(time.Millisecond))
	case testutil.IsReset(err):
		t.Logf("denied connection ended with a reset after %s", elapsed.Round(time.Millisecond))
	default:
		t.Fatalf("denied connection: read returned %v after %s, want EOF or reset at once", err, elapsed.Round(time.Millisecond))
	}

	testutil.Poll(t, 5*time.Second, "ferry_agent_streams_total{result=denied} incremented", func() (bool, string) {
		d := s.Agent.Metric(t, "ferry_agent_streams_total", map[string]string{"result": "denied"})
		return d == deniedBefore+1, "denied " + ftoa(d) + ", before " + ftoa(deniedBefore)
	})
	// The allowed connection on the same agent still works: the refusal hit
	// one stream, not the tunnel.
	checkEcho(t, s.GW.Conns["allowed"])
	if n := forbidden.Accepted(); n != 0 {
		t.Errorf("the forbidden target accepted %d connections, want 0", n)
	}
}
