package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-tunnel/ferry/access"
	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/metrics"
	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/tunnel"
)

// Options are what New needs besides the config.
type Options struct {
	// Version is the agent's build version, sent in the handshake.
	Version string
	// Logger receives the agent's log, including one line per proxied
	// connection. Required.
	Logger *slog.Logger
	// Getenv reads the environment (FERRY_AGENT_TOKEN); nil means os.Getenv.
	Getenv func(string) string
	// Registry receives the agent's metrics; nil means a new registry with
	// the Go and process collectors.
	Registry *prometheus.Registry
	// OnReady, if set, is called once by Run when the agent serves: the
	// metrics endpoint listens and the tunnels are being dialled (systemd's
	// READY=1, a Windows service's Running).
	OnReady func()
}

// Agent is a running ferry-agent. Create it with New and start it with Run;
// SetPolicy and Status are safe to call while it runs.
type Agent struct {
	cfg      config.Agent
	log      *slog.Logger
	onReady  func()
	getenv   func(string) string
	version  string
	instance string
	hostname string
	started  time.Time
	reg      *prometheus.Registry
	m        *metrics.Agent
	dialer   *tunnel.Dialer
	settings mux.Settings
	policy   atomic.Pointer[access.Policy]
	slots    []*slot

	// rebalanceInterval is how often a tunnel that failed over to another
	// gateway address tries to return to its own.
	rebalanceInterval time.Duration

	draining   atomic.Bool
	active     atomic.Int64 // streams being dialled or piped
	authFailed atomic.Bool  // the "needs an operator" line has been logged
}

// New checks cfg and prepares an agent. It does not connect yet.
func New(cfg *config.Agent, o Options) (*Agent, error) {
	if o.Logger == nil {
		return nil, errors.New("agent: no logger")
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Registry == nil {
		o.Registry = metrics.NewRegistry()
	}
	policy, err := access.Parse(cfg.Access.Allow)
	if err != nil {
		return nil, fmt.Errorf("[access] allow: %w", err)
	}
	a := &Agent{
		cfg:      *cfg,
		log:      o.Logger,
		getenv:   o.Getenv,
		version:  o.Version,
		instance: newInstanceID(),
		started:  time.Now(),
		reg:      o.Registry,
		onReady:  o.OnReady,

		rebalanceInterval: cfg.Reconnect.RebalanceInterval,
	}
	a.hostname, _ = os.Hostname()
	a.policy.Store(policy)
	if _, err := a.cfg.ResolveToken(a.getenv); err != nil {
		return nil, err
	}
	a.dialer, err = tunnel.NewDialer(tunnel.DialConfig{
		URL:              cfg.Gateway.URL,
		Token:            func() (string, error) { return a.cfg.ResolveToken(a.getenv) },
		Version:          o.Version,
		Instance:         a.instance,
		Hostname:         a.hostname,
		CAFile:           cfg.Gateway.CAFile,
		Proxy:            cfg.Gateway.Proxy,
		AllowedIPs:       cfg.Gateway.AllowedPrefixes,
		HandshakeTimeout: cfg.Gateway.HandshakeTimeout,
	})
	if err != nil {
		return nil, err
	}
	a.settings = mux.DefaultSettings()
	a.settings.KeepaliveInterval = cfg.Gateway.KeepaliveInterval
	a.settings.KeepaliveTimeout = cfg.Gateway.KeepaliveTimeout
	a.settings.HandshakeTimeout = cfg.Gateway.HandshakeTimeout
	a.settings.MaxStreamWindow = cfg.Gateway.MaxStreamWindowMB << 20
	a.settings.WindowBudget = cfg.Gateway.WindowBudgetMB << 20
	if err := a.settings.Validate(); err != nil {
		return nil, fmt.Errorf("[gateway]: %w", err)
	}
	a.m = metrics.NewAgent(a.reg, o.Version, a.started)
	for i := range cfg.Gateway.HAConnections {
		a.slots = append(a.slots, &slot{index: i})
	}
	return a, nil
}

// SetPolicy replaces the allow-list (SIGHUP). Streams already open keep
// running; new ones are checked against p.
func (a *Agent) SetPolicy(p *access.Policy) { a.policy.Store(p) }

// Run connects and serves until ctx is cancelled, then drains: it tells the
// gateway to open no new streams, waits up to shutdown_grace for active
// connections to finish, resets the rest, and returns nil. It returns an
// error only when it cannot start (the metrics address is taken).
func (a *Agent) Run(ctx context.Context) error {
	var srv *http.Server
	var srvDone chan struct{}
	if a.cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", a.cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("[metrics] listen %s: %w", a.cfg.Metrics.Listen, err)
		}
		srv = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
		srvDone = make(chan struct{})
		go func() {
			defer close(srvDone)
			srv.Serve(ln)
		}()
		a.log.Info("metrics and status listening", "addr", ln.Addr().String())
	}

	streamCtx, abortStreams := context.WithCancel(context.Background())
	defer abortStreams()
	rs := &runState{streamCtx: streamCtx}
	tunCtx, stopTunnels := context.WithCancel(context.Background())
	var loops sync.WaitGroup

	rc := tunnel.Reconnect{InitialInterval: a.cfg.Reconnect.InitialInterval, MaxInterval: a.cfg.Reconnect.MaxInterval}
	for _, s := range a.slots {
		loops.Add(1)
		go func() {
			defer loops.Done()
			rc.Run(tunCtx, func(ctx context.Context) (time.Duration, error) {
				return a.runTunnel(ctx, rs, s)
			}, func(err error, wait time.Duration) {
				if tunnel.NeedsOperator(err) {
					err = nil // said once already, at error level
				}
				a.log.Debug("tunnel retry scheduled", "tunnel", s.index, "in", wait.Round(time.Millisecond), "err", err)
			})
		}()
	}
	loops.Add(1)
	go func() {
		defer loops.Done()
		a.tick(tunCtx)
	}()
	a.log.Info("ferry-agent started", "version", a.version, "gateway", a.cfg.Gateway.URL,
		"tunnels", len(a.slots), "instance", a.instance, "allow_rules", len(a.policy.Load().Rules()))
	if a.onReady != nil {
		a.onReady()
	}

	<-ctx.Done()
	a.drain(rs, a.cfg.Agent.ShutdownGrace, abortStreams)
	stopTunnels()
	loops.Wait()
	rs.retiring.Wait()
	rs.streams.Wait()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(sctx)
		cancel()
		<-srvDone
	}
	a.log.Info("ferry-agent stopped")
	return nil
}

