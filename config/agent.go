package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-tunnel/ferry/access"
)

// Agent is the ferry-agent configuration (configs/agent.toml).
type Agent struct {
	// Gateway says where and how the agent connects: [gateway].
	Gateway AgentGateway `toml:"gateway"`
	// Reconnect is the backoff between tunnel attempts: [reconnect].
	Reconnect Reconnect `toml:"reconnect"`
	// Access is what the gateway may reach through this agent: [access].
	Access Access `toml:"access"`
	// Metrics is the local HTTP endpoint: [metrics].
	Metrics Metrics `toml:"metrics"`
	// Log configures logging: [log].
	Log Log `toml:"log"`
	// Agent holds process settings: [agent].
	Agent AgentProcess `toml:"agent"`
}

// AgentGateway is the [gateway] table of the agent config.
type AgentGateway struct {
	// URL is the gateway's tunnel endpoint; required, wss:// only.
	// [LoadAgent] and [ParseAgent] give a URL without a path (or with just
	// "/") the path /v1/tunnel.
	URL string `toml:"url"`
	// Token is the agent token written inline. Prefer TokenFile or the
	// FERRY_AGENT_TOKEN environment variable; see [Agent.ResolveToken].
	Token string `toml:"token"`
	// TokenFile is a file holding only the agent token (surrounding white
	// space is ignored).
	TokenFile string `toml:"token_file"`
	// AllowedIPs, when not empty, are the only gateway addresses (IPs or
	// CIDR prefixes) the agent connects to, even through a proxy.
	AllowedIPs []string `toml:"allowed_ips"`
	// AllowedPrefixes is AllowedIPs parsed, bare IPs as full-length
	// prefixes; filled by [LoadAgent] and [ParseAgent], not read from TOML.
	AllowedPrefixes []netip.Prefix `toml:"-"`
	// HAConnections is how many tunnels the agent keeps open, spread over
	// distinct gateway IPs; 1-16, default 2.
	HAConnections int `toml:"ha_connections"`
	// CAFile is a PEM file of extra roots trusted for the gateway's
	// certificate, on top of the system roots; "" for none.
	CAFile string `toml:"ca_file"`
	// Proxy is an http:// or https:// proxy URL, credentials allowed;
	// "" uses HTTPS_PROXY and NO_PROXY from the environment.
	Proxy string `toml:"proxy"`
	// KeepaliveInterval is how often the agent pings the gateway over an idle
	// tunnel; default 10s.
	KeepaliveInterval time.Duration `toml:"keepalive_interval"`
	// KeepaliveTimeout is how long a tunnel may stay silent before the agent
	// drops it and dials a new one; default 30s, longer than
	// KeepaliveInterval.
	KeepaliveTimeout time.Duration `toml:"keepalive_timeout"`
	// HandshakeTimeout bounds TCP connect, proxy CONNECT, TLS and the
	// WebSocket upgrade of one tunnel attempt; default 15s.
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	// MaxStreamWindowMB is how far, in MiB, the receive window of one
	// connection's uploads (gateway to target) may grow on a long link;
	// 1-1024, default 32 (docs/protocol.md §2.1).
	MaxStreamWindowMB int `toml:"max_stream_window_mb"`
	// WindowBudgetMB bounds, in MiB, the growth of all of one tunnel's
	// receive windows together; 0-1024, default 64.
	WindowBudgetMB int `toml:"window_budget_mb"`
}

// Reconnect is the exponential backoff (with jitter) between tunnel attempts.
type Reconnect struct {
	// InitialInterval is the first wait after a failure; default 1s.
	InitialInterval time.Duration `toml:"initial_interval"`
	// MaxInterval caps the wait, and is the wait after the gateway rejects
	// the token (401) or the agent (403); default 60s.
	MaxInterval time.Duration `toml:"max_interval"`
	// RebalanceInterval is how often a tunnel that failed over to another
	// gateway address (its own was down or going away) tries to return to
	// its own, so that tunnels stay spread over the gateway nodes; default
	// 15s.
	RebalanceInterval time.Duration `toml:"rebalance_interval"`
}

// Access is the agent's allow-list and the limits on proxied connections.
type Access struct {
	// Allow holds the allow rules (syntax in package access); empty denies
	// everything.
	Allow []string `toml:"allow"`
	// DialTimeout bounds connecting to a target; default 10s.
	DialTimeout time.Duration `toml:"dial_timeout"`
	// MaxStreams caps concurrent proxied connections; further open requests
	// are refused. Default 1024.
	MaxStreams int `toml:"max_streams"`
}

// Metrics is the agent's local HTTP endpoint.
type Metrics struct {
	// Listen is the address serving /metrics, /healthz, /readyz and /status;
	// default 127.0.0.1:9464, "" disables the endpoint.
	Listen string `toml:"listen"`
}

