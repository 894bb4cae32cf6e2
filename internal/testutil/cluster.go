package testutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The pieces of a multi-node topology on one machine: gateway nodes on
// 127.0.0.1 and 127.0.0.2 (same port) sharing a store and one certificate,
// and agents that reach both under one DNS name. The agents see that name
// through their own /etc/hosts: they run in a private mount namespace
// (util-linux unshare, root) with a hosts file bound over /etc/hosts, so
// nothing on the machine changes. None of this needs a testing.TB, so that
// ferry-soak can use it too.

// GatewayHost is the DNS name the nodes share (in the certificate and in
// the agents' hosts file).
const GatewayHost = "gw.ferry.test"

// NodeIPs are the loopback addresses of the two gateway nodes (any
// 127.0.0.0/8 address works on Linux loopback).
var NodeIPs = []string{"127.0.0.1", "127.0.0.2"}

// Log lines the topology waits for.
var (
	reGatewayStarted = regexp.MustCompile(`msg="ferry-gateway started".* tunnel=(\S+) admin=(\S+)`)
	reConnListening  = regexp.MustCompile(`msg="connection listening" connection=(\S+) listen=(\S+)`)
	reAgentMetrics   = regexp.MustCompile(`msg="metrics and status listening" addr=(\S+)`)
)

// WriteHosts writes a hosts file in dir that maps name to every ip.
func WriteHosts(dir, name string, ips []string) (string, error) {
	var b strings.Builder
	b.WriteString("127.0.0.1 localhost\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "%s %s\n", ip, name)
	}
	path := filepath.Join(dir, "hosts")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// unshareHosts is the command prefix that runs a program with hostsFile as
// its /etc/hosts. exec keeps the PID: signals reach the program itself.
func unshareHosts(hostsFile string, argv []string) (string, []string) {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	script := "mount --bind '" + strings.ReplaceAll(hostsFile, "'", `'\''`) + "' /etc/hosts && exec " + strings.Join(quoted, " ")
	return "unshare", []string{"--mount", "--", "sh", "-c", script}
}

// CheckHostsRemap reports why a program cannot be given its own /etc/hosts
// on this machine (not root, no unshare, no mount namespaces), or nil.
func CheckHostsRemap(dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("not root: a private /etc/hosts needs unshare --mount and mount --bind")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return errors.New("no unshare (util-linux) on PATH")
	}
	hosts, err := WriteHosts(dir, "probe.ferry.test", []string{"127.0.0.2"})
	if err != nil {
		return err
	}
	bin, args := unshareHosts(hosts, []string{"cat", "/etc/hosts"})
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("unshare --mount with mount --bind over /etc/hosts failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), "probe.ferry.test") {
		return errors.New("mount --bind over /etc/hosts in a new mount namespace had no effect")
	}
	return nil
}

// StaticConnection is a gateway [[connections]] entry.
type StaticConnection struct {
	Name, Agent, Target string
	Listen              string // host:port; port 0 lets the kernel choose
}

// GatewayNode is one gateway node, started and restarted with the same
// ports: after its first start, its config pins the tunnel, admin and
// connection addresses the kernel chose.
type GatewayNode struct {
	Name       string // node_id
	Bin        string
	DataDir    string
	Tunnel     string // [listen] tunnel; port 0 on the first start
	Admin      string // [listen] admin
	CertFile   string
	KeyFile    string
	Store      *SharedStore
	AdminToken string
	Grace      string // [limits] shutdown_grace
	LogLevel   string // default info
	Conns      []StaticConnection
	// LogFile, if set, receives the process's log (appended across starts).
	LogFile string

	Proc       *Process
	TunnelAddr string
	AdminAddr  string
	ConnAddrs  map[string]string // connection name → listen address
	Starts     int
}

