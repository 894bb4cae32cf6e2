package test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// TestManyStalledReadersOnOneTunnel: on one tunnel, 32 clients that stop
// reading their downloads and 32 targets that stop reading their uploads
// cost only their own connections. Beside them a 16 MiB echo moves every
// byte both ways; the stalled connections stay open; each process's RSS
// grows by at most 64 MiB; and when the stalled connections' clients or
// targets reset, their streams are freed while the tunnel is busy, and the
// same tunnel (no reconnect) carries new connections.
func TestManyStalledReadersOnOneTunnel(t *testing.T) {
	t.Parallel()
	const (
		stalled  = 32
		rssBound = 64 << 20
		name     = "stall1"
	)
	writer := testutil.NewWriterServer(t)
	hold := testutil.NewHoldServer(t)
	echo := testutil.NewEchoServer(t)
	g := startGateway(t, gatewayOpts{Connections: []conn{
		{Name: "firehose", Agent: name, Target: writer.Addr},
		{Name: "hold", Agent: name, Target: hold.Addr},
		{Name: "echo", Agent: name, Target: echo.Addr},
	}})
	tok := g.CreateAgent(t, name)
	a := startAgent(t, g, agentOpts{Token: tok, HA: 1, Allow: []string{writer.Addr, hold.Addr, echo.Addr}})
	a.WaitTunnels(t, 1)
	g.WaitOnline(t, name, 1)
	checkEcho(t, g.Conns["echo"])
	ok := map[string]string{"result": "ok"}
	connects := a.Metric(t, "ferry_agent_tunnel_connects_total", ok)
	rss := func() (gw, ag int64) {
		t.Helper()
		gs, err := testutil.ReadProcStatus(g.Proc.PID())
		if err != nil {
			t.Fatal(err)
		}
		as, err := testutil.ReadProcStatus(a.Proc.PID())
		if err != nil {
			t.Fatal(err)
		}
		return gs.RSS, as.RSS
	}
	gwRSS0, agRSS0 := rss()

	// Stalled downloads: the target writes without end, the client never
	// reads.
	var downs []*net.TCPConn
	for range stalled {
		downs = append(downs, dial(t, g.Conns["firehose"]))
	}
	// Stalled uploads: the client writes without end, the target never
	// reads.
	var ups []*net.TCPConn
	flood := testutil.NewFlood(t)
	for i := range stalled {
		c := dial(t, g.Conns["hold"])
		// One at a time, so that the target holds them in this order.
		testutil.Poll(t, 10*time.Second, "the target holding the upload", func() (bool, string) {
			return hold.Held() == i+1, fmt.Sprintf("%d held", hold.Held())
		})
		ups = append(ups, c)
		flood.Start(c)
	}
	// Each stalled connection fills more than its stream's first window
	// (256 KiB) before it stops.
	const filled = stalled * 320 << 10
	testutil.Poll(t, 30*time.Second, "the stalled connections filled their windows", func() (bool, string) {
		return writer.Written.Load() > filled && flood.Sent.Load() > filled && hold.Held() == stalled,
			fmt.Sprintf("downloads %d bytes, uploads %d bytes, targets holding %d", writer.Written.Load(), flood.Sent.Load(), hold.Held())
	})

	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- transferOne(g.Conns["echo"], 16<<20) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("echo beside %d stalled downloads and %d stalled uploads: %v", stalled, stalled, err)
		}
		t.Logf("16 MiB echoed beside %d stalled connections in %s", 2*stalled, time.Since(start).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("a 16 MiB echo did not finish within 60 s beside stalled connections: the tunnel is blocked")
	}

	gwRSS, agRSS := rss()
	t.Logf("RSS growth with %d stalled connections: gateway %.1f MiB, agent %.1f MiB", 2*stalled, float64(gwRSS-gwRSS0)/(1<<20), float64(agRSS-agRSS0)/(1<<20))
	if gwRSS-gwRSS0 > rssBound || agRSS-agRSS0 > rssBound {
		t.Errorf("RSS grew by %d MiB (gateway) and %d MiB (agent), want at most %d MiB each", (gwRSS-gwRSS0)>>20, (agRSS-agRSS0)>>20, rssBound>>20)
	}

	// The stalled connections are still open.
	gwActive := func() float64 { return g.Metric(t, "ferry_gateway_streams_active", nil) }
	agActive := func() float64 { return a.Metric(t, "ferry_agent_streams_active", nil) }
	testutil.Poll(t, 10*time.Second, "only the stalled connections active", func() (bool, string) {
		return gwActive() == 2*stalled && agActive() == 2*stalled, fmt.Sprintf("gateway %v, agent %v", gwActive(), agActive())
	})
	select {
	case err := <-flood.Failed:
		t.Fatalf("a stalled upload was cut: %v", err)
	default:
	}
	for i, c := range downs {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("stalled download %d: %v, want it open with data waiting", i, err)
		}
	}

	// Downloads: their clients reset. Uploads: the first half their
	// targets, the second half their clients.
	start = time.Now()
	for _, c := range downs {
		c.SetLinger(0)
		c.Close()
	}
	hold.Reset(stalled / 2)
	for _, c := range ups[stalled/2:] {
		c.SetLinger(0)
		c.Close()
	}
	freed := testutil.Poll(t, 30*time.Second, "the stalled connections' streams freed", func() (bool, string) {
		return gwActive() == 0 && agActive() == 0, fmt.Sprintf("gateway %v, agent %v", gwActive(), agActive())
	})
	t.Logf("streams freed %s after the resets", freed.Round(time.Millisecond))
	checkEcho(t, g.Conns["echo"])
	if got := a.Metric(t, "ferry_agent_tunnel_connects_total", ok); got != connects {
		t.Fatalf("the agent connected %v times, want %v: the tunnel was torn down to recover", got, connects)
	}
}
