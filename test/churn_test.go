package test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// resourceCounts are a process's goroutines (go_goroutines from its
// /metrics) and open file descriptors (/proc/PID/fd).
type resourceCounts struct{ goroutines, fds int }

func (r resourceCounts) String() string {
	return fmt.Sprintf("%d goroutines, %d fds", r.goroutines, r.fds)
}

// countResources reads them; metricsURL is fetched on a connection of its
// own that is closed afterwards, so that reading leaves nothing behind.
func countResources(p *testutil.Process, metricsURL string) (resourceCounts, error) {
	body, err := testutil.HTTPGet(metricsURL)
	if err != nil {
		return resourceCounts{}, err
	}
	fds, err := p.OpenFDs()
	if err != nil {
		return resourceCounts{}, err
	}
	return resourceCounts{goroutines: int(testutil.Metric(body, "go_goroutines", nil)), fds: fds}, nil
}

// TestChurnReleasesResources: after 10,000 connections have come and gone
// through one connection, the agent's and the gateway's goroutines and file
// descriptors return to where they were before (issue 3, point 5).
func TestChurnReleasesResources(t *testing.T) {
	t.Parallel()
	const (
		total   = 10000
		workers = 32
		size    = 1024
		// What may legitimately differ: a runtime or HTTP helper goroutine,
		// the metrics scrape in flight.
		slack = 3
	)
	echo := testutil.NewEchoServer(t)
	s := newStack(t, map[string]string{"echo": echo.Addr}, []string{echo.Addr})
	addr := s.GW.Conns["echo"]
	procs := []struct {
		name string
		p    *testutil.Process
		url  string
	}{
		{"ferry-gateway", s.GW.Proc, "http://" + s.GW.AdminAddr + "/metrics"},
		{"ferry-agent", s.Agent.Proc, "http://" + s.Agent.MetricsAddr + "/metrics"},
	}
	// Warm up: pools and lazily started goroutines exist before the
	// baseline is taken.
	for range 20 {
		checkEcho(t, addr)
	}
	time.Sleep(200 * time.Millisecond)
	base := make([]resourceCounts, len(procs))
	for i, pr := range procs {
		c, err := countResources(pr.p, pr.url)
		if err != nil {
			t.Fatalf("%s: %v", pr.name, err)
		}
		base[i] = c
	}

	start := time.Now()
	var next, failed atomic.Int64
	var peak [2]atomic.Int64 // goroutines seen during the churn
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for next.Add(1) <= total {
				res := testutil.EchoRoundTrip(addr, testutil.EchoOpts{Size: size, Seed: rng.Uint64(), Timeout: 20 * time.Second})
				if res.Err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = res.Err
					}
					mu.Unlock()
				}
			}
		}()
	}
	// Sample the peak while the churn runs.
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for next.Load() < total {
			for i, pr := range procs {
				if c, err := countResources(pr.p, pr.url); err == nil && int64(c.goroutines) > peak[i].Load() {
					peak[i].Store(int64(c.goroutines))
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	wg.Wait()
	<-sampled
	churn := time.Since(start)
	end := time.Now()
	t.Logf("%d connections (%d workers, %d B echoed each) in %s (%.0f/s), %d failed",
		total, workers, size, churn.Round(time.Millisecond), total/churn.Seconds(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d connections failed; first: %v", n, total, firstErr)
	}

	for i, pr := range procs {
		var last resourceCounts
		testutil.Poll(t, 15*time.Second, pr.name+" back to its baseline "+base[i].String(), func() (bool, string) {
			c, err := countResources(pr.p, pr.url)
			if err != nil {
				return false, err.Error()
			}
			last = c
			return c.goroutines <= base[i].goroutines+slack && c.fds <= base[i].fds+slack, c.String()
		})
		t.Logf("%s: before %s; peak %d goroutines during the churn; after %s, %s after the last connection",
			pr.name, base[i], peak[i].Load(), last, time.Since(end).Round(time.Millisecond))
	}
}
