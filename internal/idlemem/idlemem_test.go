package idlemem

import (
	"context"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// forcedCycles is how many collections the program has forced so far.
func forcedCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestReleasesOnlyWhenIdle: while the process is busy nothing is forced;
// once it is idle, every interval forces a collection (which
// debug.FreeOSMemory runs before returning the free heap); stop ends the
// goroutine.
func TestReleasesOnlyWhenIdle(t *testing.T) {
	var idle atomic.Bool
	var asked atomic.Int32
	stop := Start(context.Background(), 5*time.Millisecond, func() bool {
		asked.Add(1)
		return idle.Load()
	})
	defer stop()
	before := forcedCycles()
	for asked.Load() < 5 {
		time.Sleep(5 * time.Millisecond)
	}
	if n := forcedCycles() - before; n != 0 {
		t.Fatalf("%d collections forced while busy, want none", n)
	}
	idle.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for forcedCycles()-before < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d collections forced in 10 s while idle, want one per interval", forcedCycles()-before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStopsWithContext: Run returns when its context ends.
func TestStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, time.Hour, func() bool { return true })
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