// AgentProcess is the [agent] table: settings of the agent process itself.
type AgentProcess struct {
	// LockFile keeps a second agent on the same machine from starting.
	// Default (also when set to ""): /run/ferry-agent.lock on Linux,
	// %ProgramData%\Ferry\ferry-agent.lock on Windows, and
	// ferry-agent.lock in the temporary directory elsewhere.
	LockFile string `toml:"lock_file"`
	// ShutdownGrace is how long SIGTERM waits for active connections before
	// the agent resets them and exits; default 30s, 0 resets them at once.
	// Either way the agent stays up until its drain has settled (250 ms, up
	// to 5 s on a slow link), so that an open crossing it is refused and
	// retried elsewhere, not cut.
	ShutdownGrace time.Duration `toml:"shutdown_grace"`
	// MaxProcs is how many CPUs run the agent's goroutines at once
	// (GOMAXPROCS). Default 0: one fewer than the CPUs available (the
	// machine's, or the container's limit), at least 1. The GOMAXPROCS
	// environment variable wins.
	MaxProcs int `toml:"max_procs"`
}

// Environment variables read by the agent.
const (
	// EnvAgentToken holds the agent token; it wins over the config file.
	EnvAgentToken = "FERRY_AGENT_TOKEN"
)

// ErrNoToken is wrapped by [Agent.ResolveToken] when no token is configured.
var ErrNoToken = errors.New("no agent token")

// DefaultAgent returns the agent configuration with every default filled in.
// Gateway.URL and the token have no default.
func DefaultAgent() Agent {
	return Agent{
		Gateway: AgentGateway{
			HAConnections:     2,
			KeepaliveInterval: 10 * time.Second,
			KeepaliveTimeout:  30 * time.Second,
			HandshakeTimeout:  15 * time.Second,
			MaxStreamWindowMB: DefaultMaxStreamWindowMB,
			WindowBudgetMB:    DefaultWindowBudgetMB,
		},
		Reconnect: Reconnect{InitialInterval: time.Second, MaxInterval: 60 * time.Second, RebalanceInterval: 15 * time.Second},
		Access:    Access{DialTimeout: 10 * time.Second, MaxStreams: 1024},
		Metrics:   Metrics{Listen: "127.0.0.1:9464"},
		Log:       DefaultLog(),
		Agent: AgentProcess{
			LockFile:      defaultLockFile(runtime.GOOS, os.Getenv, os.TempDir()),
			ShutdownGrace: 30 * time.Second,
		},
	}
}

func defaultLockFile(goos string, getenv func(string) string, tmp string) string {
	switch goos {
	case "linux":
		return "/run/ferry-agent.lock"
	case "windows":
		dir := getenv("ProgramData")
		if dir == "" {
			dir = `C:\ProgramData`
		}
		// Not filepath.Join: the result must be a Windows path even when
		// computed elsewhere (in tests).
		return dir + `\Ferry\ferry-agent.lock`
	}
	return filepath.Join(tmp, "ferry-agent.lock")
}

// LoadAgent reads the agent config file at path: it decodes it over
// [DefaultAgent], rejects unknown keys, fills in derived values, validates
// it, and checks that a token can be found (see [Agent.ResolveToken]) so that
// a missing token stops the agent at start. The token itself is not stored:
// call ResolveToken when connecting, which also picks up a rotated token file.
//
// FERRY_AGENT_<SECTION>_<KEY> environment variables override the file's
// keys; see [ReadAgent] and [EnvAgentPrefix].
func LoadAgent(path string) (*Agent, error) {
	return loadAgent(path, nil)
}

