package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/coder/websocket"
)

// Path is where agents open tunnels.
const Path = "/v1/tunnel"

// Authentication outcomes an Authenticate hook returns.
var (
	ErrUnauthorized = errors.New("unknown or revoked token")
	ErrDisabled     = errors.New("agent disabled")
)

// Identity is who a token belongs to, as the Authenticate hook found it.
type Identity struct {
	Agent string
	// Credential fingerprints the credential that was accepted (the gateway
	// uses the token's hash), so that a session can later check it is still
	// current. Never the token itself.
	Credential []byte
}

// Peer describes the agent at the other end of a new tunnel, from the
// handshake. Identity comes from the token; the rest is what the agent claims.
type Peer struct {
	Identity
	RemoteAddr string
	Version    string
	Instance   string
	Hostname   string
}

// HandlerConfig configures Handler.
type HandlerConfig struct {
	// Authenticate maps a token to its agent, or returns ErrUnauthorized or
	// ErrDisabled. It must compare in constant time.
	Authenticate func(ctx context.Context, token string) (Identity, error)
	// Serve takes over the tunnel's byte stream; it returns when the tunnel has
	// ended and must close conn.
	Serve func(conn net.Conn, peer Peer)
	// Draining, when it returns true, turns new tunnels away with 503.
	Draining func() bool
	// Limiter rate-limits failed handshakes per source address.
	Limiter *Limiter
	// Result is told each handshake's outcome: ok, unauthorized, disabled,
	// rate_limited, draining, error.
	Result func(result string)
	// Life bounds every tunnel's byte stream; cancelling it closes them all.
	Life   context.Context
	Logger *slog.Logger
}

// Handler authenticates and upgrades tunnel handshakes. It never logs tokens.
type Handler struct{ cfg HandlerConfig }

// NewHandler returns the tunnel upgrade handler.
func NewHandler(cfg HandlerConfig) *Handler {
	if cfg.Result == nil {
		cfg.Result = func(string) {}
	}
	if cfg.Draining == nil {
		cfg.Draining = func() bool { return false }
	}
	if cfg.Life == nil {
		cfg.Life = context.Background()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.cfg.Logger
	remote := r.RemoteAddr
	ip := hostOnly(remote)
	deny := func(code int, result, msg string) {
		h.cfg.Result(result)
		http.Error(w, msg, code)
	}
	if h.cfg.Draining() {
		deny(http.StatusServiceUnavailable, "draining", "gateway is draining; connect to another node")
		return
	}
	if h.cfg.Limiter != nil && !h.cfg.Limiter.Allow(ip) {
		w.Header().Set("Retry-After", "60")
		deny(http.StatusTooManyRequests, "rate_limited", "too many failed attempts from this address")
		return
	}
	fail := func(why string) {
		if h.cfg.Limiter != nil {
			h.cfg.Limiter.Fail(ip)
		}
		log.Warn("tunnel handshake rejected", "remote", remote, "reason", why)
		deny(http.StatusUnauthorized, "unauthorized", "unknown or revoked token")
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		fail("no bearer token")
		return
	}
	id, err := h.cfg.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, ErrUnauthorized):
		fail("unknown or revoked token")
		return
	case errors.Is(err, ErrDisabled):
		log.Warn("tunnel handshake from disabled agent", "remote", remote, "agent", id.Agent)
		deny(http.StatusForbidden, "disabled", "agent disabled")
		return
	case err != nil:
		log.Error("tunnel authentication failed", "remote", remote, "err", err)
		deny(http.StatusServiceUnavailable, "error", "authentication unavailable; retry later")
		return
	}
	peer := Peer{
		Identity:   id,
		RemoteAddr: remote,
		Version:    clean(r.Header.Get(HeaderVersion)),
		Instance:   clean(r.Header.Get(HeaderInstance)),
		Hostname:   clean(r.Header.Get(HeaderHostname)),
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		h.cfg.Result("error")
		log.Warn("tunnel upgrade failed", "remote", remote, "agent", id.Agent, "err", err)
		return
	}
	h.cfg.Result("ok")
	h.cfg.Serve(tunnelStream(h.cfg.Life, c, batchFrom(r.Context())), peer)
}

func bearer(v string) (string, bool) {
	const p = "Bearer "
	if len(v) <= len(p) || !strings.EqualFold(v[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(v[len(p):]), true
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// clean keeps an agent-supplied header printable and short.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// Limiter counts failed handshakes per source address in a sliding minute
// and refuses an address that exceeds its budget. Safe for concurrent use.
type Limiter struct {
	perMinute int
	now       func() time.Time
	mu        sync.Mutex
	entries   map[string]*limitEntry
}

type limitEntry struct {
	start time.Time
	fails int
}

// maxLimiterEntries bounds the limiter's memory under a spray of addresses.
const maxLimiterEntries = 65536

// NewLimiter allows perMinute failed handshakes per address per minute.
// now may be nil (time.Now).
func NewLimiter(perMinute int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{perMinute: perMinute, now: now, entries: map[string]*limitEntry{}}
}

// Allow reports whether ip may try a handshake now.
func (l *Limiter) Allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[ip]
	if e == nil {
		return true
	}
	if l.now().Sub(e.start) >= time.Minute {
		delete(l.entries, ip)
		return true
	}
	return e.fails < l.perMinute
}

// Fail records a failed handshake from ip.
func (l *Limiter) Fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e := l.entries[ip]
	if e == nil || now.Sub(e.start) >= time.Minute {
		if len(l.entries) >= maxLimiterEntries {
			for k, v := range l.entries {
				if now.Sub(v.start) >= time.Minute {
					delete(l.entries, k)
				}
			}
			if len(l.entries) >= maxLimiterEntries {
				return // under a spray of addresses, stop growing rather than evict live entries
			}
		}
		e = &limitEntry{start: now}
		l.entries[ip] = e
	}
	e.fails++
}
