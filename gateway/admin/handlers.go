package admin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/store"
)

// GenerateToken returns a new agent token: AgentTokenPrefix and 32 random
// bytes from crypto/rand, base64url without padding.
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return AgentTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
	maxDescription    = 1024
)

// record shows a as the API does, with its live tunnels ([] when none).
func (h *handler) record(a store.Agent) adminapi.Agent {
	tunnels := h.backend.Tunnels(a.Name)
	if tunnels == nil {
		tunnels = []adminapi.Tunnel{}
	}
	return adminapi.Agent{
		Name:           a.Name,
		Description:    a.Description,
		CreatedAt:      a.CreatedAt.UTC(),
		TokenRotatedAt: a.TokenRotatedAt.UTC(),
		Online:         len(tunnels) > 0,
		Tunnels:        tunnels,
	}
}

// storeFailed answers 500 and logs the cause, which may name internals the
// client has no use for.
func (h *handler) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("admin API: store failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error: the gateway's store failed (see the gateway log)")
}

// audit appends an event. The change it records is already made, so a
// failure is logged rather than turned into an error response.
func (h *handler) audit(r *http.Request, action, subject, detail string) {
	e := store.AuditEvent{At: h.now(), Actor: "admin", Action: action, Subject: subject, Detail: detail}
	if err := h.store.AppendAudit(context.WithoutCancel(r.Context()), e); err != nil {
		h.log.Error("admin API: cannot append audit event", "action", action, "subject", subject, "err", err)
	}
}

