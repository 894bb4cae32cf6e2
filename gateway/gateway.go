package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/gateway/admin"
	"github.com/ferry-tunnel/ferry/metrics"
	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/store"
	"github.com/ferry-tunnel/ferry/tunnel"
)

// storeSyncInterval is how often a node picks up what other nodes changed in
// the shared store: rotated tokens and deleted agents (rotations through this
// node close their tunnels at once) and connections.
const storeSyncInterval = 5 * time.Second

// Options are what New needs besides the config.
type Options struct {
	Version string
	// Logger is required.
	Logger *slog.Logger
	// Getenv reads FERRY_ADMIN_TOKEN; nil means os.Getenv.
	Getenv func(string) string
	// Registry receives the gateway's metrics; nil means a new registry.
	Registry *prometheus.Registry
}

// Gateway is a ferry-gateway node. Create it with New, then Run it; Dial and
// the admin Backend methods are safe to call while it runs.
type Gateway struct {
	cfg        config.Gateway
	log        *slog.Logger
	version    string
	node       string
	store      store.Store
	reg        *registry
	prom       *prometheus.Registry
	m          *metrics.Gateway
	settings   mux.Settings
	cert       tls.Certificate
	adminToken string
	limiter    *tunnel.Limiter

	life     context.Context // tunnels and client connections; cancelled last
	kill     context.CancelFunc
	draining atomic.Bool
	tunnels  sync.WaitGroup // tunnel sessions being served
	clients  sync.WaitGroup // proxied client connections
	active   atomic.Int64   // proxied client connections now

	mu        sync.Mutex
	listeners map[string]*connListener
	// syncMu orders a store sync's changes to the listeners with the admin
	// API's starts and stops. It is never held across a store query (a
	// query stuck on the store would hold up the API and shutdown): apiGen
	// counts the API's starts and stops, and a sync round drops what it read
	// if one happened since, so that a connection the API deletes while a
	// sync reads is not opened again from that read, nor one it creates
	// closed. The next round picks up whatever the store says then.
	syncMu sync.Mutex
	apiGen uint64 // guarded by syncMu

	ready  chan struct{}
	tunLn  net.Listener
	admLn  net.Listener
	closed atomic.Bool
}

// New opens the store, loads or makes the TLS certificate and the admin
// token. It listens on nothing yet.
func New(ctx context.Context, cfg *config.Gateway, o Options) (*Gateway, error) {
	if o.Logger == nil {
		return nil, errors.New("gateway: no logger")
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Registry == nil {
		o.Registry = metrics.NewRegistry()
	}
	g := &Gateway{
		cfg:       *cfg,
		log:       o.Logger,
		version:   o.Version,
		node:      cfg.NodeID,
		reg:       newRegistry(),
		prom:      o.Registry,
		listeners: map[string]*connListener{},
		ready:     make(chan struct{}),
		limiter:   tunnel.NewLimiter(cfg.Limits.FailedAuthPerMinute, nil),
	}
	g.settings = mux.DefaultSettings()
	g.settings.KeepaliveInterval = cfg.Limits.KeepaliveInterval
	g.settings.KeepaliveTimeout = cfg.Limits.KeepaliveTimeout
	g.settings.HandshakeTimeout = cfg.Limits.OpenTimeout
	g.settings.MaxStreamWindow = cfg.Limits.MaxStreamWindowMB << 20
	g.settings.WindowBudget = cfg.Limits.WindowBudgetMB << 20
	if err := g.settings.Validate(); err != nil {
		return nil, fmt.Errorf("[limits]: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if err := g.loadCert(); err != nil {
		return nil, err
	}
	if err := g.loadAdminToken(o.Getenv); err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.Store.Driver, cfg.StoreDSN())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	g.store = st
	g.m = metrics.NewGateway(g.prom, o.Version)
	g.life, g.kill = context.WithCancel(context.Background())
	return g, nil
}

func (g *Gateway) loadCert() error {
	if g.cfg.TLS.SelfSigned {
		c, created, err := loadOrCreateSelfSigned(g.cfg.DataDir)
		if err != nil {
			return fmt.Errorf("self-signed certificate: %w", err)
		}
		certPath, _ := SelfSignedPaths(g.cfg.DataDir)
		verb := "using"
		if created {
			verb = "created"
		}
		g.log.Warn(verb+" self-signed certificate (development only): give agents ca_file = "+certPath,
			"fingerprint_sha256", Fingerprint(c.Certificate[0]))
		g.cert = c
		return nil
	}
	c, err := tls.LoadX509KeyPair(g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("[tls] load cert_file %s and key_file %s: %w", g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile, err)
	}
	g.cert = c
	return nil
}

// loadAdminToken takes the configured admin token, or generates one into
// data_dir/admin.token the first time.
func (g *Gateway) loadAdminToken(getenv func(string) string) error {
	tok, err := g.cfg.ResolveAdminToken(getenv)
	if err != nil {
		return err
	}
	if tok != "" {
		g.adminToken = tok
		return nil
	}
	path := filepath.Join(g.cfg.DataDir, "admin.token")
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
		g.adminToken = strings.TrimSpace(string(b))
		g.log.Info("admin token read from " + path)
		return nil
	}
	var raw [32]byte
	rand.Read(raw[:])
	g.adminToken = "fadm_" + base64.RawURLEncoding.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(g.adminToken+"\n"), 0o600); err != nil {
		return fmt.Errorf("write generated admin token: %w", err)
	}
	g.log.Warn("no admin token configured: generated one in " + path + " (use it as FERRY_ADMIN_TOKEN)")
	return nil
}

