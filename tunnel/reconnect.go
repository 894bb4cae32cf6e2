package tunnel

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Reconnect is the agent's retry policy for one tunnel: exponential backoff
// with jitter between InitialInterval and MaxInterval, reset after a tunnel
// that stayed up for StableAfter, and the maximum interval straight away when
// the failure needs an operator (a rejected token).
type Reconnect struct {
	InitialInterval time.Duration // default 1s
	MaxInterval     time.Duration // default 60s
	StableAfter     time.Duration // default 10s
}

// Attempt runs one tunnel: it returns when the tunnel has ended or failed to
// come up. up is how long it was connected (0 if never); err says why it ended.
type Attempt func(ctx context.Context) (up time.Duration, err error)

// Run calls attempt until ctx ends, waiting between calls as the policy says.
// onWait, if not nil, is told each wait before it starts.
func (r Reconnect) Run(ctx context.Context, attempt Attempt, onWait func(err error, wait time.Duration)) {
	if r.InitialInterval <= 0 {
		r.InitialInterval = time.Second
	}
	if r.MaxInterval < r.InitialInterval {
		r.MaxInterval = max(60*time.Second, r.InitialInterval)
	}
	if r.StableAfter <= 0 {
		r.StableAfter = 10 * time.Second
	}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(r.InitialInterval),
		backoff.WithMaxInterval(r.MaxInterval),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(0),
	)
	for ctx.Err() == nil {
		up, err := attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		if up >= r.StableAfter || errors.Is(err, ErrReplace) {
			b.Reset()
		}
		if errors.Is(err, ErrReplace) {
			continue
		}
		// Jitter spreads reconnects around the interval; never past the
		// maximum the operator configured.
		wait := min(b.NextBackOff(), r.MaxInterval)
		if NeedsOperator(err) {
			wait = r.MaxInterval
		}
		if onWait != nil {
			onWait(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
