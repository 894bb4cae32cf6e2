package agent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/tunnel"
)

// slot is one of the ha_connections tunnels; it reconnects on its own.
type slot struct {
	index int

	mu        sync.Mutex
	sess      *mux.Session
	gateway   netip.Addr
	node      string
	since     time.Time
	lastErr   string
	lastErrAt time.Time
	attempts  int        // consecutive failures, to move on to the next gateway address
	avoid     netip.Addr // a gateway node that said goaway: prefer another address
}

func (s *slot) session() *mux.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess
}

// detach forgets sess as the slot's live session, unless it was already
// replaced.
func (s *slot) detach(sess *mux.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == sess {
		s.sess = nil
	}
}

func (s *slot) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	s.lastErr = err.Error()
	s.lastErrAt = time.Now()
}

// pick chooses the gateway address for the next attempt: spread by slot
// index, moved on by failures, away from a node that is going away. ips must
// be sorted, so that every slot sees the same order.
func (s *slot) pick(ips []netip.Addr) netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	ip := ips[(s.index+s.attempts)%len(ips)]
	if ip == s.avoid && len(ips) > 1 {
		ip = ips[(s.index+s.attempts+1)%len(ips)]
	}
	return ip
}

// preferred is the slot's own gateway address, where it returns after a
// failover so that tunnels stay spread over the gateway nodes.
func (s *slot) preferred(ips []netip.Addr) netip.Addr {
	return ips[s.index%len(ips)]
}

// runState is what one Run shares with its tunnels.
type runState struct {
	streamCtx context.Context // data streams; cancelled when the shutdown grace ends
	streams   sync.WaitGroup  // data stream handlers
	retiring  sync.WaitGroup  // sessions replaced after a goaway, finishing their streams

	mu      sync.Mutex
	settles map[*mux.Session]time.Time // tunnels sent drain, until they close: when the gateway has surely read it
}

// sendDrain tells the gateway to open nothing more on sess, unless the
// agent did so already, and returns when the gateway has surely read the
// drain: until then an open that crossed it may still arrive, and sess
// must not be closed (see closeDrained).
func (rs *runState) sendDrain(sess *mux.Session, why string) time.Time {
	rs.mu.Lock()
	if at, ok := rs.settles[sess]; ok {
		rs.mu.Unlock()
		return at
	}
	select {
	case <-sess.Done(): // closed: nothing can cross a drain any more
		rs.mu.Unlock()
		return time.Time{}
	default:
	}
	if rs.settles == nil {
		rs.settles = map[*mux.Session]time.Time{}
	}
	rs.settles[sess] = time.Now().Add(settleTime(sess)) // held while sending
	rs.mu.Unlock()

	// Send may wait for a slow tunnel: not under rs.mu, which every
	// tunnel's close takes.
	sess.Send(mux.Message{Type: mux.TypeDrain, Reason: why})
	at := time.Now().Add(settleTime(sess))
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if _, ok := rs.settles[sess]; ok { // not closed meanwhile
		rs.settles[sess] = at
	}
	return at
}

// settled is when every drain sent on a tunnel still open has settled.
func (rs *runState) settled() time.Time {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var last time.Time
	for _, at := range rs.settles {
		if at.After(last) {
			last = at
		}
	}
	return last
}

// closeDrained closes sess once a drain on it has settled, sending one
// first if none went out: the gateway may have picked the tunnel already.
func (rs *runState) closeDrained(sess *mux.Session, why string) {
	time.Sleep(time.Until(rs.sendDrain(sess, why)))
	rs.closed(sess)
}

// closed closes sess and forgets its drain.
func (rs *runState) closed(sess *mux.Session) {
	sess.Close()
	rs.mu.Lock()
	delete(rs.settles, sess)
	rs.mu.Unlock()
}

