package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/ferry-tunnel/ferry/access"
	"github.com/ferry-tunnel/ferry/mux"
)

// errAddrDenied: a name admitted only by IP rules resolved to an address
// outside them.
var errAddrDenied = errors.New("resolved address not allowed")

// serveStream answers one data stream: check, dial, reply, pipe, log.
// retired reports whether the stream's tunnel is being replaced; its new
// streams are then answered busy, for the gateway to retry elsewhere.
// release is called once the stream has ended, which for a proxied
// connection is after serveStream has returned: the pipe's own goroutines
// carry it from there.
func (a *Agent) serveStream(ctx context.Context, st *mux.Stream, retired func() bool, release func()) {
	start := time.Now()
	a.active.Add(1)
	piped := false
	defer func() {
		if !piped {
			a.active.Add(-1)
			release()
		}
	}()

	req, err := st.ReadRequest()
	if errors.Is(err, mux.ErrPeerReset) { // the gateway gave up before this agent took the stream
		st.Close()
		a.log.Info("connection", "conn", req.ConnID, "target", req.Target, "result", "reset",
			"err", "the gateway gave up on the open before the agent took it: nothing dialled",
			"duration", time.Since(start).Round(time.Millisecond))
		return
	}
	if err != nil {
		code := mux.CodeBadRequest
		if !errors.Is(err, mux.ErrBadRequest) {
			st.Close()
			a.log.Debug("stream ended before its open request", "err", err)
			return
		}
		a.refuse(st, req, code, err.Error(), start)
		return
	}
	switch {
	case a.draining.Load():
		a.refuse(st, req, mux.CodeBusy, "agent is shutting down", start)
		return
	case retired():
		a.refuse(st, req, mux.CodeBusy, "tunnel is being replaced", start)
		return
	case a.active.Load() > int64(a.cfg.Access.MaxStreams):
		a.refuse(st, req, mux.CodeBusy, fmt.Sprintf("agent at its limit of %d connections ([access] max_streams)", a.cfg.Access.MaxStreams), start)
		return
	}
	conn, code, msg := a.dial(ctx, req.Target)
	if code != mux.CodeOK {
		a.refuse(st, req, code, msg, start)
		return
	}
	if err := st.Reply(mux.Reply{Code: mux.CodeOK}); err != nil {
		mux.Reset(conn)
		st.Close()
		a.log.Info("connection", "conn", req.ConnID, "target", req.Target, "result", "error", "err", fmt.Errorf("send reply: %w", err))
		return
	}
	a.m.Streams.WithLabelValues("ok").Inc()
	a.m.StreamsActive.Inc()
	piped = true
	mux.Start(ctx, conn, st, func(res mux.PipeResult) {
		defer release()
		defer a.active.Add(-1)
		a.m.StreamsActive.Dec()
		a.m.Bytes.WithLabelValues("to_target").Add(float64(res.FromStream))
		a.m.Bytes.WithLabelValues("from_target").Add(float64(res.ToStream))
		attrs := []any{"conn", req.ConnID, "target", req.Target, "result", "ok",
			"bytes_to_target", res.FromStream, "bytes_from_target", res.ToStream,
			"duration", time.Since(start).Round(time.Millisecond)}
		if res.Aborted {
			attrs = append(attrs, "reset", true, "err", res.Err)
		}
		a.log.Info("connection", attrs...)
	})
}

func (a *Agent) refuse(st *mux.Stream, req mux.OpenRequest, code mux.Code, msg string, start time.Time) {
	st.Reply(mux.Reply{Code: code, Message: msg})
	st.Close()
	a.m.Streams.WithLabelValues(code.String()).Inc()
	a.log.Info("connection", "conn", req.ConnID, "target", req.Target, "result", code.String(), "err", msg,
		"duration", time.Since(start).Round(time.Millisecond))
}

// dial checks target against the allow-list and connects to it.
func (a *Agent) dial(ctx context.Context, target string) (*net.TCPConn, mux.Code, string) {
	policy := a.policy.Load()
	dec, err := policy.Check(target)
	switch {
	case errors.Is(err, access.ErrBadTarget):
		return nil, mux.CodeBadRequest, err.Error()
	case err != nil:
		return nil, mux.CodeDenied, err.Error()
	}
	d := net.Dialer{Timeout: a.cfg.Access.DialTimeout, KeepAlive: 30 * time.Second}
	if dec.NeedAddrCheck {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", errAddrDenied, address)
			}
			if _, ok := policy.AllowAddr(ap.Addr(), ap.Port()); !ok {
				return fmt.Errorf("%w: %s resolves to %s, outside every IP rule", errAddrDenied, dec.Host, ap.Addr())
			}
			return nil
		}
	}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", dec.Target())
	a.m.DialDuration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		return c.(*net.TCPConn), mux.CodeOK, "" // Go sets TCP_NODELAY on every TCP connection
	case errors.Is(err, errAddrDenied):
		return nil, mux.CodeDenied, err.Error()
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return nil, mux.CodeTimeout, fmt.Sprintf("dial %s: no answer within %s", dec.Target(), a.cfg.Access.DialTimeout)
	default:
		return nil, mux.CodeDialFailed, fmt.Sprintf("dial %s: %v", dec.Target(), unwrapOp(err))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unwrapOp drops net.OpError's repetition of the address.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
