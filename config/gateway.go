package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-tunnel/ferry/access"
)

// Gateway is the ferry-gateway configuration (configs/gateway.toml).
type Gateway struct {
	// DataDir holds what the gateway creates for itself: the self-signed
	// certificate, the generated admin token and, by default, the SQLite
	// database. Default "data".
	DataDir string `toml:"data_dir"`
	// NodeID names this gateway node to agents (hello message) and in the
	// API; default the host name. Must differ between nodes sharing a store.
	NodeID string `toml:"node_id"`
	// Listen holds the listening addresses: [listen].
	Listen GatewayListen `toml:"listen"`
	// TLS is the tunnel listener's certificate: [tls].
	TLS TLS `toml:"tls"`
	// Store is where agents, token hashes, connections and audit live: [store].
	Store Store `toml:"store"`
	// Admin configures the admin API: [admin].
	Admin Admin `toml:"admin"`
	// Limits bounds what agents and clients may consume: [limits].
	Limits Limits `toml:"limits"`
	// Log configures logging: [log].
	Log Log `toml:"log"`
	// Connections are static connections ([[connections]]); more can be
	// created through the admin API.
	Connections []Connection `toml:"connections"`
}

// GatewayListen is the [listen] table of the gateway config. Port 0 lets the
// system choose a port.
type GatewayListen struct {
	// Tunnel is where agents connect (TLS); default ":443".
	Tunnel string `toml:"tunnel"`
	// Admin serves the admin API, web UI and /metrics; default
	// "127.0.0.1:8081". Never the tunnel port.
	Admin string `toml:"admin"`
}

