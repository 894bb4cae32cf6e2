package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminclient"
)

// Path names, in the order the table shows them.
const (
	PathDirect = "direct"
	PathTCPFwd = "tcp-fwd"
	PathTLSFwd = "tls-fwd"
	PathFerry  = "ferry"
)

// AllPaths are the paths a full run measures.
var AllPaths = []string{PathDirect, PathTCPFwd, PathTLSFwd, PathFerry}

// Path is one way from the client to the sink.
type Path interface {
	Name() string
	// Addr is where clients connect; valid after Start.
	Addr() string
	// Procs are the processes in the path: the client-side one (gateway,
	// forwarder A) first, the sink-side one (agent, forwarder B) second.
	// None for the direct path.
	Procs() []*Child
	// Start starts fresh processes (stopping running ones first) and
	// returns once the path carries data.
	Start(ctx context.Context) error
	// Stop ends the processes.
	Stop() error
}

const (
	startTimeout = 30 * time.Second
	stopGrace    = 15 * time.Second
)

// stopAll stops children in reverse order and joins their errors.
func stopAll(cs []*Child) error {
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		if cs[i] != nil {
			errs = append(errs, cs[i].Stop(stopGrace))
		}
	}
	return errors.Join(errs...)
}

// waitEcho retries an echo through addr until it works.
func waitEcho(ctx context.Context, addr string, procs []*Child) error {
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := OpenEcho(addr)
		if err == nil {
			c.Close()
			return nil
		}
		if errors.Is(err, ErrCorrupt) {
			return err
		}
		for _, p := range procs {
			if p != nil && p.Exited() {
				return fmt.Errorf("%s exited; its log:\n%s", p.Name, p.Tail(20))
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no echo through %s within %s: %v", addr, startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linePath is a path that can run through a delay line (the WAN tests):
// between the client and the sink (direct), between forwarders A and B,
// or between ferry-agent and ferry-gateway's tunnel port. The line is a
// child process of its own, never among Procs: its CPU and memory are not
// the path's.
type linePath interface {
	Path
	// setLine makes the next Start put a delay line with prof in the
	// path; nil: none.
	setLine(prof *Profile)
}

var reLineListening = regexp.MustCompile(`delay line listening addr=(\S+)`)

// startLine runs a delay line (a re-executed ferry-bench) in front of to.
func startLine(self, logPath string, prof *Profile, to string) (*Child, string, error) {
	args := []string{DelayCommand, "-listen", "127.0.0.1:0", "-to", to, "-rtt", prof.RTT.String(), "-rate", fmt.Sprint(prof.Rate)}
	c, err := StartChild("delay line "+prof.Name, logPath, ChildEnv(), self, args...)
	if err != nil {
		return nil, "", err
	}
	m, err := c.WaitLog(reLineListening, startTimeout)
	if err != nil {
		c.Stop(stopGrace)
		return nil, "", err
	}
	return c, m[1], nil
}

// directPath is the client reaching the sink itself, or through a delay
// line alone (the line's own limit).
type directPath struct {
	sink, self, dir string
	line            *Profile
	lc              *Child // the running delay line
	addr            string
	gen             int
}

func (p *directPath) Name() string          { return PathDirect }
func (p *directPath) Procs() []*Child       { return nil }
func (p *directPath) setLine(prof *Profile) { p.line = prof }

func (p *directPath) Addr() string {
	if p.lc != nil {
		return p.addr
	}
	return p.sink
}

func (p *directPath) Start(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	if p.line == nil {
		return nil
	}
	p.gen++
	lc, addr, err := startLine(p.self, filepath.Join(p.dir, fmt.Sprintf("delay-direct.%d.log", p.gen)), p.line, p.sink)
	if err != nil {
		return err
	}
	p.lc, p.addr = lc, addr
	return waitEcho(ctx, p.addr, []*Child{lc})
}

func (p *directPath) Stop() error {
	err := stopAll([]*Child{p.lc})
	p.lc = nil
	return err
}

var reFwdListening = regexp.MustCompile(`forwarder listening addr=(\S+)`)

// FwdCommand is the hidden ferry-bench subcommand that runs one forwarder.
const FwdCommand = "_forwarder"

// fwdPath is a reference forwarder pair, each half a re-executed ferry-bench.
type fwdPath struct {
	name, self, dir, sink string
	tls                   bool
	cert                  string // PEM certificate (also the CA) and
	key                   string // its key, for the TLS hop
	a, b                  *Child
	line                  *Profile // a delay line between A and B, or nil
	lc                    *Child   // the running delay line
	addr                  string
	gen                   int // start count, to name log files
}

func (p *fwdPath) Name() string          { return p.name }
func (p *fwdPath) Addr() string          { return p.addr }
func (p *fwdPath) Procs() []*Child       { return []*Child{p.a, p.b} }
func (p *fwdPath) setLine(prof *Profile) { p.line = prof }

func (p *fwdPath) Stop() error {
	err := stopAll([]*Child{p.b, p.lc, p.a})
	p.a, p.b, p.lc = nil, nil, nil
	return err
}

func (p *fwdPath) Start(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	p.gen++
	if p.tls && p.cert == "" {
		p.cert, p.key = filepath.Join(p.dir, "fwd-cert.pem"), filepath.Join(p.dir, "fwd-key.pem")
		if err := WriteSelfSigned(p.cert, p.key); err != nil {
			return err
		}
	}
	b, bAddr, err := p.startHalf(p.name+"-B", p.sink, p.tls, false)
	if err != nil {
		return err
	}
	p.b = b
	if p.line != nil {
		lc, lAddr, err := startLine(p.self, filepath.Join(p.dir, fmt.Sprintf("delay-%s.%d.log", p.name, p.gen)), p.line, bAddr)
		if err != nil {
			return err
		}
		p.lc, bAddr = lc, lAddr
	}
	a, aAddr, err := p.startHalf(p.name+"-A", bAddr, false, p.tls)
	if err != nil {
		return err
	}
	p.a, p.addr = a, aAddr
	return waitEcho(ctx, p.addr, []*Child{p.a, p.b, p.lc})
}

func (p *fwdPath) startHalf(name, to string, inTLS, outTLS bool) (*Child, string, error) {
	args := []string{FwdCommand, "-listen", "127.0.0.1:0", "-to", to}
	if inTLS {
		args = append(args, "-in-tls", "-cert", p.cert, "-key", p.key)
	}
	if outTLS {
		args = append(args, "-out-tls", "-ca", p.cert)
	}
	c, err := StartChild(name, filepath.Join(p.dir, fmt.Sprintf("%s.%d.log", name, p.gen)), ChildEnv(), p.self, args...)
	if err != nil {
		return nil, "", err
	}
	m, err := c.WaitLog(reFwdListening, startTimeout)
	if err != nil {
		c.Stop(stopGrace)
		return nil, "", err
	}
	return c, m[1], nil
}

var (
	reGatewayStarted = regexp.MustCompile(`msg="ferry-gateway started".* tunnel=(\S+) admin=(\S+)`)
	reConnListening  = regexp.MustCompile(`msg="connection listening" connection=bench listen=(\S+)`)
	reAgentStarted   = regexp.MustCompile(`msg="metrics and status listening" addr=(\S+)`)
)

// ferryPath is ferry-gateway and ferry-agent, the real binaries, configured
// like scripts/run-local.sh (SQLite, self-signed certificate, info logs to
// a file) with every port chosen by the kernel.
type ferryPath struct {
	agentBin, gatewayBin, dir, sink string
	self                            string // ferry-bench, for the delay line
	ha                              int
	maxStreams                      int

	adminToken string
	token      string // the agent's, once created
	gw, ag     *Child
	line       *Profile // a delay line between agent and gateway, or nil
	lc         *Child   // the running delay line
	addr       string
	adminAddr  string // the gateway's admin API and /metrics
	agentAddr  string // the agent's /metrics
	gen        int
}

func (p *ferryPath) Name() string          { return PathFerry }
func (p *ferryPath) Addr() string          { return p.addr }
func (p *ferryPath) Procs() []*Child       { return []*Child{p.gw, p.ag} }
func (p *ferryPath) setLine(prof *Profile) { p.line = prof }

func (p *ferryPath) Stop() error {
	err := stopAll([]*Child{p.gw, p.lc, p.ag})
	p.gw, p.ag, p.lc = nil, nil, nil
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (p *ferryPath) Start(ctx context.Context) error {
	if err := p.Stop(); err != nil {
		return err
	}
	p.gen++
	dataDir := filepath.Join(p.dir, "gateway-data")
	if p.adminToken == "" {
		p.adminToken = "adm-" + randomHex(16)
	}
	gwCfg := filepath.Join(p.dir, "gateway.toml")
	cfg := fmt.Sprintf(`data_dir = %q
node_id = "bench"

[listen]
tunnel = "127.0.0.1:0"
admin = "127.0.0.1:0"

[tls]
self_signed = true

[store]
driver = "sqlite"

[limits]
max_streams_per_agent = %d
shutdown_grace = "2s"

[log]
level = "info"

[[connections]]
name = "bench"
agent = "bench"
target = %q
listen = "127.0.0.1:0"
`, dataDir, p.maxStreams, p.sink)
	if err := os.WriteFile(gwCfg, []byte(cfg), 0o600); err != nil {
		return err
	}
	gw, err := StartChild("ferry-gateway", filepath.Join(p.dir, fmt.Sprintf("gateway.%d.log", p.gen)),
		ChildEnv("FERRY_ADMIN_TOKEN="+p.adminToken), p.gatewayBin, "serve", "--config", gwCfg)
	if err != nil {
		return err
	}
	p.gw = gw
	m, err := gw.WaitLog(reGatewayStarted, startTimeout)
	if err != nil {
		return err
	}
	tunnelAddr, adminAddr := m[1], m[2]
	p.adminAddr = adminAddr
	m, err = gw.WaitLog(reConnListening, startTimeout)
	if err != nil {
		return err
	}
	p.addr = m[1]
	tokenFile := filepath.Join(p.dir, "agent.token")
	if p.token == "" {
		api := adminclient.New("http://"+adminAddr, p.adminToken, &http.Client{Timeout: 10 * time.Second})
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a, err := api.CreateAgent(actx, "bench", "ferry-bench")
		cancel()
		if err != nil {
			return fmt.Errorf("create agent: %w", err)
		}
		p.token = a.Token
		if err := os.WriteFile(tokenFile, []byte(p.token+"\n"), 0o600); err != nil {
			return err
		}
	}
	if p.line != nil {
		// The agent dials the line, which relays to the tunnel port; the
		// URL keeps the host name, so the certificate still verifies.
		lc, lAddr, err := startLine(p.self, filepath.Join(p.dir, fmt.Sprintf("delay-ferry.%d.log", p.gen)), p.line, tunnelAddr)
		if err != nil {
			return err
		}
		p.lc, tunnelAddr = lc, lAddr
	}
	_, port, err := net.SplitHostPort(tunnelAddr)
	if err != nil {
		return fmt.Errorf("gateway tunnel address %q: %w", tunnelAddr, err)
	}
	agCfg := filepath.Join(p.dir, "agent.toml")
	cfg = fmt.Sprintf(`[gateway]
url = "wss://localhost:%s/v1/tunnel"
token_file = %q
ca_file = %q
ha_connections = %d

[reconnect]
initial_interval = "100ms"
max_interval = "1s"

[access]
allow = [%q]
max_streams = %d

[metrics]
listen = "127.0.0.1:0"

[log]
level = "info"

[agent]
lock_file = %q
shutdown_grace = "2s"
`, port, tokenFile, filepath.Join(dataDir, "tls", "cert.pem"), p.ha, p.sink, p.maxStreams, filepath.Join(p.dir, "agent.lock"))
	if err := os.WriteFile(agCfg, []byte(cfg), 0o600); err != nil {
		return err
	}
	ag, err := StartChild("ferry-agent", filepath.Join(p.dir, fmt.Sprintf("agent.%d.log", p.gen)), ChildEnv(), p.agentBin, "run", "--config", agCfg)
	if err != nil {
		return err
	}
	p.ag = ag
	m, err = ag.WaitLog(reAgentStarted, startTimeout)
	if err != nil {
		return err
	}
	p.agentAddr = m[1]
	return waitEcho(ctx, p.addr, []*Child{p.gw, p.ag, p.lc})
}
