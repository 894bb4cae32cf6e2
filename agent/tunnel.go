package agent

import (
	"context"
	"errors"
	"net/netip"
	"sync"
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
	attempts  int // consecutive failures, to move on to the next gateway address
}

func (s *slot) session() *mux.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess
}

func (s *slot) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	s.lastErr = err.Error()
	s.lastErrAt = time.Now()
}

// runTunnel is one connection attempt of slot s and, when it comes up, the
// tunnel's whole life. Data streams run under streamCtx and are tracked by
// streams.
func (a *Agent) runTunnel(ctx, streamCtx context.Context, s *slot, streams *sync.WaitGroup) (time.Duration, error) {
	ips, err := a.dialer.Resolve(ctx)
	if err != nil {
		a.m.TunnelConnects.WithLabelValues("error").Inc()
		s.fail(err)
		a.log.Warn("cannot resolve gateway", "tunnel", s.index, "err", err)
		return 0, err
	}
	s.mu.Lock()
	ip := ips[(s.index+s.attempts)%len(ips)]
	s.mu.Unlock()
	conn, err := a.dialer.Dial(ctx, ctx, ip)
	if err == nil {
		var sess *mux.Session
		var hello mux.Message
		sess, hello, err = mux.Agent(ctx, conn, a.settings, a.info(), func(m mux.Message) { a.onControl(s, m) })
		if err == nil {
			return a.serveTunnel(ctx, streamCtx, s, ip, sess, hello, streams)
		}
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

func (a *Agent) serveTunnel(ctx, streamCtx context.Context, s *slot, ip netip.Addr, sess *mux.Session, hello mux.Message, streams *sync.WaitGroup) (time.Duration, error) {
	start := time.Now()
	a.m.TunnelConnects.WithLabelValues("ok").Inc()
	a.m.TunnelsConnected.Inc()
	if a.authFailed.Swap(false) {
		a.log.Info("token accepted again")
	}
	s.mu.Lock()
	s.sess, s.gateway, s.node, s.since, s.attempts = sess, ip, hello.Node, start, 0
	s.mu.Unlock()
	a.log.Info("tunnel connected", "tunnel", s.index, "gateway", ip.String(), "node", hello.Node, "session", hello.SessionID)
	if a.draining.Load() {
		sess.Send(mux.Message{Type: mux.TypeDrain, Reason: "agent shutting down"})
	}

	stop := context.AfterFunc(ctx, func() { sess.Close() })
	for {
		st, err := sess.Accept(ctx)
		if err != nil {
			break
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			a.serveStream(streamCtx, st)
		}()
	}
	stop()
	sess.Close()
	up := time.Since(start)
	err := sess.Err()
	a.m.TunnelsConnected.Dec()
	s.mu.Lock()
	s.sess = nil
	if ctx.Err() == nil {
		s.lastErr, s.lastErrAt = err.Error(), time.Now()
	}
	s.mu.Unlock()
	if ctx.Err() != nil {
		return up, ctx.Err()
	}
	a.log.Warn("tunnel disconnected", "tunnel", s.index, "gateway", ip.String(), "up", up.Round(time.Millisecond), "err", err)
	return up, err
}

func (a *Agent) onControl(s *slot, m mux.Message) {
	switch m.Type {
	case mux.TypeGoaway:
		a.log.Info("gateway node is going away", "tunnel", s.index, "reason", m.Reason)
	}
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
