// Package admintest holds helpers for tests of the admin API; not for
// production. [NewServer] runs the real API handler over a fresh SQLite
// store and a [Backend] fake, on an httptest server that the test's cleanup
// closes.
package admintest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/admin"
	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/store"
)

// AdminToken is the admin token the server accepts.
const AdminToken = "admin-secret-for-tests"

// Now is the server's clock: every record it creates has this time.
var Now = time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)

// StaticConnection is the one connection the server has from its "config
// file".
var StaticConnection = store.Connection{Name: "erp-db", Agent: "acme-dc1", Target: "db.internal:5432", Listen: "127.0.0.1:15432"}

// Backend is a fake [admin.Backend] that records what the API asked of the
// gateway. It is safe for concurrent use.
type Backend struct {
	mu       sync.Mutex
	tunnels  map[string][]adminapi.Tunnel
	closed   []string // "agent: reason"
	started  []string
	stopped  []string
	startErr error
}

var _ admin.Backend = (*Backend)(nil)

// SetTunnels makes ts the agent's live tunnels.
func (b *Backend) SetTunnels(agent string, ts []adminapi.Tunnel) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tunnels == nil {
		b.tunnels = map[string][]adminapi.Tunnel{}
	}
	b.tunnels[agent] = ts
}

// FailStart makes StartConnection return err from now on (nil: succeed).
func (b *Backend) FailStart(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.startErr = err
}

// Calls returns, in order, the "agent: reason" of each CloseAgentTunnels
// call and the names given to StartConnection (successful calls only) and
// StopConnection.
func (b *Backend) Calls() (closed, started, stopped []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.closed), slices.Clone(b.started), slices.Clone(b.stopped)
}

// Tunnels implements [admin.Backend].
func (b *Backend) Tunnels(agent string) []adminapi.Tunnel {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tunnels[agent]
}

// CloseAgentTunnels implements [admin.Backend]: it records the call and
// forgets the agent's tunnels.
func (b *Backend) CloseAgentTunnels(agent, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = append(b.closed, agent+": "+reason)
	delete(b.tunnels, agent)
}

// StartConnection implements [admin.Backend].
func (b *Backend) StartConnection(c store.Connection) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.startErr != nil {
		return b.startErr
	}
	b.started = append(b.started, c.Name)
	return nil
}

// StopConnection implements [admin.Backend].
func (b *Backend) StopConnection(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = append(b.stopped, name)
}

// Server is the admin API on an httptest server.
type Server struct {
	// URL is the server's base address, such as "http://127.0.0.1:1234".
	URL string
	// Client is a client configured for the server.
	Client *http.Client
	// Store is the API's store: a fresh SQLite database.
	Store store.Store
	// Backend is the fake gateway behind the API.
	Backend *Backend
	logs    *syncBuffer
}

// NewServer starts the admin API with AdminToken, the clock Now and
// StaticConnection. The test's cleanup closes the server and the store.
func NewServer(t testing.TB) *Server {
	t.Helper()
	st := NewStore(t)
	s := &Server{Store: st, Backend: &Backend{}, logs: &syncBuffer{}}
	h, err := admin.NewHandler(admin.Config{
		Store:             st,
		Backend:           s.Backend,
		AdminToken:        AdminToken,
		StaticConnections: []store.Connection{StaticConnection},
		Logger:            slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:               func() time.Time { return Now },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s.URL, s.Client = srv.URL, srv.Client()
	return s
}

// NewStore opens a fresh SQLite store in the test's temporary directory and
// closes it at cleanup.
func NewStore(t testing.TB) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), "sqlite", filepath.Join(t.TempDir(), "ferry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Logs returns what the API has logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// Do sends a request with the Authorization header auth (none if empty) and
// a body (none if empty), and returns the answer's status, headers and body.
// It fails the test if there is no answer.
func (s *Server) Do(t testing.TB, method, path, body, auth string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
