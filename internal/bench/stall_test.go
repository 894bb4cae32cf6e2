package bench

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseGauge(t *testing.T) {
	t.Parallel()
	const text = `# HELP ferry_gateway_streams_active Proxied connections open now.
# TYPE ferry_gateway_streams_active gauge
ferry_gateway_streams_active 3
ferry_gateway_streams_active_other 7
ferry_agent_streams_active{tunnel="a"} 2
ferry_agent_streams_active{tunnel="b",x="}"} 1.5
`
	for _, tc := range []struct {
		name string
		want float64
	}{{"ferry_gateway_streams_active", 3}, {"ferry_agent_streams_active", 3.5}} {
		got, err := parseGauge(bufio.NewScanner(strings.NewReader(text)), tc.name)
		if err != nil || got != tc.want {
			t.Errorf("%s = %g, %v; want %g", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseGauge(bufio.NewScanner(strings.NewReader(text)), "ferry_missing"); err == nil {
		t.Error("a missing metric parsed")
	}
}

// TestSinkStalledTargets: stalled targets answer, never read, and a reset
// command resets exactly its group's connections.
func TestSinkStalledTargets(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := NewSink(NewPattern())
	var wg sync.WaitGroup
	wg.Go(func() { sink.Serve(ln) })
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		sink.Close()
	})
	addr := ln.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	var mine []*net.TCPConn
	for range 3 {
		c, err := openStalledTarget(addr, 1, deadline)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		mine = append(mine, c)
	}
	other, err := openStalledTarget(addr, 2, deadline)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// The target never reads: a writer fills the buffers and blocks.
	mine[0].SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		if _, err := mine[0].Write(make([]byte, 64<<10)); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("write to a stalled target: %v, want it to block", err)
			}
			break
		}
	}
	n, err := resetStalled(addr, 1)
	if err != nil || n != 3 {
		t.Fatalf("reset group 1: %d, %v; want 3", n, err)
	}
	for i, c := range mine {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("stalled target %d after its reset: read %v, want a reset", i, err)
		}
	}
	if ok, why := connState(other); !ok {
		t.Errorf("the other group's target is not open: %s", why)
	}
	if n, err := resetStalled(addr, 1); err != nil || n != 0 {
		t.Errorf("second reset of group 1: %d, %v; want 0", n, err)
	}
}