// runTunnel is one connection attempt of slot s and, when it comes up, the
// tunnel's life until it ends or the gateway node says goaway.
func (a *Agent) runTunnel(ctx context.Context, rs *runState, s *slot) (time.Duration, error) {
	if a.draining.Load() { // shutting down: no new tunnel, only the end
		<-ctx.Done()
		return 0, ctx.Err()
	}
	ips, err := a.dialer.Resolve(ctx)
	if err != nil {
		a.m.TunnelConnects.WithLabelValues("error").Inc()
		s.fail(err)
		a.log.Warn("cannot resolve gateway", "tunnel", s.index, "err", err)
		return 0, err
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	ip := s.pick(ips)
	t, err := a.connect(ctx, s, ip)
	if err == nil {
		return a.serveTunnel(ctx, rs, s, t, s.preferred(ips))
	}
	s.fail(err)
	if tunnel.NeedsOperator(err) {
		a.m.TunnelConnects.WithLabelValues("auth_failed").Inc()
		if !a.authFailed.Swap(true) {
			a.log.Error(operatorMessage(err, a.cfg.Gateway.TokenFile), "retry_every", a.cfg.Reconnect.MaxInterval)
		}
		return 0, err
	}
	a.m.TunnelConnects.WithLabelValues("error").Inc()
	a.log.Warn("tunnel connect failed", "tunnel", s.index, "gateway", ip.String(), "err", err)
	return 0, err
}

// tunnelConn is one established session of a slot.
type tunnelConn struct {
	sess    *mux.Session
	ip      netip.Addr
	hello   mux.Message
	goaway  chan struct{} // closed when the gateway node says goaway
	start   time.Time
	retired atomic.Bool // streams that still arrive are answered busy
}

// connect dials the gateway at ip and starts a session.
func (a *Agent) connect(ctx context.Context, s *slot, ip netip.Addr) (*tunnelConn, error) {
	conn, err := a.dialer.Dial(ctx, ctx, ip)
	if err != nil {
		return nil, err
	}
	t := &tunnelConn{ip: ip, goaway: make(chan struct{})}
	var once sync.Once
	t.sess, t.hello, err = mux.Agent(ctx, conn, a.settings, a.info(), func(m mux.Message) {
		if m.Type == mux.TypeGoaway {
			a.log.Info("gateway node is going away: opening a replacement tunnel", "tunnel", s.index, "node", m.Node, "reason", m.Reason)
			once.Do(func() { close(t.goaway) })
		}
	})
	if err != nil {
		return nil, err
	}
	t.start = time.Now()
	return t, nil
}

// serveTunnel accepts data streams on t until it ends. When the gateway node
// says goaway, t is retired (it finishes its streams in the background) and
// serveTunnel returns tunnel.ErrReplace, so that the slot opens its
// replacement at once. A slot away from its preferred address tries to
// return there every rebalanceInterval, opening the new tunnel before it
// retires the old one.
func (a *Agent) serveTunnel(ctx context.Context, rs *runState, s *slot, t *tunnelConn, preferred netip.Addr) (time.Duration, error) {
	first := t.start
	a.tunnelUp(rs, s, t)
	accepted := a.acceptStreams(ctx, rs, t)

	rebalance := make(chan *tunnelConn)
	rbCtx, stopRebalance := context.WithCancel(ctx)
	var rb sync.WaitGroup
	defer func() {
		stopRebalance()
		rb.Wait()
	}()
	if t.ip != preferred {
		rb.Add(1)
		go func() {
			defer rb.Done()
			a.rebalance(rbCtx, rs, s, preferred, rebalance)
		}()
	}

	for {
		select {
		case <-accepted:
			s.detach(t.sess)
			up, err := a.tunnelDown(rs, t)
			if ctx.Err() != nil {
				return up, ctx.Err()
			}
			s.mu.Lock()
			s.lastErr, s.lastErrAt = err.Error(), time.Now()
			s.mu.Unlock()
			a.log.Warn("tunnel disconnected", "tunnel", s.index, "gateway", t.ip.String(), "up", up.Round(time.Millisecond), "err", err)
			return time.Since(first), err
		case <-t.goaway:
			s.detach(t.sess)
			s.mu.Lock()
			s.avoid = t.ip
			s.mu.Unlock()
			a.retire(rs, s, t, accepted, "gateway node going away")
			return time.Since(first), tunnel.ErrReplace
		case nt := <-rebalance:
			a.retire(rs, s, t, accepted, "back to the preferred gateway "+nt.ip.String())
			t = nt
			a.tunnelUp(rs, s, t)
			accepted = a.acceptStreams(ctx, rs, t)
		}
	}
}

// rebalance tries, every rebalanceInterval, to open a tunnel to the slot's
// preferred gateway address and hands it over when it comes up.
func (a *Agent) rebalance(ctx context.Context, rs *runState, s *slot, preferred netip.Addr, out chan<- *tunnelConn) {
	tick := time.NewTicker(a.rebalanceInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if a.draining.Load() {
			continue
		}
		t, err := a.connect(ctx, s, preferred)
		if err != nil {
			a.log.Debug("preferred gateway still unavailable", "tunnel", s.index, "gateway", preferred.String(), "err", err)
			continue
		}
		select {
		case out <- t:
			return
		case <-ctx.Done():
			a.discard(rs, t)
			return
		}
	}
}

// discard closes t, a tunnel never put to use, in the background: the
// gateway registered it at its handshake and may have picked it, so it
// answers busy to what arrives until a drain on it has settled.
func (a *Agent) discard(rs *runState, t *tunnelConn) {
	t.retired.Store(true)
	ended, end := context.WithCancel(context.Background())
	end()
	a.acceptStreams(ended, rs, t) // closes t once drained
}

// tunnelUp makes t the slot's tunnel; an agent shutting down drains it at
// once.
func (a *Agent) tunnelUp(rs *runState, s *slot, t *tunnelConn) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	a.m.TunnelConnects.WithLabelValues("ok").Inc()
	a.m.TunnelsConnected.Inc()
	if a.authFailed.Swap(false) {
		a.log.Info("token accepted again")
	}
	s.mu.Lock()
	s.sess, s.gateway, s.node, s.since, s.attempts, s.avoid = t.sess, t.ip, t.hello.Node, t.start, 0, netip.Addr{}
	s.mu.Unlock()
	a.log.Info("tunnel connected", "tunnel", s.index, "gateway", t.ip.String(), "node", t.hello.Node, "session", t.hello.SessionID)
	if a.draining.Load() {
		rs.sendDrain(t.sess, "agent shutting down")
	}
}

