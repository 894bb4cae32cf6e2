package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/store"
)

// connListener is one connection's local port.
type connListener struct {
	c      store.Connection
	static bool // from the config file, not the store
	ln     net.Listener
	done   chan struct{}
}

// StartConnection opens c's listener (admin.Backend). Each accepted client is
// proxied to c.Target through c.Agent. Starting a connection that is already
// open with the same settings does nothing.
func (g *Gateway) StartConnection(c store.Connection) error {
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	g.apiGen++
	return g.startConnection(c, false)
}

func (g *Gateway) startConnection(c store.Connection, static bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := g.listeners[c.Name]; ok {
		if l.c.Agent == c.Agent && l.c.Target == c.Target && l.c.Listen == c.Listen {
			return nil // already open, e.g. by the store sync: starting is idempotent
		}
		return fmt.Errorf("connection %q is already listening", c.Name)
	}
	if g.draining.Load() {
		return errors.New("gateway is shutting down")
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.Listen, err)
	}
	l := &connListener{c: c, static: static, ln: ln, done: make(chan struct{})}
	g.listeners[c.Name] = l
	go g.accept(l)
	g.log.Info("connection listening", "connection", c.Name, "listen", ln.Addr().String(), "agent", c.Agent, "target", c.Target)
	return nil
}

// StopConnection closes the named connection's listener (admin.Backend).
// Connections already proxied go on until they end.
func (g *Gateway) StopConnection(name string) {
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	g.apiGen++
	g.stopConnection(name)
}

func (g *Gateway) stopConnection(name string) {
	g.mu.Lock()
	l := g.listeners[name]
	delete(g.listeners, name)
	g.mu.Unlock()
	if l != nil {
		l.ln.Close()
		<-l.done
	}
}

func (g *Gateway) accept(l *connListener) {
	defer close(l.done)
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.log.Error("accept failed", "connection", l.c.Name, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		g.clients.Add(1)
		g.active.Add(1)
		go g.serveClient(l.c, conn.(*net.TCPConn))
	}
}

// serveClient proxies one client connection. A client whose stream cannot be
// opened is reset at once; the reason goes to the log and the metrics. It
// releases the client's place in g.clients and g.active when the
// connection has ended, which for a proxied one is after serveClient has
// returned: the pipe's own goroutines carry it from there.
func (g *Gateway) serveClient(c store.Connection, conn *net.TCPConn) {
	release := func() {
		g.active.Add(-1)
		g.clients.Done()
	}
	id := newID("c")
	start := time.Now()
	clientGone := func(err error) {
		mux.Reset(conn)
		g.log.Info("connection", "conn", id, "connection", c.Name, "agent", c.Agent, "target", c.Target,
			"client", conn.RemoteAddr().String(), "result", "client_gone", "err", err)
		release()
	}
	first, err := mux.ReadFirst(conn)
	if err != nil { // the client is gone: there is nothing to open
		clientGone(err)
		return
	}
	ctx, cancel := context.WithTimeout(g.life, g.cfg.Limits.OpenTimeout)
	// A client whose open runs out of time is reset at the deadline: the
	// abort of a stream that carried first bytes can take up to the
	// handshake timeout more to be acknowledged (mux.Session.Open).
	resetDone := make(chan struct{})
	resetAtDeadline := context.AfterFunc(ctx, func() {
		defer close(resetDone)
		mux.Reset(conn)
	})
	st, first, err := g.dialStream(ctx, c.Agent, c.Target, id, conn, first)
	if !resetAtDeadline() {
		<-resetDone
		if err == nil { // the stream opened as the client was reset
			st.Abort()
			err = fmt.Errorf("dial %s through agent %q: %w", c.Target, c.Agent, ctx.Err())
		}
	}
	cancel()
	g.m.StreamOpenDuration.Observe(time.Since(start).Seconds())
	if errors.Is(err, mux.ErrClientGone) {
		clientGone(err)
		return
	}
	if err != nil {
		mux.Reset(conn)
		result := openResult(err)
		g.m.Streams.WithLabelValues(c.Agent, result).Inc()
		g.log.Warn("connection refused", "conn", id, "connection", c.Name, "agent", c.Agent,
			"target", c.Target, "client", conn.RemoteAddr().String(), "result", result, "err", err)
		release()
		return
	}
	g.m.Streams.WithLabelValues(c.Agent, "ok").Inc()
	g.m.StreamsActive.Inc()
	mux.Start(g.life, conn, st, func(res mux.PipeResult) {
		defer release()
		g.m.StreamsActive.Dec()
		res.ToStream += int64(len(first))
		g.m.Bytes.WithLabelValues(c.Agent, "to_agent").Add(float64(res.ToStream))
		g.m.Bytes.WithLabelValues(c.Agent, "from_agent").Add(float64(res.FromStream))
		attrs := []any{"conn", id, "connection", c.Name, "agent", c.Agent, "target", c.Target,
			"client", conn.RemoteAddr().String(), "bytes_to_agent", res.ToStream, "bytes_from_agent", res.FromStream,
			"duration", time.Since(start).Round(time.Millisecond)}
		if res.Aborted {
			attrs = append(attrs, "reset", true, "err", res.Err)
		}
		g.log.Info("connection", attrs...)
	})
}

// syncConnections makes this node's listeners match the stored connections,
// so that connections created or deleted through another node's API (they
// share the store) appear and disappear here too. failed remembers the last
// error per connection so that a persistent one is logged once.
func (g *Gateway) syncConnections(ctx context.Context, failed map[string]string) {
	g.syncMu.Lock()
	gen := g.apiGen
	g.syncMu.Unlock()
	stored, err := g.store.ListConnections(ctx)
	if err != nil {
		g.log.Warn("cannot list stored connections", "err", err)
		return
	}
	g.syncMu.Lock()
	defer g.syncMu.Unlock()
	if g.apiGen != gen {
		return // the API started or stopped a connection since the read: it may be stale
	}
	want := make(map[string]store.Connection, len(stored))
	for _, c := range stored {
		want[c.Name] = c
	}
	g.mu.Lock()
	var stale []string
	running := make(map[string]bool, len(g.listeners))
	for name, l := range g.listeners {
		running[name] = true
		if c, ok := want[name]; !l.static && (!ok || c.Agent != l.c.Agent || c.Target != l.c.Target || c.Listen != l.c.Listen) {
			stale = append(stale, name)
		}
	}
	g.mu.Unlock()
	for _, name := range stale {
		g.stopConnection(name)
		delete(running, name)
		g.log.Info("connection removed from the store: stopped listening", "connection", name)
	}
	for name := range failed {
		if _, ok := want[name]; !ok {
			delete(failed, name)
		}
	}
	for name, c := range want {
		if running[name] {
			continue
		}
		if err := g.startConnection(c, false); err != nil {
			if failed[name] != err.Error() {
				g.log.Error("cannot open stored connection", "connection", name, "err", err)
				failed[name] = err.Error()
			}
			continue
		}
		delete(failed, name)
	}
}

// openResult is the metric label for a failed open.
func openResult(err error) string {
	var oe *mux.OpenError
	switch {
	case errors.As(err, &oe):
		return oe.Reply.Code.String()
	case errors.Is(err, ErrAgentOffline):
		return "offline"
	case errors.Is(err, ErrAgentBusy):
		return "busy"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}
