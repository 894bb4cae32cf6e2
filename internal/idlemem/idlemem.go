// Package idlemem returns the free heap of an idle Ferry process to the
// operating system.
//
// An idle agent or gateway still allocates a little all the time
// (keepalives, pings, the gateway's store sync: about 1 KiB/s in the
// gateway), and the Go runtime collects only when the heap reaches its goal
// (at least 4 MiB) and keeps freed pages up to about that goal rather than
// returning them. Each allocation of an idle process so lands on a page not
// yet touched: a gateway went from 14 to 18.5 MiB of RSS in 50 idle minutes
// without a single collection (docs/performance.md). Run collects and
// returns the free heap (debug.FreeOSMemory) once per interval while the
// process is idle, which holds it near its live heap. A busy process is
// left to the runtime: there a forced collection would cost more than the
// pages it returns, and they would be faulted in again at once.
//
// This changes the whole process's runtime, so only a program's main calls
// it, never a library that may be embedded.
package idlemem

import (
	"context"
	"runtime/debug"
	"time"
)

// Interval is how often an idle process returns its free heap. Each time
// costs a collection of a small heap (well under a millisecond of CPU);
// between two, an idle gateway allocates about 60 KB.
const Interval = time.Minute

// Run returns the free heap to the operating system every interval at
// which idle reports true, until ctx ends.
func Run(ctx context.Context, every time.Duration, idle func() bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if idle() {
			debug.FreeOSMemory()
		}
	}
}

// Start runs Run on a goroutine of its own until ctx ends or stop is
// called; stop returns once that goroutine has exited.
func Start(ctx context.Context, every time.Duration, idle func() bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, every, idle)
	}()
	return func() {
		cancel()
		<-done
	}
}