// TunnelAddr is the address agents connect to; valid once Ready is closed.
func (g *Gateway) TunnelAddr() net.Addr { return g.tunLn.Addr() }

// AdminAddr is the admin API's address; valid once Ready is closed.
func (g *Gateway) AdminAddr() net.Addr { return g.admLn.Addr() }

// Ready is closed once the gateway listens.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Run listens and serves until ctx is cancelled, then shuts down: it turns
// new tunnels away, sends goaway to every agent, stops the connection
// listeners, lets active connections finish for up to shutdown_grace, and
// closes the rest with a reset. It returns an error if it cannot start.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.store.Close()
	defer g.kill()
	var err error
	g.tunLn, err = net.Listen("tcp", g.cfg.Listen.Tunnel)
	if err != nil {
		return fmt.Errorf("[listen] tunnel %s: %w", g.cfg.Listen.Tunnel, err)
	}
	g.admLn, err = net.Listen("tcp", g.cfg.Listen.Admin)
	if err != nil {
		g.tunLn.Close()
		return fmt.Errorf("[listen] admin %s: %w", g.cfg.Listen.Admin, err)
	}
	statics := make([]store.Connection, 0, len(g.cfg.Connections))
	for _, c := range g.cfg.Connections {
		statics = append(statics, store.Connection{Name: c.Name, Agent: c.Agent, Target: c.Target, Listen: c.Listen})
	}
	api, err := admin.NewHandler(admin.Config{
		Store: g.store, Backend: g, AdminToken: g.adminToken, StaticConnections: statics, Logger: g.log,
	})
	if err != nil {
		g.tunLn.Close()
		g.admLn.Close()
		return err
	}
	tunSrv := g.tunnelServer()
	admSrv := g.adminServer(api)
	var servers sync.WaitGroup
	servers.Add(2)
	go func() {
		defer servers.Done()
		tunSrv.Serve(tls.NewListener(tunnel.Listener(g.tunLn), tunSrv.TLSConfig))
	}()
	go func() {
		defer servers.Done()
		admSrv.Serve(g.admLn)
	}()

	servers.Add(1)
	go func() {
		defer servers.Done()
		g.syncStore(g.life, storeSyncInterval)
	}()
	startErr := g.startConnections(ctx, statics)
	if startErr == nil {
		g.log.Info("ferry-gateway started", "version", g.version, "node", g.node,
			"tunnel", g.tunLn.Addr().String(), "admin", g.admLn.Addr().String(), "store", g.cfg.Store.Driver)
		close(g.ready)
		<-ctx.Done()
	}
	g.shutdown(tunSrv, admSrv)
	servers.Wait()
	return startErr
}

