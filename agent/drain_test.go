//go:build unix

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
	d := startDrainTest(t, true)
	d.a.slots[0].mu.Lock()
	d.a.slots[0].sess = d.as
	d.a.slots[0].mu.Unlock()
	stopped := d.shutdown(nil)

	d.wantBusy("open that crossed the drain", stopped)
}

// TestDrainWaitsForRetiredTunnel: a tunnel being retired (after a goaway)
// is no longer a slot's, but an agent shutting down just after the retire's
// drain still leaves it open until that drain has settled: an open that
// crossed it is served or answered busy, never cut.
func TestDrainWaitsForRetiredTunnel(t *testing.T) {
	d := startDrainTest(t, true)
	tc := &tunnelConn{sess: d.as, start: time.Now()}
	stopped := d.shutdown(func() { d.a.retire(d.rs, d.a.slots[0], tc, d.accepted, "gateway node going away") })

	_, err := d.openOnDrain(stopped)
	if oe := (*mux.OpenError)(nil); err != nil && !errors.Is(err, mux.ErrNotSent) && (!errors.As(err, &oe) || oe.Reply.Code != mux.CodeBusy) {
		t.Errorf("open that crossed the retire's drain = %v; want it served, answered busy or not sent (all retried or done)", err)
	}
}

// TestLateTunnelHeldUntilSettled: a tunnel whose connect was under way when
// the agent began to shut down, and came up only once Run's end had come,
// sends its own drain and stays open until that drain has settled: the
// gateway registered it at its handshake and, as a tunnel with no streams,
// prefers it for the next open.
func TestLateTunnelHeldUntilSettled(t *testing.T) {
	d := startDrainTest(t, false)
	d.a.draining.Store(true)
	ended, end := context.WithCancel(context.Background())
	end()
	tc := &tunnelConn{sess: d.as, start: time.Now(), goaway: make(chan struct{})}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer close(d.accepted)
		d.a.serveTunnel(ended, d.rs, d.a.slots[0], tc, tc.ip)
	}()

	d.wantBusy("open on the late tunnel", stopped)
}

// TestDiscardedTunnelAnswersBusy: a tunnel made to return to the slot's
// own gateway address but not needed after all (its slot's tunnel ended
// meanwhile) is registered on the gateway, which may pick it: it answers
// busy until a drain on it has settled, and only then closes.
func TestDiscardedTunnelAnswersBusy(t *testing.T) {
	d := startDrainTest(t, false)
	d.a.discard(d.rs, &tunnelConn{sess: d.as, start: time.Now(), goaway: make(chan struct{})})
	close(d.accepted)

	d.wantBusy("open on the discarded tunnel", d.as.Done())
}

// wantBusy makes the open (see openOnDrain) and checks that it was
// answered busy, which the gateway retries elsewhere, and that the target
// saw no connection.
func (d *drainTest) wantBusy(what string, stopped <-chan struct{}) {
	d.t.Helper()
	target, err := d.openOnDrain(stopped)
	if oe := (*mux.OpenError)(nil); !errors.As(err, &oe) || oe.Reply.Code != mux.CodeBusy {
		d.t.Errorf("%s = %v; want busy, which the gateway retries elsewhere", what, err)
	}
	if target != 0 {
		d.t.Errorf("%s: the target saw %d connection(s), want 0: nothing is dialled for it", what, target)
	}
}

// drainTest is an agent's side of one tunnel, served as Run serves it, and
// the gateway's side, which reports the first drain it reads.
type drainTest struct {
	t        *testing.T
	a        *Agent
	rs       *runState
	as, gs   *mux.Session
	target   *testutil.CountingListener
	drained  chan struct{}
	accepted chan struct{} // closed when the agent's accept loop has ended
	abort    context.CancelFunc
	ctx      context.Context
}

// startDrainTest connects the two sides; with serve, the agent's side
// accepts and serves streams as acceptStreams does, but never closes the
// session by itself.
func startDrainTest(t *testing.T, serve bool) *drainTest {
	t.Helper()
	target := testutil.NewCountingListener(t)
	a := newTestAgent(t, target.Addr)
	gc, ac := testutil.TCPPair(t)
	set := mux.DefaultSettings()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)

	d := &drainTest{t: t, a: a, target: target, drained: make(chan struct{}), accepted: make(chan struct{}), ctx: ctx}
	var once sync.Once
	gch := make(chan *mux.Session, 1)
	go func() {
		gs, _, err := mux.Gateway(ctx, gc, set, mux.Message{}, func(m mux.Message) {
			if m.Type == mux.TypeDrain {
				once.Do(func() { close(d.drained) })
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
	t.Cleanup(func() { gs.Close() })
	d.as, d.gs = as, gs

	streamCtx, abort := context.WithCancel(context.Background())
	t.Cleanup(abort)
	d.abort = abort
	d.rs = &runState{streamCtx: streamCtx}
	if serve {
		go func() {
			defer close(d.accepted)
			for {
				st, err := as.Accept(context.Background())
				if err != nil {
					return
				}
				d.rs.streams.Add(1)
				go a.serveStream(streamCtx, st, func() bool { return false }, d.rs.streams.Done)
			}
		}()
	}
	return d
}

// shutdown runs before (if any), then the agent's drain and the close of
// its tunnel, as Run's end does, in the background; the channel is closed
// once the tunnel is closed.
func (d *drainTest) shutdown(before func()) <-chan struct{} {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if before != nil {
			before()
		}
		d.a.drain(d.rs, 0, d.abort)
		d.as.Close()
	}()
	return stopped
}

// openOnDrain opens a stream with first bytes the moment the gateway reads
// the drain, and returns, once everything has ended, the connections the
// target saw and the open's error.
func (d *drainTest) openOnDrain(stopped <-chan struct{}) (int64, error) {
	var err error
	select {
	case <-d.drained:
		var st *mux.Stream
		st, err = d.gs.Open(d.ctx, mux.OpenRequest{Target: d.target.Addr, ConnID: "c-1"}, []byte("INSERT INTO orders"))
		if st != nil {
			st.Close()
		}
	case <-stopped:
		d.t.Error("the tunnel closed before the gateway heard the drain")
	}
	<-stopped
	<-d.accepted
	d.rs.retiring.Wait()
	d.rs.streams.Wait()
	return d.target.Accepted(), err
}