// TLS is the certificate of the tunnel listener: either CertFile and KeyFile,
// or SelfSigned.
type TLS struct {
	// CertFile is the PEM certificate chain.
	CertFile string `toml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `toml:"key_file"`
	// SelfSigned makes (once) a certificate in DataDir and logs its
	// fingerprint; for development and tests.
	SelfSigned bool `toml:"self_signed"`
}

// Store selects the gateway's database.
type Store struct {
	// Driver is "sqlite" (default; embedded) or "postgres" (for several
	// gateway nodes).
	Driver string `toml:"driver"`
	// DSN is the database: a file path for sqlite (default
	// DataDir/ferry.db), a connection string for postgres (required). Use
	// [Gateway.StoreDSN] for the resolved value.
	DSN string `toml:"dsn"`
}

// Admin configures the admin API.
type Admin struct {
	// TokenFile holds the admin token; FERRY_ADMIN_TOKEN wins over it. With
	// neither, the gateway generates a token in DataDir.
	TokenFile string `toml:"token_file"`
}

// Limits bounds the work agents and clients can cause.
type Limits struct {
	// MaxStreamsPerAgent caps concurrent streams to one agent; default 1024.
	MaxStreamsPerAgent int `toml:"max_streams_per_agent"`
	// HandshakeTimeout bounds an agent's TLS handshake and WebSocket
	// upgrade; default 10s.
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// OpenTimeout is how long an agent has to answer an open request
	// (its allow-list check and dial); default 15s.
	OpenTimeout time.Duration `toml:"open_timeout"`
	// FailedAuthPerMinute is how many failed tunnel handshakes one source IP
	// may make per minute before it gets 429; default 10.
	FailedAuthPerMinute int `toml:"failed_auth_per_minute"`
	// KeepaliveInterval is how often the gateway pings an idle tunnel;
	// default 10s.
	KeepaliveInterval time.Duration `toml:"keepalive_interval"`
	// KeepaliveTimeout is how long a tunnel may stay silent before the
	// gateway closes it; default 30s, longer than KeepaliveInterval.
	KeepaliveTimeout time.Duration `toml:"keepalive_timeout"`
	// MaxStreamWindowMB is how far, in MiB, the receive window of one
	// connection's downloads (target to client) may grow on a long link;
	// 1-1024, default 32.
	MaxStreamWindowMB int `toml:"max_stream_window_mb"`
	// WindowBudgetMB bounds, in MiB, the growth of all of one tunnel's
	// receive windows together; 0-1024, default 64.
	WindowBudgetMB int `toml:"window_budget_mb"`
	// ShutdownGrace is how long SIGTERM lets proxied connections finish
	// before the gateway resets them; default 30s.
	ShutdownGrace time.Duration `toml:"shutdown_grace"`
	// MaxProcs is how many CPUs run the gateway's goroutines at once
	// (GOMAXPROCS). Default 0: one fewer than the CPUs available (the
	// machine's, or the container's limit), at least 1. The GOMAXPROCS
	// environment variable wins.
	MaxProcs int `toml:"max_procs"`
}

// Connection is a static connection: the gateway listens on Listen and
// carries each accepted TCP connection through agent Agent to Target.
type Connection struct {
	// Name identifies the connection (see [ValidName]); unique.
	Name string `toml:"name"`
	// Agent is the name of the agent that reaches Target.
	Agent string `toml:"agent"`
	// Target is host:port as the agent's allow-list sees it.
	Target string `toml:"target"`
	// Listen is the gateway-side host:port clients connect to.
	Listen string `toml:"listen"`
}

// EnvAdminToken holds the admin token; it wins over admin.token_file.
const EnvAdminToken = "FERRY_ADMIN_TOKEN"

// DefaultGateway returns the gateway configuration with every default filled
// in; NodeID is the host name ("ferry-gateway" if it cannot be read).
func DefaultGateway() Gateway {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "ferry-gateway"
	}
	return Gateway{
		DataDir: "data",
		NodeID:  host,
		Listen:  GatewayListen{Tunnel: ":443", Admin: "127.0.0.1:8081"},
		Store:   Store{Driver: "sqlite"},
		Limits: Limits{
			MaxStreamsPerAgent:  1024,
			HandshakeTimeout:    10 * time.Second,
			OpenTimeout:         15 * time.Second,
			FailedAuthPerMinute: 10,
			KeepaliveInterval:   10 * time.Second,
			KeepaliveTimeout:    30 * time.Second,
			MaxStreamWindowMB:   DefaultMaxStreamWindowMB,
			WindowBudgetMB:      DefaultWindowBudgetMB,
			ShutdownGrace:       30 * time.Second,
		},
		Log: DefaultLog(),
	}
}

// LoadGateway reads the gateway config file at path: it decodes it over
// [DefaultGateway], rejects unknown keys, validates it, and checks that the
// admin token file, if one is named, is readable.
//
// FERRY_GATEWAY_<SECTION>_<KEY> environment variables override the file's
// keys; see [ReadGateway] and [EnvGatewayPrefix].
func LoadGateway(path string) (*Gateway, error) {
	return loadGateway(path, nil)
}

func loadGateway(path string, getenv func(string) string) (*Gateway, error) {
	g, name, err := readGateway(path, envLookup(getenv))
	if err != nil {
		return nil, err
	}
	if _, err := g.ResolveAdminToken(getenv); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return g, nil
}

// ParseGateway is [LoadGateway] on a config already in memory, without the
// admin token check; name (usually the file path) prefixes errors.
func ParseGateway(data []byte, name string) (*Gateway, error) {
	return parseGateway(data, name, nil)
}

// parseGateway is ParseGateway with the environment (lookup; nil for none)
// applied over the file.
func parseGateway(data []byte, name string, lookup lookupFunc) (*Gateway, error) {
	g := DefaultGateway()
	if err := decode(data, name, &g); err != nil {
		return nil, err
	}
	applied, err := applyEnv(&g, EnvGatewayPrefix, lookup)
	if err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, envErrors(name, err, applied)
	}
	return &g, nil
}

// Validate checks every value and reports all problems at once, each naming
// its key. It does not open files or listen, and does not modify g.
func (g *Gateway) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if g.DataDir == "" {
		add(errors.New(`data_dir is required (default "data")`))
	}
	if err := validNodeID(g.NodeID); err != nil {
		add(err)
	}

	tunnelErr := validListen("listen.tunnel", g.Listen.Tunnel)
	adminErr := validListen("listen.admin", g.Listen.Admin)
	add(tunnelErr)
	add(adminErr)
	if tunnelErr == nil && adminErr == nil {
		if p := listenPort(g.Listen.Tunnel); p != "0" && p == listenPort(g.Listen.Admin) {
			add(fmt.Errorf("listen.admin %q must not use the tunnel port %s: the admin API never shares the tunnel listener", g.Listen.Admin, p))
		}
	}

	t := g.TLS
	hasCert := t.CertFile != "" || t.KeyFile != ""
	switch {
	case hasCert && t.SelfSigned:
		add(errors.New("tls: set either cert_file and key_file, or self_signed = true, not both"))
	case !hasCert && !t.SelfSigned:
		add(errors.New("tls: set cert_file and key_file, or self_signed = true (development: the gateway makes a certificate in data_dir)"))
	case hasCert && t.CertFile == "":
		add(errors.New("tls.cert_file is required with tls.key_file"))
	case hasCert && t.KeyFile == "":
		add(errors.New("tls.key_file is required with tls.cert_file"))
	}

	switch g.Store.Driver {
	case "sqlite":
	case "postgres":
		if g.Store.DSN == "" {
			add(errors.New(`store.dsn is required with driver "postgres" (such as "postgres://ferry@db/ferry")`))
		}
	default:
		add(fmt.Errorf("store.driver %q: want sqlite or postgres", g.Store.Driver))
	}

	l := g.Limits
	if l.MaxStreamsPerAgent < 1 {
		add(fmt.Errorf("limits.max_streams_per_agent = %d: must be at least 1", l.MaxStreamsPerAgent))
	}
	if l.FailedAuthPerMinute < 1 {
		add(fmt.Errorf("limits.failed_auth_per_minute = %d: must be at least 1", l.FailedAuthPerMinute))
	}
	positive(&errs, "limits.handshake_timeout", l.HandshakeTimeout)
	positive(&errs, "limits.open_timeout", l.OpenTimeout)
	if l.ShutdownGrace < 0 {
		errs = append(errs, fmt.Errorf("limits.shutdown_grace = %s: must not be negative", l.ShutdownGrace))
	}
	if l.MaxProcs < 0 {
		add(fmt.Errorf("limits.max_procs = %d: must be 0 (automatic) or a number of CPUs", l.MaxProcs))
	}
	positive(&errs, "limits.keepalive_interval", l.KeepaliveInterval)
	validWindows(&errs, "limits", l.MaxStreamWindowMB, l.WindowBudgetMB)
	positive(&errs, "limits.keepalive_timeout", l.KeepaliveTimeout)
	if l.KeepaliveInterval > 0 && l.KeepaliveTimeout <= l.KeepaliveInterval {
		add(fmt.Errorf("limits.keepalive_timeout = %s must be longer than limits.keepalive_interval = %s", l.KeepaliveTimeout, l.KeepaliveInterval))
	}
	add(g.Log.validate())

	names := map[string]int{}
	listens := map[string]int{}
	for i, c := range g.Connections {
		at := fmt.Sprintf("connections[%d]", i)
		if c.Name != "" {
			at += fmt.Sprintf(" (%q)", c.Name)
		}
		if c.Name == "" {
			add(fmt.Errorf("%s: name is required", at))
		} else if err := ValidName(c.Name); err != nil {
			add(fmt.Errorf("%s: name: %w", at, err))
		} else if j, dup := names[c.Name]; dup {
			add(fmt.Errorf("%s: duplicate connection name %q, also used by connections[%d]", at, c.Name, j))
		} else {
			names[c.Name] = i
		}
		if c.Agent == "" {
			add(fmt.Errorf("%s: agent is required", at))
		} else if err := ValidName(c.Agent); err != nil {
			add(fmt.Errorf("%s: agent: %w", at, err))
		}
		if c.Target == "" {
			add(fmt.Errorf("%s: target is required (host:port as the agent sees it)", at))
		} else if _, _, err := access.SplitTarget(c.Target); err != nil {
			add(fmt.Errorf("%s: target: %w", at, err))
		}
		if c.Listen == "" {
			add(fmt.Errorf("%s: listen is required (such as 127.0.0.1:15432)", at))
		} else if err := validListen("listen", c.Listen); err != nil {
			add(fmt.Errorf("%s: %w", at, err))
		} else if listenPort(c.Listen) != "0" {
			if j, dup := listens[c.Listen]; dup {
				add(fmt.Errorf("%s: listen %q is also used by connections[%d]", at, c.Listen, j))
			} else {
				listens[c.Listen] = i
			}
		}
	}
	return errors.Join(errs...)
}

func validNodeID(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("node_id %q: must be 1-253 characters", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fmt.Errorf("node_id %q: only printable ASCII without spaces", s)
		}
	}
	return nil
}

// StoreDSN returns the resolved store DSN: store.dsn when set, else for
// sqlite the file ferry.db in DataDir.
func (g *Gateway) StoreDSN() string {
	if g.Store.DSN == "" && g.Store.Driver == "sqlite" {
		return filepath.Join(g.DataDir, "ferry.db")
	}
	return g.Store.DSN
}

// ResolveAdminToken returns the admin token: FERRY_ADMIN_TOKEN wins, then the
// trimmed contents of admin.token_file. It returns "" with a nil error when
// neither is set (the gateway then generates a token in DataDir). getenv nil
// means os.Getenv. Errors never include the token.
func (g *Gateway) ResolveAdminToken(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var tok, from string
	switch {
	case strings.TrimSpace(getenv(EnvAdminToken)) != "":
		tok, from = strings.TrimSpace(getenv(EnvAdminToken)), EnvAdminToken
	case g.Admin.TokenFile != "":
		var err error
		if tok, err = readSecretFile("admin.token_file", g.Admin.TokenFile); err != nil {
			return "", err
		}
		from = "admin.token_file " + strconv.Quote(g.Admin.TokenFile)
	default:
		return "", nil
	}
	if err := checkSecret(from, tok); err != nil {
		return "", err
	}
	return tok, nil
}