// startConnections opens the static connections (an error stops the
// gateway: the config is wrong) and the stored ones (an error is logged and
// retried by the store sync).
func (g *Gateway) startConnections(ctx context.Context, statics []store.Connection) error {
	for _, c := range statics {
		if err := g.startConnection(c, true); err != nil {
			return fmt.Errorf("[[connections]] %q: %w", c.Name, err)
		}
	}
	g.syncConnections(ctx, map[string]string{})
	return nil
}

func (g *Gateway) shutdown(tunSrv, admSrv *http.Server) {
	g.draining.Store(true)
	sessions := g.reg.all()
	for _, s := range sessions {
		s.sess.Send(mux.Message{Type: mux.TypeGoaway, Node: g.node, Reason: "gateway shutting down"})
	}
	g.mu.Lock()
	names := make([]string, 0, len(g.listeners))
	for n := range g.listeners {
		names = append(names, n)
	}
	g.mu.Unlock()
	for _, n := range names {
		g.StopConnection(n)
	}
	if n := g.active.Load(); n > 0 {
		g.log.Info("draining: waiting for active connections", "active", n, "grace", g.cfg.Limits.ShutdownGrace)
		deadline := time.Now().Add(g.cfg.Limits.ShutdownGrace)
		for g.active.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	tunSrv.Shutdown(sctx) // no new tunnels from here on
	admSrv.Shutdown(sctx)
	cancel()
	g.kill() // resets what is left, closes every tunnel
	g.clients.Wait()
	g.tunnels.Wait()
	g.log.Info("ferry-gateway stopped")
}

func (g *Gateway) tunnelServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET "+tunnel.Path, tunnel.NewHandler(tunnel.HandlerConfig{
		Authenticate: g.authenticate,
		Serve:        g.serveTunnel,
		Draining:     g.draining.Load,
		Limiter:      g.limiter,
		Result:       func(r string) { g.m.Handshakes.WithLabelValues(r).Inc() },
		Life:         g.life,
		Logger:       g.log,
	}))
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: g.cfg.Limits.HandshakeTimeout,
		MaxHeaderBytes:    16 << 10,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{g.cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only: WebSocket upgrades
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		BaseContext:  func(net.Listener) context.Context { return g.life },
		ConnContext:  tunnel.ConnContext,
	}
}

func (g *Gateway) adminServer(api http.Handler) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	metrics.Mount(mux, g.prom, func() bool { return !g.draining.Load() })
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
}

// authenticate maps an agent token to its agent. Only the token's SHA-256 is
// stored; it is compared in constant time.
func (g *Gateway) authenticate(ctx context.Context, token string) (tunnel.Identity, error) {
	h := admin.HashToken(token)
	a, err := g.store.AgentByTokenHash(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return tunnel.Identity{}, tunnel.ErrUnauthorized
	}
	if err != nil {
		return tunnel.Identity{}, fmt.Errorf("look up token: %w", err)
	}
	if subtle.ConstantTimeCompare(a.TokenHash, h) != 1 {
		return tunnel.Identity{}, tunnel.ErrUnauthorized
	}
	return tunnel.Identity{Agent: a.Name, Credential: h}, nil
}

// tokenCurrent reports whether the token a session authenticated with is
// still the agent's: the check of a session as it registers, which catches
// a rotation that raced with its handshake. Later rotations, on any node,
// are caught by recheckTokens.
func (g *Gateway) tokenCurrent(ctx context.Context, p tunnel.Peer) (bool, error) {
	a, err := g.store.GetAgent(ctx, p.Agent)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(a.TokenHash, p.Credential) == 1, nil
}

// syncStore follows changes made through other gateway nodes, which share
// the store: every interval it closes the sessions whose token was rotated
// or whose agent was deleted, and opens or closes connection listeners.
func (g *Gateway) syncStore(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failed := map[string]string{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !g.draining.Load() {
			g.syncConnections(ctx, failed)
		}
		g.recheckTokens(ctx)
	}
}

