package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/store"
)

// Backend is what the API needs from the running gateway. Package gateway
// implements it. Its methods are called concurrently from request handlers
// and must not block for long.
type Backend interface {
	// Tunnels returns the live tunnels of an agent on this node.
	Tunnels(agent string) []TunnelInfo
	// CloseAgentTunnels closes the agent's tunnels at once, after its token
	// was rotated or the agent deleted. reason is for logs and the agent.
	CloseAgentTunnels(agent string, reason string)
	// StartConnection opens the connection's listener. When it fails (say,
	// the address is in use) the API deletes the stored row again and
	// answers 409 (address in use) or 400.
	StartConnection(c store.Connection) error
	// StopConnection closes the named connection's listener, if any.
	StopConnection(name string)
}

// TunnelInfo describes one live tunnel of an agent. It is the wire type
// [adminapi.Tunnel], under the name Backend implementations use.
type TunnelInfo = adminapi.Tunnel

// Config is what NewHandler needs. NewHandler copies it; the caller may
// reuse it afterwards.
type Config struct {
	// Store holds agents, API connections and the audit log. Required.
	Store store.Store
	// Backend is the running gateway. Required.
	Backend Backend
	// AdminToken is the bearer token every request must carry. Required;
	// it must not look like an agent token (AgentTokenPrefix).
	AdminToken string
	// StaticConnections come from the config file. They are listed with
	// "source":"config", their names are reserved, and the API refuses to
	// delete them.
	StaticConnections []store.Connection
	// Logger receives one line per mutation and per rejected request.
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// AgentTokenPrefix starts every agent token ("Ferry agent token"), so that
// a token is recognisable in a secret scanner and never mistaken for the
// admin token.
const AgentTokenPrefix = "fat_"

// maxBodyBytes bounds request bodies.
const maxBodyBytes = 64 << 10

// NewHandler returns the admin API handler for the paths under /api/. It
// checks the admin token on every request before anything else. It is safe
// for concurrent use.
func NewHandler(cfg Config) (http.Handler, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("admin API: Config.Store is nil")
	case cfg.Backend == nil:
		return nil, errors.New("admin API: Config.Backend is nil")
	case cfg.AdminToken == "":
		return nil, errors.New("admin API: no admin token: set [admin] token_file or FERRY_ADMIN_TOKEN")
	case strings.HasPrefix(cfg.AdminToken, AgentTokenPrefix):
		return nil, fmt.Errorf("admin API: the admin token starts with %q like an agent token: choose a different secret", AgentTokenPrefix)
	}
	h := &handler{
		store:      cfg.Store,
		backend:    cfg.Backend,
		adminHash:  sha256.Sum256([]byte(cfg.AdminToken)),
		static:     map[string]store.Connection{},
		staticList: slices.Clone(cfg.StaticConnections),
		log:        cfg.Logger,
		now:        cfg.Now,
		mux:        http.NewServeMux(),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	for _, c := range h.staticList {
		if _, dup := h.static[c.Name]; dup {
			return nil, fmt.Errorf("admin API: static connection %q is defined twice", c.Name)
		}
		h.static[c.Name] = c
	}
	h.routes()
	return h, nil
}

// HashToken returns the SHA-256 of a token: what the store keeps and what
// AgentByTokenHash looks up.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

type handler struct {
	store      store.Store
	backend    Backend
	adminHash  [sha256.Size]byte
	static     map[string]store.Connection
	staticList []store.Connection
	log        *slog.Logger
	now        func() time.Time
	mux        *http.ServeMux
}

func (h *handler) routes() {
	m := h.mux
	m.HandleFunc("POST /api/v1/agents", h.createAgent)
	m.HandleFunc("GET /api/v1/agents", h.listAgents)
	m.HandleFunc("/api/v1/agents", methodNotAllowed("GET, POST"))
	m.HandleFunc("GET /api/v1/agents/{name}", h.getAgent)
	m.HandleFunc("DELETE /api/v1/agents/{name}", h.deleteAgent)
	m.HandleFunc("/api/v1/agents/{name}", methodNotAllowed("GET, DELETE"))
	m.HandleFunc("POST /api/v1/agents/{name}/token", h.rotateToken)
	m.HandleFunc("/api/v1/agents/{name}/token", methodNotAllowed("POST"))
	m.HandleFunc("POST /api/v1/connections", h.createConnection)
	m.HandleFunc("GET /api/v1/connections", h.listConnections)
	m.HandleFunc("/api/v1/connections", methodNotAllowed("GET, POST"))
	m.HandleFunc("DELETE /api/v1/connections/{name}", h.deleteConnection)
	m.HandleFunc("/api/v1/connections/{name}", methodNotAllowed("DELETE"))
	m.HandleFunc("GET /api/v1/audit", h.listAudit)
	m.HandleFunc("/api/v1/audit", methodNotAllowed("GET"))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such API endpoint: %s %s", r.Method, r.URL.Path))
	})
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !h.authorized(r) {
		h.log.Warn("admin API: rejected request without a valid admin token",
			"remote_addr", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry-admin"`)
		writeError(w, http.StatusUnauthorized, "missing or invalid admin token")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// authorized compares SHA-256s in constant time, so neither the token's
// content nor its length leaks through timing.
func (h *handler) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	token = strings.TrimSpace(token)
	// The prefix is public; refusing it outright keeps agent tokens out
	// even if an operator reused one as the admin token elsewhere.
	if token == "" || strings.HasPrefix(token, AgentTokenPrefix) {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], h.adminHash[:]) == 1
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s: use %s", r.Method, r.URL.Path, allow))
	}
}