// drain stops new streams and waits for active ones up to grace, then
// aborts what is left. It returns no sooner than every drain the agent has
// sent has settled (runState.sendDrain), even with nothing active: an open that
// crossed a drain on the wire must be answered busy, which the gateway
// retries on another replica, not cut by the tunnel's close, which it
// cannot retry once the client's first bytes went with it.
func (a *Agent) drain(rs *runState, grace time.Duration, abort context.CancelFunc) {
	// Streams are refused before the drain goes out: an open the gateway
	// sends after it read the drain (having picked this agent before) must
	// find the agent refusing, or it would be dialled and then cut by the
	// grace. One that arrives before the gateway read the drain is refused
	// too, and the gateway tries the agent's next tunnel. A tunnel that
	// comes up meanwhile sends its own drain (tunnelUp).
	a.draining.Store(true)
	for _, s := range a.slots {
		if sess := s.session(); sess != nil {
			rs.sendDrain(sess, "agent shutting down")
		}
	}
	n := a.active.Load()
	a.log.Info("draining: no new connections", "active", n, "grace", grace)
	graceEnd := time.Now().Add(grace)
	for {
		wait := time.Until(rs.settled())
		if a.active.Load() > 0 {
			wait = max(wait, time.Until(graceEnd))
		}
		if wait <= 0 {
			break
		}
		time.Sleep(min(50*time.Millisecond, wait))
	}
	if n := a.active.Load(); n > 0 {
		a.log.Warn("shutdown grace expired: resetting active connections", "active", n)
	}
	abort()
}

// tick accounts connected seconds and refreshes the RTT gauge.
func (a *Agent) tick(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var rtt time.Duration
			up := false
			for _, s := range a.slots {
				if sess := s.session(); sess != nil {
					up = true
					if r := sess.RTT(); r > 0 && (rtt == 0 || r < rtt) {
						rtt = r
					}
				}
			}
			if up {
				a.m.TunnelConnectedSeconds.Add(now.Sub(last).Seconds())
			}
			if rtt > 0 {
				a.m.TunnelRTT.Set(rtt.Seconds())
			}
			last = now
		}
	}
}

// Idle reports whether the agent serves no stream: no proxied connection,
// none being opened.
func (a *Agent) Idle() bool { return a.active.Load() == 0 }

// Ready reports whether at least one tunnel is connected.
func (a *Agent) Ready() bool {
	for _, s := range a.slots {
		if s.session() != nil {
			return true
		}
	}
	return false
}

func (a *Agent) info() mux.Message {
	return mux.Message{Version: a.version, Hostname: a.hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Instance: a.instance}
}

func newInstanceID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