func loadAgent(path string, getenv func(string) string) (*Agent, error) {
	a, name, err := readAgent(path, envLookup(getenv))
	if err != nil {
		return nil, err
	}
	if _, err := a.ResolveToken(getenv); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

// ParseAgent is [LoadAgent] on a config already in memory, without the token
// check; name (usually the file path) prefixes errors.
func ParseAgent(data []byte, name string) (*Agent, error) {
	return parseAgent(data, name, nil)
}

// parseAgent is ParseAgent with the environment (lookup; nil for none)
// applied over the file.
func parseAgent(data []byte, name string, lookup lookupFunc) (*Agent, error) {
	a := DefaultAgent()
	if err := decode(data, name, &a); err != nil {
		return nil, err
	}
	applied, err := applyEnv(&a, EnvAgentPrefix, lookup)
	if err != nil {
		return nil, err
	}
	if a.Agent.LockFile == "" {
		a.Agent.LockFile = DefaultAgent().Agent.LockFile
	}
	if u, err := url.Parse(a.Gateway.URL); err == nil && (u.Path == "" || u.Path == "/") && u.Host != "" {
		u.Path = "/v1/tunnel"
		a.Gateway.URL = u.String()
	}
	if err := a.Validate(); err != nil {
		return nil, envErrors(name, err, applied)
	}
	a.Gateway.AllowedPrefixes, _ = parsePrefixes("gateway.allowed_ips", a.Gateway.AllowedIPs)
	return &a, nil
}

// Validate checks every value and reports all problems at once, each naming
// its key. It also parses the allow rules with [access.Parse]. It does not
// open files or resolve names, and does not modify a.
func (a *Agent) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	g := &a.Gateway
	add(validGatewayURL(g.URL))
	if g.Token != "" {
		add(checkSecret("gateway.token", g.Token))
	}
	_, err := parsePrefixes("gateway.allowed_ips", g.AllowedIPs)
	add(err)
	if g.HAConnections < 1 || g.HAConnections > 16 {
		add(fmt.Errorf("gateway.ha_connections = %d: must be between 1 and 16", g.HAConnections))
	}
	add(validProxy(g.Proxy))
	positive(&errs, "gateway.keepalive_interval", g.KeepaliveInterval)
	positive(&errs, "gateway.keepalive_timeout", g.KeepaliveTimeout)
	if g.KeepaliveInterval > 0 && g.KeepaliveTimeout <= g.KeepaliveInterval {
		add(fmt.Errorf("gateway.keepalive_timeout = %s must be longer than gateway.keepalive_interval = %s", g.KeepaliveTimeout, g.KeepaliveInterval))
	}
	positive(&errs, "gateway.handshake_timeout", g.HandshakeTimeout)
	validWindows(&errs, "gateway", g.MaxStreamWindowMB, g.WindowBudgetMB)

	r := a.Reconnect
	positive(&errs, "reconnect.initial_interval", r.InitialInterval)
	positive(&errs, "reconnect.max_interval", r.MaxInterval)
	positive(&errs, "reconnect.rebalance_interval", r.RebalanceInterval)
	if r.InitialInterval > r.MaxInterval {
		add(fmt.Errorf("reconnect.initial_interval = %s must not exceed reconnect.max_interval = %s", r.InitialInterval, r.MaxInterval))
	}

	if _, err := access.Parse(a.Access.Allow); err != nil {
		add(fmt.Errorf("access.allow: %w", err))
	}
	positive(&errs, "access.dial_timeout", a.Access.DialTimeout)
	if a.Access.MaxStreams < 1 {
		add(fmt.Errorf("access.max_streams = %d: must be at least 1", a.Access.MaxStreams))
	}

	if a.Metrics.Listen != "" {
		add(validListen("metrics.listen", a.Metrics.Listen))
	}
	add(a.Log.validate())
	if a.Agent.ShutdownGrace < 0 {
		add(fmt.Errorf("agent.shutdown_grace = %s: must not be negative", a.Agent.ShutdownGrace))
	}
	if a.Agent.MaxProcs < 0 {
		add(fmt.Errorf("agent.max_procs = %d: must be 0 (automatic) or a number of CPUs", a.Agent.MaxProcs))
	}
	return errors.Join(errs...)
}

func validGatewayURL(s string) error {
	if s == "" {
		return errors.New(`gateway.url is required: the gateway's tunnel address, such as "wss://gateway.example.com/v1/tunnel"`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("gateway.url: %w", err)
	}
	switch {
	case u.User != nil:
		// Do not echo the URL: it holds a credential.
		return errors.New("gateway.url must not contain user info; put the token in token_file, token or FERRY_AGENT_TOKEN")
	case u.Scheme != "wss":
		return fmt.Errorf("gateway.url %q: the scheme must be wss:// (the tunnel always runs over TLS)", s)
	case u.Hostname() == "":
		return fmt.Errorf("gateway.url %q: missing host", s)
	case u.Fragment != "" || u.RawFragment != "":
		return fmt.Errorf("gateway.url %q: a fragment (#...) has no meaning here", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("gateway.url %q: port %q out of range 1-65535", s, p)
		}
	}
	return nil
}

func validProxy(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		// url errors quote the input, which may hold a password.
		return errors.New("gateway.proxy is not a valid URL (want http://[user:password@]host:port)")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("gateway.proxy %q: the scheme must be http:// or https://", u.Redacted())
	}
	if u.Hostname() == "" {
		return fmt.Errorf("gateway.proxy %q: missing host", u.Redacted())
	}
	return nil
}

// ResolveToken returns the agent token: the FERRY_AGENT_TOKEN environment
// variable wins, then gateway.token, then the contents of gateway.token_file;
// surrounding white space is trimmed. getenv is os.Getenv outside tests (nil
// means os.Getenv). Errors never include the token; without any token the
// error wraps [ErrNoToken] and lists the three ways to give one.
func (a *Agent) ResolveToken(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var tok, from string
	switch {
	case getenv(EnvAgentToken) != "":
		tok, from = strings.TrimSpace(getenv(EnvAgentToken)), EnvAgentToken
	case a.Gateway.Token != "":
		tok, from = strings.TrimSpace(a.Gateway.Token), "gateway.token"
	case a.Gateway.TokenFile != "":
		var err error
		if tok, err = readSecretFile("gateway.token_file", a.Gateway.TokenFile); err != nil {
			return "", err
		}
		from = "gateway.token_file " + strconv.Quote(a.Gateway.TokenFile)
	default:
		return "", fmt.Errorf("%w: set gateway.token_file (a file holding only the token), gateway.token, or the %s environment variable", ErrNoToken, EnvAgentToken)
	}
	if tok == "" {
		return "", fmt.Errorf("%w: %s is blank", ErrNoToken, from)
	}
	if err := checkSecret(from, tok); err != nil {
		return "", err
	}
	return tok, nil
}
