package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
	"github.com/ferry-tunnel/ferry/mux"
)

// TestDrainAnswersCrossingOpenBusy: an agent shutting down with nothing
// active keeps its tunnel open for the settle time, so an open the gateway
// sent as the drain was on its way (it picked the tunnel before it read the
// drain) is answered busy, which the gateway retries on another replica.
// Closed at once, the tunnel would cut that open, and the gateway does not
// retry an open that carried the client's first bytes.
func TestDrainAnswersCrossingOpenBusy(t *testing.T) {
	target := testutil.NewCountingListener(t)
	a := newTestAgent(t, target.Addr)
	gc, ac := testutil.TCPPair(t)
	set := mux.DefaultSettings()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	drained := make(chan struct{})
	var once sync.Once
	gch := make(chan *mux.Session, 1)
	go func() {
		gs, _, err := mux.Gateway(ctx, gc, set, mux.Message{}, func(m mux.Message) {
			if m.Type == mux.TypeDrain {
				once.Do(func() { close(drained) })
			}
		})
		if err != nil {
			t.Error(err)
		}
		gch <- gs
	}()
	as, _, err := mux.Agent(ctx, ac, set, a.info(), nil)
	gs := <-gch
	if err != nil || gs == nil {
		t.Fatalf("handshake: %v", err)
	}
	defer gs.Close()
	a.slots[0].mu.Lock()
	a.slots[0].sess = as
	a.slots[0].mu.Unlock()

	// The agent's side, as Run has it: accept and serve streams, and on
	// shutdown drain, then close the tunnel.
	streamCtx, abort := context.WithCancel(context.Background())
	defer abort()
	var streams sync.WaitGroup
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			st, err := as.Accept(context.Background())
			if err != nil {
				return
			}
			streams.Add(1)
			go a.serveStream(streamCtx, st, func() bool { return false }, streams.Done)
		}
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.drain(0, abort)
		as.Close()
	}()

	select {
	case <-drained:
		st, err := gs.Open(ctx, mux.OpenRequest{Target: target.Addr, ConnID: "c-1"}, []byte("INSERT INTO orders"))
		if st != nil {
			st.Close()
		}
		if oe := (*mux.OpenError)(nil); !errors.As(err, &oe) || oe.Reply.Code != mux.CodeBusy {
			t.Errorf("open that crossed the drain = %v; want busy, which the gateway retries elsewhere", err)
		}
	case <-stopped:
		t.Error("the tunnel closed before the gateway heard the drain")
	}
	<-stopped
	<-accepted
	streams.Wait()
	if n := target.Accepted(); n != 0 {
		t.Errorf("the target saw %d connection(s) from a draining agent, want 0", n)
	}
}