// recheckTokens closes the sessions whose agent was deleted or whose token
// changed, reading every agent's current token in one query however many
// tunnels are up (a query per tunnel would load a shared store with every
// node's tunnels every interval).
func (g *Gateway) recheckTokens(ctx context.Context) {
	sessions := g.reg.all()
	if len(sessions) == 0 {
		return
	}
	agents, err := g.store.ListAgents(ctx)
	if err != nil {
		g.log.Warn("cannot recheck agent tokens", "err", err)
		return
	}
	current := make(map[string][]byte, len(agents))
	for _, a := range agents {
		current[a.Name] = a.TokenHash
	}
	for _, s := range sessions {
		hash, ok := current[s.peer.Agent]
		if ok && subtle.ConstantTimeCompare(hash, s.peer.Credential) == 1 {
			continue
		}
		g.log.Info("closing agent tunnel: token no longer valid", "agent", s.peer.Agent, "session", s.id)
		s.sess.Close()
	}
}

// serveTunnel runs one agent session until it ends.
func (g *Gateway) serveTunnel(conn net.Conn, peer tunnel.Peer) {
	if g.draining.Load() {
		conn.Close()
		return
	}
	g.tunnels.Add(1)
	defer g.tunnels.Done()
	id := newID("s")
	s := &session{id: id, peer: peer, connectedAt: time.Now()}
	sess, info, err := mux.Gateway(g.life, conn, g.settings, mux.Message{SessionID: id, Node: g.node},
		func(m mux.Message) {
			if m.Type == mux.TypeDrain {
				g.log.Info("agent is draining its tunnel", "agent", peer.Agent, "session", id, "reason", m.Reason)
			}
		})
	if err != nil {
		g.log.Warn("tunnel session failed to start", "agent", peer.Agent, "remote", peer.RemoteAddr, "err", err)
		return
	}
	s.sess, s.info = sess, info
	if g.reg.add(s) {
		g.m.AgentsOnline.Inc()
	}
	g.m.TunnelsConnected.Inc()
	// A rotation between the handshake and here would otherwise miss this
	// session: check once more now that it is registered.
	if ok, err := g.tokenCurrent(g.life, peer); err == nil && !ok {
		sess.Close()
	}
	g.log.Info("agent tunnel connected", "agent", peer.Agent, "session", id, "remote", peer.RemoteAddr,
		"version", info.Version, "hostname", info.Hostname, "instance", info.Instance)
	select {
	case <-sess.Done():
	case <-g.life.Done():
	}
	sess.Close()
	g.m.TunnelsConnected.Dec()
	if g.reg.remove(s) {
		g.m.AgentsOnline.Dec()
	}
	g.log.Info("agent tunnel closed", "agent", peer.Agent, "session", id, "up", time.Since(s.connectedAt).Round(time.Millisecond), "reason", sess.Err())
}

// Idle reports whether this node proxies nothing: no client of a
// connection listener, and no stream on any of its tunnels (those opened
// through Dial included).
func (g *Gateway) Idle() bool {
	if g.active.Load() > 0 {
		return false
	}
	for _, s := range g.reg.all() {
		if s.sess.NumStreams() > 0 {
			return false
		}
	}
	return true
}

// Tunnels lists the agent's live tunnels on this node (admin.Backend).
func (g *Gateway) Tunnels(agent string) []admin.TunnelInfo {
	var out []admin.TunnelInfo
	for _, s := range g.reg.sessions(agent) {
		out = append(out, admin.TunnelInfo{
			Node: g.node, RemoteAddr: s.peer.RemoteAddr, Version: s.info.Version, Hostname: s.info.Hostname,
			Instance: s.info.Instance, OS: s.info.OS + "/" + s.info.Arch, ConnectedAt: s.connectedAt.UTC(),
			Draining: s.sess.PeerDraining(),
		})
	}
	return out
}

// CloseAgentTunnels closes the agent's tunnels at once (admin.Backend): after
// its token was rotated or it was deleted. Connections on them are reset.
func (g *Gateway) CloseAgentTunnels(agent, reason string) {
	for _, s := range g.reg.sessions(agent) {
		g.log.Info("closing agent tunnel", "agent", agent, "session", s.id, "reason", reason)
		s.sess.Close()
	}
}
