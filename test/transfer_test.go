package test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// TestParallelHalfCloseEcho pushes 64 connections of 4 MiB each through one
// connection listener at once. Each client half-closes after writing while it
// reads; every byte must come back intact, the target must see a clean EOF
// on each, and the agent must not keep a file descriptor afterwards.
func TestParallelHalfCloseEcho(t *testing.T) {
	t.Parallel()
	const (
		conns = 64
		size  = 4 << 20
	)
	echo := testutil.NewEchoServer(t)
	s := newStack(t, map[string]string{"echo": echo.Addr}, []string{echo.Addr})
	addr := s.GW.Conns["echo"]
	checkEcho(t, addr) // warm up: the path works before the burst

	fdsBefore, err := s.Agent.Proc.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	gwFdsBefore, err := s.GW.Proc.OpenFDs()
	if err != nil {
		t.Fatal(err)
	}
	acceptedBefore, eofBefore := echo.Accepted(), echo.CleanEOF()
	// counters reads the three byte counters, the gateway's two from one
	// scrape: the gateway adds a connection's two directions one after the
	// other, and a scrape between them would count one of them twice.
	counters := func() (toAgent, fromAgent, toTarget float64) {
		gw := s.GW.Metrics(t)
		dir := func(d string) map[string]string { return map[string]string{"direction": d} }
		return testutil.Metric(gw, "ferry_gateway_bytes_total", dir("to_agent")),
			testutil.Metric(gw, "ferry_gateway_bytes_total", dir("from_agent")),
			s.Agent.Metric(t, "ferry_agent_bytes_total", dir("to_target"))
	}
	// The warm-up is counted when it ends, a moment after its client saw
	// the end: wait for it, or it would land in the burst's figures. It
	// echoed, so all three counters then hold its length.
	var toAgent0, fromAgent0, toTarget0 float64
	testutil.Poll(t, 10*time.Second, "byte counters holding the warm-up connection", func() (bool, string) {
		toAgent0, fromAgent0, toTarget0 = counters()
		return toAgent0 > 0 && toAgent0 == fromAgent0 && fromAgent0 == toTarget0,
			fmt.Sprintf("gateway to_agent %v, from_agent %v, agent to_target %v", toAgent0, fromAgent0, toTarget0)
	})

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := transferOne(addr, size); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	elapsed := time.Since(start)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d connections × %d MiB echoed in %s (%.1f MiB/s each way)", conns, size>>20, elapsed.Round(time.Millisecond),
		float64(conns*size)/(1<<20)/elapsed.Seconds())
	if t.Failed() {
		return
	}

	// Every client read the echo's EOF, which the echo sends only after its
	// own clean EOF: the counts are final.
	if got := echo.Accepted() - acceptedBefore; got != conns {
		t.Errorf("echo target accepted %d connections, want %d", got, conns)
	}
	if got := echo.CleanEOF() - eofBefore; got != conns {
		t.Errorf("echo target saw a clean EOF on %d connections, want %d (errors: %v)", got, conns, echo.Errors())
	}

	// The byte counters count every byte once, the client's first bytes
	// (sent with the open request) included. A connection is counted when
	// it ends, a moment after its client saw the end.
	want := float64(conns * size)
	testutil.Poll(t, 10*time.Second, "byte counters of the gateway and the agent at the bytes moved", func() (bool, string) {
		to, from, target := counters()
		to, from, target = to-toAgent0, from-fromAgent0, target-toTarget0
		return to == want && from == want && target == want,
			fmt.Sprintf("gateway to_agent %v, from_agent %v, agent to_target %v; want %v each", to, from, target, want)
	})

	// Leak check: the agent's descriptors return to their level before the
	// burst (a little slack for the runtime's own).
	const slack = 4
	var fdsNow int
	d := testutil.Poll(t, 10*time.Second, "agent file descriptors back to their level before the burst", func() (bool, string) {
		fdsNow, err = s.Agent.Proc.OpenFDs()
		if err != nil {
			return false, err.Error()
		}
		return fdsNow <= fdsBefore+slack, fmt.Sprintf("%d open, %d before", fdsNow, fdsBefore)
	})
	t.Logf("agent fds: %d before the burst, %d after (settled in %s)", fdsBefore, fdsNow, d.Round(time.Millisecond))
	d = testutil.Poll(t, 10*time.Second, "gateway file descriptors back to their level before the burst", func() (bool, string) {
		fdsNow, err = s.GW.Proc.OpenFDs()
		if err != nil {
			return false, err.Error()
		}
		return fdsNow <= gwFdsBefore+slack, fmt.Sprintf("%d open, %d before", fdsNow, gwFdsBefore)
	})
	t.Logf("gateway fds: %d before the burst, %d after (settled in %s)", gwFdsBefore, fdsNow, d.Round(time.Millisecond))
	active := s.Agent.Metric(t, "ferry_agent_streams_active", nil)
	if active != 0 {
		t.Errorf("ferry_agent_streams_active = %v after all connections ended, want 0", active)
	}
}