func (n *GatewayNode) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir = %q\nnode_id = %q\n\n[listen]\ntunnel = %q\nadmin = %q\n\n", n.DataDir, n.Name, n.Tunnel, n.Admin)
	fmt.Fprintf(&b, "[tls]\ncert_file = %q\nkey_file = %q\n\n", n.CertFile, n.KeyFile)
	fmt.Fprintf(&b, "[store]\ndriver = %q\ndsn = %q\n\n", n.Store.Driver, n.Store.DSN)
	grace, level := n.Grace, n.LogLevel
	if grace == "" {
		grace = "30s" // the default: a slow transfer on a loaded machine finishes rather than being reset
	}
	if level == "" {
		level = "info"
	}
	fmt.Fprintf(&b, "[limits]\nshutdown_grace = %q\n\n[log]\nlevel = %q\n\n", grace, level)
	for _, c := range n.Conns {
		fmt.Fprintf(&b, "[[connections]]\nname = %q\nagent = %q\ntarget = %q\nlisten = %q\n\n", c.Name, c.Agent, c.Target, c.Listen)
	}
	return b.String()
}

// Start writes the node's config and runs it until it logs that it serves.
func (n *GatewayNode) Start() error {
	// A restart reuses the ports the kernel picked the first time, and those
	// are ephemeral ports: while the node was down, a client connection may
	// have taken one as its source port for a moment. Try again briefly.
	var err error
	for range 20 {
		if err = n.start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (n *GatewayNode) start() error {
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return err
	}
	cfgPath := filepath.Join(n.DataDir, "gateway.toml")
	if err := os.WriteFile(cfgPath, []byte(n.config()), 0o600); err != nil {
		return err
	}
	tee, closeTee, err := openTee(n.LogFile)
	if err != nil {
		return err
	}
	p, err := Spawn(n.Name, []string{"FERRY_ADMIN_TOKEN=" + n.AdminToken}, tee, n.Bin, "serve", "--config", cfgPath)
	if err != nil {
		closeTee()
		return err
	}
	go func() { <-p.Done(); closeTee() }()
	n.Proc = p
	n.Starts++
	m, err := p.Log.WaitFor(reGatewayStarted, 20*time.Second)
	if err != nil {
		p.Kill()
		return fmt.Errorf("gateway node %s did not start: %w\n%s", n.Name, err, tail(p.Log, 20))
	}
	n.TunnelAddr, n.AdminAddr = m[1], m[2]
	n.ConnAddrs = map[string]string{}
	for _, line := range p.Log.Lines() {
		if m := reConnListening.FindStringSubmatch(line); m != nil {
			n.ConnAddrs[m[1]] = m[2]
		}
	}
	// The next start reuses these ports.
	n.Tunnel, n.Admin = n.TunnelAddr, n.AdminAddr
	for i, c := range n.Conns {
		a, ok := n.ConnAddrs[c.Name]
		if !ok {
			p.Kill()
			return fmt.Errorf("gateway node %s logged no listen address for connection %q", n.Name, c.Name)
		}
		n.Conns[i].Listen = a
	}
	return nil
}

// TunnelPort is the port of the node's tunnel listener.
func (n *GatewayNode) TunnelPort() string {
	_, p, _ := net.SplitHostPort(n.TunnelAddr)
	return p
}

// AgentNode is one ferry-agent process, optionally with its own /etc/hosts.
// Restarts reuse its metrics port.
type AgentNode struct {
	Name      string
	Bin       string
	Dir       string   // config, lock file
	URL       string   // wss://…/v1/tunnel
	Token     string   // written to Dir/agent.token
	CAFile    string   // the gateways' certificate
	Allow     []string // [access] allow
	HA        int      // default 2
	Metrics   string   // [metrics] listen; default 127.0.0.1:0
	Grace     string   // [agent] shutdown_grace; default 30s
	Rebalance string   // [reconnect] rebalance_interval; default 500ms
	HostsFile string   // run under unshare with this /etc/hosts ("" runs it directly)
	LogLevel  string   // default info
	LogFile   string   // if set, receives the log (appended across starts)

	Proc        *Process
	MetricsAddr string
	Starts      int
}

func (a *AgentNode) config() string {
	quoted := make([]string, len(a.Allow))
	for i, r := range a.Allow {
		quoted[i] = strconv.Quote(r)
	}
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	ha := a.HA
	if ha == 0 {
		ha = 2
	}
	return fmt.Sprintf(`[gateway]
url = %q
token_file = %q
ca_file = %q
ha_connections = %d

[reconnect]
initial_interval = "100ms"
max_interval = "1s"
rebalance_interval = %q

[access]
allow = [%s]

[metrics]
listen = %q

[log]
level = %q

[agent]
lock_file = %q
shutdown_grace = %q
`, a.URL, filepath.Join(a.Dir, "agent.token"), a.CAFile, ha, def(a.Rebalance, "500ms"),
		strings.Join(quoted, ", "), def(a.Metrics, "127.0.0.1:0"), def(a.LogLevel, "info"),
		filepath.Join(a.Dir, "agent.lock"), def(a.Grace, "30s"))
}

// Start writes the agent's config and token and runs it until its metrics
// endpoint listens.
func (a *AgentNode) Start() error {
	if err := os.MkdirAll(a.Dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(a.Dir, "agent.token"), []byte(a.Token+"\n"), 0o600); err != nil {
		return err
	}
	cfgPath := filepath.Join(a.Dir, "agent.toml")
	if err := os.WriteFile(cfgPath, []byte(a.config()), 0o600); err != nil {
		return err
	}
	bin, args := a.Bin, []string{"run", "--config", cfgPath}
	if a.HostsFile != "" {
		bin, args = unshareHosts(a.HostsFile, append([]string{a.Bin}, args...))
	}
	tee, closeTee, err := openTee(a.LogFile)
	if err != nil {
		return err
	}
	p, err := Spawn(a.Name, nil, tee, bin, args...)
	if err != nil {
		closeTee()
		return err
	}
	go func() { <-p.Done(); closeTee() }()
	a.Proc = p
	a.Starts++
	m, err := p.Log.WaitFor(reAgentMetrics, 20*time.Second)
	if err != nil {
		p.Kill()
		return fmt.Errorf("agent %s did not start: %w\n%s", a.Name, err, tail(p.Log, 20))
	}
	a.MetricsAddr = m[1]
	a.Metrics = m[1] // the next start reuses the port
	return nil
}

// AgentStatus is the part of the agent's /status the tests read.
type AgentStatus struct {
	Instance      string `json:"instance"`
	Draining      bool   `json:"draining"`
	StreamsActive int64  `json:"streams_active"`
	Tunnels       []struct {
		Index     int    `json:"index"`
		State     string `json:"state"`
		GatewayIP string `json:"gateway_ip"`
		Node      string `json:"node"`
		Streams   int    `json:"streams"`
	} `json:"tunnels"`
}

// Nodes is the gateway node of every connected tunnel, by slot.
func (s AgentStatus) Nodes() []string {
	var out []string
	for _, t := range s.Tunnels {
		if t.State == "connected" {
			out = append(out, t.Node)
		}
	}
	return out
}

// Status reads the agent's /status.
func (a *AgentNode) Status() (AgentStatus, error) {
	var st AgentStatus
	body, err := httpGet("http://" + a.MetricsAddr + "/status")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(body), &st)
}

