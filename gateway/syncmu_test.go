package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/store"
)

// hangStore makes every ListConnections after the first block until its ctx
// ends: a store connection stuck on a dead TCP peer or behind a lock.
type hangStore struct {
	store.Store
	calls   atomic.Int32
	entered chan struct{}
}

func (h *hangStore) ListConnections(ctx context.Context) ([]store.Connection, error) {
	if h.calls.Add(1) == 1 {
		return h.Store.ListConnections(ctx)
	}
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestSyncDoesNotHoldUpAPIOrShutdown: a store sync whose read hangs (a
// PostgreSQL connection stuck on a dead peer) holds up neither the admin
// API's stops nor shutdown, which is what ends the read.
func TestSyncDoesNotHoldUpAPIOrShutdown(t *testing.T) {
	cfg := testConfig(t)
	cfg.Connections = []config.Connection{{Name: "static", Agent: "a", Target: "127.0.0.1:1", Listen: "127.0.0.1:0"}}
	g := newTestGateway(t, &cfg)
	hs := &hangStore{Store: g.store, entered: make(chan struct{}, 1)}
	g.store = hs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-g.Ready()
	select {
	case <-hs.entered:
	case <-time.After(30 * time.Second): // the first sync is 5 s after start
		t.Fatal("no sync round")
	}
	// The admin API must not wait for the hung round.
	apiDone := make(chan struct{})
	go func() { g.StopConnection("nope"); close(apiDone) }()
	select {
	case <-apiDone:
	case <-time.After(2 * time.Second):
		t.Error("admin StopConnection blocked >2s behind a hung store sync")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("shutdown hung >5s: StopConnection waits on syncMu, held by a sync waiting on g.life, which only shutdown cancels")
		g.kill() // let the test end
		<-done
	}
	<-apiDone
}