// transferOne is transferVia over a TCP connection to addr.
func transferOne(addr string, size int) error {
	return transferVia(func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 10*time.Second) }, size)
}

// transferVia writes size random bytes to a connection from dial and
// half-closes while reading the echo, and checks the echo byte for byte (by
// SHA-256) and its clean end.
func transferVia(dial func() (net.Conn, error), size int) error {
	data := make([]byte, size)
	rand.Read(data)
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(90 * time.Second))
	writeErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, bytes.NewReader(data))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		writeErr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", n, err)
	}
	if err := <-writeErr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n != int64(size) {
		return fmt.Errorf("got %d bytes back, sent %d", n, size)
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("the echoed bytes differ from the sent ones (SHA-256 mismatch)")
	}
	return nil
}

// TestSlowReaderDoesNotStallOthers: a client that stops reading a large
// response must not stall the other connections sharing its tunnel (smux
// per-stream windows; DESIGN §7).
func TestSlowReaderDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	writer := testutil.NewWriterServer(t)
	echo := testutil.NewEchoServer(t)
	// One tunnel, so both connections share it.
	const name = "a1"
	g := startGateway(t, gatewayOpts{Connections: []conn{
		{Name: "firehose", Agent: name, Target: writer.Addr},
		{Name: "echo", Agent: name, Target: echo.Addr},
	}})
	tok := g.CreateAgent(t, name)
	a := startAgent(t, g, agentOpts{Token: tok, HA: 1, Allow: []string{writer.Addr, echo.Addr}})
	a.WaitTunnels(t, 1)
	g.WaitOnline(t, name, 1)

	stuck := dial(t, g.Conns["firehose"])
	if _, err := io.ReadAtLeast(stuck, make([]byte, 1), 1); err != nil {
		t.Fatalf("read from the firehose: %v", err)
	}
	// Stop reading; wait until the target can no longer write (every buffer
	// on the way is full).
	var last int64 = -1
	testutil.Poll(t, 20*time.Second, "the firehose's buffers are full", func() (bool, string) {
		n := writer.Written.Load()
		full := n == last
		last = n
		time.Sleep(200 * time.Millisecond)
		return full, fmt.Sprintf("%d bytes written", n)
	})
	t.Logf("firehose stalled with %d MiB buffered between target and client", writer.Written.Load()>>20)
	// The stall itself shows the buffering is bounded (per-stream windows);
	// neither process may hold more than a few windows' worth for it.
	const rssBound = 64 << 20
	for _, p := range []struct {
		name string
		pid  int
	}{{"gateway", g.Proc.PID()}, {"agent", a.Proc.PID()}} {
		st, err := testutil.ReadProcStatus(p.pid)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s RSS %.1f MiB with a stalled reader (peak %.1f MiB)", p.name, float64(st.RSS)/(1<<20), float64(st.PeakRSS)/(1<<20))
		if st.RSS > rssBound {
			t.Errorf("%s holds %d MiB for one stalled reader, want under %d MiB", p.name, st.RSS>>20, rssBound>>20)
		}
	}

	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- transferOne(g.Conns["echo"], 16<<20) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("echo beside a stalled stream: %v", err)
		}
		t.Logf("16 MiB echoed beside a stalled stream in %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatalf("a 16 MiB echo did not finish within 30 s beside a stalled stream: the tunnel is blocked")
	}
}
