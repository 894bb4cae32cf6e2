package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/tunnel"
)

// Errors of Dial besides the agent's own refusals (*mux.OpenError).
var (
	// ErrAgentOffline: the agent has no live, non-draining tunnel on this node.
	ErrAgentOffline = errors.New("agent has no live tunnel")
	// ErrAgentBusy: the agent already carries [limits] max_streams_per_agent
	// connections through this node.
	ErrAgentBusy = errors.New("agent at its stream limit")
)

// session is one agent tunnel on this node.
type session struct {
	id          string
	peer        tunnel.Peer
	info        mux.Message
	sess        *mux.Session
	connectedAt time.Time
}

// registry holds the live sessions by agent name. Safe for concurrent use.
type registry struct {
	mu      sync.Mutex
	byAgent map[string][]*session
	next    uint64 // round-robin among equally loaded sessions
}

func newRegistry() *registry { return &registry{byAgent: map[string][]*session{}} }

// add registers s and reports whether the agent was offline before.
func (r *registry) add(s *session) (first bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first = len(r.byAgent[s.peer.Agent]) == 0
	r.byAgent[s.peer.Agent] = append(r.byAgent[s.peer.Agent], s)
	return first
}

// remove unregisters s and reports whether the agent is now offline.
func (r *registry) remove(s *session) (last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byAgent[s.peer.Agent]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byAgent, s.peer.Agent)
		return true
	}
	r.byAgent[s.peer.Agent] = list
	return false
}

// sessions returns a copy of the agent's sessions.
func (r *registry) sessions(agent string) []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*session(nil), r.byAgent[agent]...)
}

// all returns every session.
func (r *registry) all() []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*session
	for _, l := range r.byAgent {
		out = append(out, l...)
	}
	return out
}

// pick chooses the live, non-draining session of agent with the fewest
// streams, rotating among ties; skip excludes sessions that just failed.
// total is the agent's stream count over all its sessions.
func (r *registry) pick(agent string, skip map[*session]bool) (best *session, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byAgent[agent]
	bestN := 0
	r.next++
	for i := range list {
		s := list[(int(r.next)+i)%len(list)]
		n := s.sess.NumStreams()
		total += n
		if skip[s] || s.sess.PeerDraining() || s.sess.Err() != nil {
			continue
		}
		if best == nil || n < bestN {
			best, bestN = s, n
		}
	}
	return best, total
}

// Dial opens a connection to target ("host:port") through agent, for
// programs that embed the gateway. The agent checks its allow-list and dials;
// a refusal comes back as an error wrapping *mux.OpenError. The returned
// connection supports CloseWrite (half-close).
func (g *Gateway) Dial(ctx context.Context, agent, target string) (*mux.Stream, error) {
	st, _, err := g.dialStream(ctx, agent, target, newID("c"), nil, nil)
	return st, err
}

// maxOpenAttempts bounds how many tunnels one connection tries: a tunnel
// that died between pick and open, or an agent replica that is draining
// (busy), sends it on to the next.
const maxOpenAttempts = 4

// dialStream opens a stream to target through one of agent's tunnels for
// client (nil for a Go API caller); first, the client's first bytes, goes
// with the open request (again, when an attempt moves on to the next
// tunnel, with what the client sent during the first attempt: see
// mux.Session.OpenConn). It returns the client bytes the open carried.
func (g *Gateway) dialStream(ctx context.Context, agent, target, connID string, client net.Conn, first []byte) (*mux.Stream, []byte, error) {
	tried := map[*session]bool{}
	var last error = ErrAgentOffline
	for range maxOpenAttempts {
		s, total := g.reg.pick(agent, tried)
		if s == nil {
			break
		}
		if total >= g.cfg.Limits.MaxStreamsPerAgent {
			return nil, first, fmt.Errorf("dial %s through agent %q: %w of %d ([limits] max_streams_per_agent)", target, agent, ErrAgentBusy, g.cfg.Limits.MaxStreamsPerAgent)
		}
		var st *mux.Stream
		var err error
		req := mux.OpenRequest{Target: target, ConnID: connID}
		if client != nil {
			st, first, err = s.sess.OpenConn(ctx, req, client, first)
		} else {
			st, err = s.sess.Open(ctx, req, first)
		}
		if err == nil {
			return st, first, nil
		}
		if retryable(err, len(first) > 0) {
			tried[s], last = true, err
			continue
		}
		return nil, first, fmt.Errorf("dial %s through agent %q: %w", target, agent, err)
	}
	return nil, first, fmt.Errorf("dial %s through agent %q: %w", target, agent, last)
}

// retryable reports whether an open that failed on one tunnel may go to the
// agent's next one: the agent answered busy (a draining replica or a tunnel
// being replaced: it refuses before it dials), or the tunnel failed before
// any answer. A refusal or a timeout is final: another tunnel would only
// repeat it. Once the client's first bytes went out with the request, a
// tunnel that failed before answering may have passed them to the target
// already, and a second try could deliver them twice (a request run twice):
// then only busy, and an open that sent nothing at all, go on.
func retryable(err error, sentFirst bool) bool {
	if errors.Is(err, mux.ErrClientGone) {
		return false
	}
	var oe *mux.OpenError
	if errors.As(err, &oe) {
		return oe.Reply.Code == mux.CodeBusy
	}
	if sentFirst {
		return errors.Is(err, mux.ErrNotSent)
	}
	return !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
		!errors.Is(err, mux.ErrBadRequest)
}

func newID(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}