func (a *Agent) tunnelDown(rs *runState, t *tunnelConn) (time.Duration, error) {
	rs.closed(t.sess)
	a.m.TunnelsConnected.Dec()
	return time.Since(t.start), t.sess.Err()
}

// acceptStreams serves t's data streams in a goroutine owned by rs.retiring
// (it outlives serveTunnel when t is retired); the returned channel is closed
// when the session has ended.
func (a *Agent) acceptStreams(ctx context.Context, rs *runState, t *tunnelConn) <-chan struct{} {
	done := make(chan struct{})
	rs.retiring.Add(1)
	go func() {
		defer rs.retiring.Done()
		defer close(done)
		// Run's end (or a discarded tunnel): drain, then close.
		closed := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(closed)
			rs.closeDrained(t.sess, "tunnel closing")
		})
		defer func() {
			if !stop() {
				<-closed
			}
		}()
		for {
			// Not on ctx: streams that arrive while the drain settles are
			// answered busy; the loop ends when the session closes.
			st, err := t.sess.Accept(context.Background())
			if err != nil {
				return
			}
			rs.streams.Add(1)
			go a.serveStream(rs.streamCtx, st, t.retired.Load, rs.streams.Done)
		}
	}()
	return done
}

// drainSettle is the least time a tunnel stays open after the agent sent
// drain on it, so that the gateway has read the drain before the tunnel
// changes what it does: an open that crossed the drain on the wire is
// served (a retired tunnel) or answered busy (an agent shutting down), not
// cut. maxSettle bounds it on a link whose last round trip was slow, so
// that a shutdown stays within the service manager's stop timeout.
const (
	drainSettle = 250 * time.Millisecond
	maxSettle   = 5 * time.Second
)

// settleTime is how long sess stays open after a drain: drainSettle, or
// two round trips on a slower link, at most maxSettle.
func settleTime(sess *mux.Session) time.Duration {
	return min(max(drainSettle, 2*sess.RTT()), maxSettle)
}

// retire tells the gateway to open nothing more on t, and closes t in the
// background once its streams are done (or it ends on its own). Until the
// gateway has surely seen the drain (the settle time, at least two round
// trips) new streams are served; after it they are answered busy, which
// makes the gateway retry on another tunnel. Only then can t's stream count
// reaching zero be trusted.
func (a *Agent) retire(rs *runState, s *slot, t *tunnelConn, accepted <-chan struct{}, why string) {
	settleAt := rs.sendDrain(t.sess, why)
	rs.retiring.Add(1)
	go func() {
		defer rs.retiring.Done()
		settle := time.NewTimer(time.Until(settleAt))
		select {
		case <-settle.C:
		case <-accepted:
		}
		settle.Stop()
		t.retired.Store(true)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
	wait:
		for t.sess.NumStreams() > 0 {
			select {
			case <-accepted:
				break wait
			case <-tick.C:
			}
		}
		up, err := a.tunnelDown(rs, t)
		<-accepted
		a.log.Info("retired tunnel closed", "tunnel", s.index, "gateway", t.ip.String(), "up", up.Round(time.Millisecond), "why", why, "session_end", err)
	}()
}

// operatorMessage is the one line logged when the gateway turns the agent
// away for a reason only a person can fix.
func operatorMessage(err error, tokenFile string) string {
	where := "the FERRY_AGENT_TOKEN environment variable or [gateway] token"
	if tokenFile != "" {
		where = tokenFile + " (or FERRY_AGENT_TOKEN)"
	}
	if errors.Is(err, tunnel.ErrAgentDisabled) {
		return "gateway refused this agent (403): the agent is disabled on the gateway; ask its operator to enable it"
	}
	return "token rejected by gateway (401): the token was rotated or revoked; put the new one in " + where + "; it is read again at each retry"
}