// newToken returns a new agent token, or answers 500 and returns false.
func (h *handler) newToken(w http.ResponseWriter) (string, bool) {
	token, err := GenerateToken()
	if err != nil {
		h.log.Error("admin API: cannot generate token", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error: cannot generate a token")
		return "", false
	}
	return token, true
}

// pathName returns the {name} path value, or answers 400 and returns false.
func pathName(w http.ResponseWriter, r *http.Request, kind string) (string, bool) {
	name := r.PathValue("name")
	if err := checkName(kind, name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return name, true
}

func (h *handler) createAgent(w http.ResponseWriter, r *http.Request) {
	var req adminapi.AgentRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := checkName("agent", req.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := checkDescription(req.Description); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	token, ok := h.newToken(w)
	if !ok {
		return
	}
	now := h.now()
	a := store.Agent{Name: req.Name, Description: req.Description, CreatedAt: now, TokenHash: HashToken(token), TokenRotatedAt: now}
	if err := h.store.CreateAgent(r.Context(), a); err != nil {
		if errors.Is(err, store.ErrExists) {
			writeError(w, http.StatusConflict, fmt.Sprintf("agent %q already exists", req.Name))
			return
		}
		h.storeFailed(w, r, err)
		return
	}
	a.CreatedAt = a.CreatedAt.UTC().Truncate(time.Microsecond) // as stored
	a.TokenRotatedAt = a.CreatedAt
	h.log.Info("admin API: agent created", "agent", a.Name)
	h.audit(r, adminapi.ActionAgentCreate, a.Name, fmt.Sprintf("description=%q", a.Description))
	w.Header().Set("Location", "/api/v1/agents/"+a.Name)
	writeJSON(w, http.StatusCreated, adminapi.CreatedAgent{Agent: h.record(a), Token: token})
}

func (h *handler) listAgents(w http.ResponseWriter, r *http.Request) {
	agents, err := h.store.ListAgents(r.Context())
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	out := make([]adminapi.Agent, 0, len(agents))
	for _, a := range agents {
		out = append(out, h.record(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getAgent(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "agent")
	if !ok {
		return
	}
	a, err := h.store.GetAgent(r.Context(), name)
	if err != nil {
		h.agentError(w, r, name, err)
		return
	}
	writeJSON(w, http.StatusOK, h.record(a))
}

func (h *handler) agentError(w http.ResponseWriter, r *http.Request, name string, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("agent %q not found", name))
		return
	}
	h.storeFailed(w, r, err)
}

func (h *handler) rotateToken(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "agent")
	if !ok {
		return
	}
	token, ok := h.newToken(w)
	if !ok {
		return
	}
	if err := h.store.SetAgentToken(r.Context(), name, HashToken(token)); err != nil {
		h.agentError(w, r, name, err)
		return
	}
	h.backend.CloseAgentTunnels(name, "agent token rotated")
	h.log.Info("admin API: agent token rotated; its tunnels were closed", "agent", name)
	h.audit(r, adminapi.ActionAgentRotateToken, name, "old token revoked, tunnels closed")
	writeJSON(w, http.StatusOK, adminapi.RotatedToken{Token: token})
}

func (h *handler) deleteAgent(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "agent")
	if !ok {
		return
	}
	conns, err := h.store.ListConnections(r.Context())
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	if err := h.store.DeleteAgent(r.Context(), name); err != nil {
		h.agentError(w, r, name, err)
		return
	}
	var stopped []string
	for _, c := range conns {
		if c.Agent == name {
			h.backend.StopConnection(c.Name)
			stopped = append(stopped, c.Name)
		}
	}
	h.backend.CloseAgentTunnels(name, "agent deleted")
	h.log.Info("admin API: agent deleted", "agent", name, "connections_deleted", stopped)
	detail := "tunnels closed"
	if len(stopped) > 0 {
		detail += "; connections deleted: " + strings.Join(stopped, ", ")
	}
	h.audit(r, adminapi.ActionAgentDelete, name, detail)
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) createConnection(w http.ResponseWriter, r *http.Request) {
	var req adminapi.ConnectionRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for _, err := range []error{
		checkName("connection", req.Name),
		checkName("agent", req.Agent),
		checkHostPort("target", req.Target, true),
		checkHostPort("listen", req.Listen, false),
	} {
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if _, ok := h.static[req.Name]; ok {
		writeError(w, http.StatusConflict, fmt.Sprintf("connection %q already exists (defined in the config file)", req.Name))
		return
	}
	stored, err := h.store.ListConnections(r.Context())
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	for _, c := range slices.Concat(h.staticList, stored) {
		if c.Listen == req.Listen && c.Name != req.Name {
			writeError(w, http.StatusConflict, fmt.Sprintf("listen address %s is already used by connection %q", req.Listen, c.Name))
			return
		}
	}
	c := store.Connection{Name: req.Name, Agent: req.Agent, Target: req.Target, Listen: req.Listen, CreatedAt: h.now()}
	if err := h.store.CreateConnection(r.Context(), c); err != nil {
		switch {
		case errors.Is(err, store.ErrExists):
			writeError(w, http.StatusConflict, fmt.Sprintf("connection %q already exists", req.Name))
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, fmt.Sprintf("agent %q not found: create it first (POST /api/v1/agents)", req.Agent))
		default:
			h.storeFailed(w, r, err)
		}
		return
	}
	c.CreatedAt = c.CreatedAt.UTC().Truncate(time.Microsecond)
	if err := h.backend.StartConnection(c); err != nil {
		// The row must not outlive the failure, even if the client left.
		if derr := h.store.DeleteConnection(context.WithoutCancel(r.Context()), c.Name); derr != nil {
			h.log.Error("admin API: cannot roll back connection after its listener failed", "connection", c.Name, "err", derr)
		}
		status := http.StatusBadRequest
		if errors.Is(err, syscall.EADDRINUSE) {
			status = http.StatusConflict
		}
		writeError(w, status, fmt.Sprintf("cannot start connection %q: %v", c.Name, err))
		return
	}
	h.log.Info("admin API: connection created", "connection", c.Name, "agent", c.Agent, "target", c.Target, "listen", c.Listen)
	h.audit(r, adminapi.ActionConnCreate, c.Name, fmt.Sprintf("agent=%s target=%s listen=%s", c.Agent, c.Target, c.Listen))
	w.Header().Set("Location", "/api/v1/connections/"+c.Name)
	writeJSON(w, http.StatusCreated, connRecord(c, adminapi.SourceAPI))
}

// connRecord shows c; a zero CreatedAt (config file connections) stays
// zero and is left out of the JSON.
func connRecord(c store.Connection, source string) adminapi.Connection {
	return adminapi.Connection{Name: c.Name, Agent: c.Agent, Target: c.Target, Listen: c.Listen, Source: source, CreatedAt: c.CreatedAt.UTC()}
}

func (h *handler) listConnections(w http.ResponseWriter, r *http.Request) {
	stored, err := h.store.ListConnections(r.Context())
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	out := make([]adminapi.Connection, 0, len(h.staticList)+len(stored))
	for _, c := range h.staticList {
		out = append(out, connRecord(c, adminapi.SourceConfig))
	}
	for _, c := range stored {
		out = append(out, connRecord(c, adminapi.SourceAPI))
	}
	slices.SortStableFunc(out, func(a, b adminapi.Connection) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) deleteConnection(w http.ResponseWriter, r *http.Request) {
	name, ok := pathName(w, r, "connection")
	if !ok {
		return
	}
	if _, ok := h.static[name]; ok {
		writeError(w, http.StatusConflict, fmt.Sprintf("connection %q is defined in the config file: remove its [[connections]] entry there and restart ferry-gateway", name))
		return
	}
	if err := h.store.DeleteConnection(r.Context(), name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("connection %q not found", name))
			return
		}
		h.storeFailed(w, r, err)
		return
	}
	h.backend.StopConnection(name)
	h.log.Info("admin API: connection deleted", "connection", name)
	h.audit(r, adminapi.ActionConnDelete, name, "")
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) listAudit(w http.ResponseWriter, r *http.Request) {
	limit := defaultAuditLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxAuditLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid limit %q: use a number from 1 to %d", s, maxAuditLimit))
			return
		}
		limit = n
	}
	events, err := h.store.ListAudit(r.Context(), limit)
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	out := make([]adminapi.AuditEvent, 0, len(events))
	for _, e := range events {
		out = append(out, adminapi.AuditEvent{ID: e.ID, At: e.At.UTC(), Actor: e.Actor, Action: e.Action, Subject: e.Subject, Detail: e.Detail})
	}
	writeJSON(w, http.StatusOK, out)
}
