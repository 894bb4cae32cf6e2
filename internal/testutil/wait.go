package testutil

import (
	"testing"
	"time"
)

// Poll calls cond every 50 ms until it returns true or timeout passes, and
// reports how long it took. On timeout it fails the test with what, plus the
// last detail cond gave.
func Poll(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, detail string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var detail string
	for {
		var ok bool
		ok, detail = cond()
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s (last: %s)", what, timeout, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