// MetricsText reads the agent's /metrics.
func (a *AgentNode) MetricsText() (string, error) {
	return httpGet("http://" + a.MetricsAddr + "/metrics")
}

// Spread reports whether every tunnel slot of the agent is connected and
// slot i is on node nodes[i % len(nodes)]: the agent is back on its
// preferred gateway addresses.
func (a *AgentNode) Spread(nodes []string) (bool, string) {
	st, err := a.Status()
	if err != nil {
		return false, err.Error()
	}
	var got []string
	ok := len(st.Tunnels) > 0
	for _, t := range st.Tunnels {
		got = append(got, t.State+"@"+t.Node)
		if t.State != "connected" || t.Node != nodes[t.Index%len(nodes)] {
			ok = false
		}
	}
	return ok, a.Name + " " + strings.Join(got, ",")
}

// noKeepAlive closes each connection after its request, so that reading
// a process's /metrics leaves no idle connection (a goroutine and a file
// descriptor) behind in it.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

// HTTPGet fetches url on a fresh connection that is closed afterwards and
// returns the body; a status other than 200 is an error.
func HTTPGet(url string) (string, error) { return httpGet(url) }

func httpGet(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return string(b), nil
}

// GatewayMetricsText reads a gateway's /metrics from its admin address.
func GatewayMetricsText(adminAddr string) (string, error) {
	return httpGet("http://" + adminAddr + "/metrics")
}

func openTee(path string) (io.Writer, func(), error) {
	if path == "" {
		return nil, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func tail(l *Log, n int) string {
	lines := l.Lines()
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
