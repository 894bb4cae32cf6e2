//go:build linux

package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/gateway/adminclient"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// The tests in this file run Ferry in a network-namespace topology
// (testutil.Topology): an agent host whose firewall lets out only TCP to the
// gateway's port 443 (and to its target) and lets nothing in, a gateway host
// and a target host, all behind a router. The test process reaches into the
// namespaces with sockets opened there (NetNS.Do): clients dial from the
// gateway host, targets listen on the target host.

const (
	gwHost       = testutil.GatewayHost    // the gateway's name on the agent host (/etc/netns/…/hosts)
	agentMetrics = "9464"                  // the agent's metrics port, on every address of the agent host
	fwTable      = "ferry_egress"          // the agent host's nftables table
	holeTable    = "ferry_blackhole"       // the router's table that drops the agent–gateway link
	probeTimeout = 1500 * time.Millisecond // an inbound attempt that has not connected by then was dropped
)

var (
	reNoAllowedIP      = regexp.MustCompile(`msg="cannot resolve gateway".*none within allowed_ips`)
	reTunnelDown       = regexp.MustCompile(`msg="tunnel disconnected"`)
	reGatewayTunnelEnd = regexp.MustCompile(`msg="agent tunnel closed"`)
)

// agentFirewall is the agent host's nftables ruleset: nothing comes in
// unless it belongs to a connection the host opened; nothing goes out but
// TCP to the gateway's port 443 and to the target's service ports.
func agentFirewall(targetPorts ...string) string {
	return fmt.Sprintf(`table inet %[1]s {
	counter inbound_dropped {}
	counter outbound_dropped {}
	counter to_gateway {}
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		counter name "inbound_dropped" drop
	}
	chain output {
		type filter hook output priority filter; policy drop;
		ip daddr %[2]s counter name "to_gateway"
		oif "lo" accept
		ct state established,related accept
		ip daddr %[2]s tcp dport 443 ct state new accept
		ip daddr %[3]s tcp dport { %[4]s } ct state new accept
		counter name "outbound_dropped" drop
	}
}
`, fwTable, testutil.TopoGatewayIP, testutil.TopoTargetIP, strings.Join(targetPorts, ", "))
}

// blackhole makes the router drop every packet between the agent's and the
// gateway's networks, both ways, without a word (no RST, no ICMP).
func blackhole() string {
	return fmt.Sprintf(`table inet %[1]s {
	counter dropped {}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr 10.231.1.0/24 ip daddr 10.231.2.0/24 counter name "dropped" drop
		ip saddr 10.231.2.0/24 ip daddr 10.231.1.0/24 counter name "dropped" drop
	}
}
`, holeTable)
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// startNetnsGateway runs a gateway on the gateway host: tunnels on
// 10.231.2.2:443 with a certificate for gw.ferry.test, its admin API and
// connection listeners on the host's loopback. g.CertFile is the
// self-signed certificate the agent trusts (ca_file); g.API reaches the API
// from inside the namespace.
func startNetnsGateway(t *testing.T, topo *testutil.Topology, extra string, conns []conn) *Gateway {
	t.Helper()
	o := gatewayOpts{
		DataDir:     t.TempDir(),
		Tunnel:      net.JoinHostPort(testutil.TopoGatewayIP, "443"),
		Admin:       "127.0.0.1:0",
		AdminToken:  "adm-" + randomHex(16),
		Connections: conns,
		Extra:       extra,
	}
	certFile, keyFile, err := testutil.WriteCert(t.TempDir(), gwHost)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := writeGatewayConfig(t, o, "e2e-netns", fmt.Sprintf("cert_file = %q\nkey_file = %q", certFile, keyFile))
	g := &Gateway{Opts: o, ConfigPath: cfgPath, CertFile: certFile, Conns: map[string]string{}}
	g.Proc = topo.Gateway.Start(t, "ferry-gateway", []string{"FERRY_ADMIN_TOKEN=" + o.AdminToken}, gatewayBin, "serve", "--config", cfgPath)
	g.awaitStart(t)
	g.API = adminclient.New("http://"+g.AdminAddr, o.AdminToken, topo.Gateway.HTTPClient(10*time.Second))
	return g
}

// nsAgentOpts are the agent settings the netns tests add to agentOpts.
type nsAgentOpts struct {
	Gateway string // more keys for the [gateway] table
	Metrics string // [metrics] listen; default every address of the host, port 9464
}

// startNetnsAgent writes an agent config (the harness's, with the gateway
// at wss://gw.ferry.test/v1/tunnel) and runs the agent on the agent host.
func startNetnsAgent(t *testing.T, topo *testutil.Topology, g *Gateway, o agentOpts, no nsAgentOpts) *Agent {
	t.Helper()
	o.URL = "wss://" + gwHost + "/v1/tunnel"
	if no.Metrics == "" {
		no.Metrics = "0.0.0.0:" + agentMetrics
	}
	a := writeAgentConfig(t, g, o)
	editConfig(t, a.ConfigPath, "[metrics]\nlisten = \"127.0.0.1:0\"\n", fmt.Sprintf("[metrics]\nlisten = %q\n", no.Metrics))
	if no.Gateway != "" {
		ha := fmt.Sprintf("ha_connections = %d\n", o.HA)
		if o.HA == 0 {
			ha = "ha_connections = 2\n" // writeAgentConfig's default
		}
		editConfig(t, a.ConfigPath, ha, ha+no.Gateway+"\n")
	}
	a.Proc = topo.Agent.Start(t, "ferry-agent", nil, agentBin, "run", "--config", a.ConfigPath)
	m, err := a.Proc.Log.WaitFor(reAgentMetrics, startTimeout)
	if err != nil {
		t.Fatalf("agent did not start: %v", err)
	}
	a.MetricsAddr = net.JoinHostPort("127.0.0.1", portOf(m[1]))
	return a
}

// editConfig replaces old (which must be there) by new in a config file.
func editConfig(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s holds no %q to replace:\n%s", path, old, b)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
		t.Fatal(err)
	}
}

// nsMetrics reads a /metrics body through a client of a namespace.
func nsMetrics(hc *http.Client, addr string) (string, error) {
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return string(body), err
}

// nsMetric is one metric (summed over matching series); it fails the test
// when /metrics does not answer.
func nsMetric(t *testing.T, hc *http.Client, addr, name string, labels map[string]string) float64 {
	t.Helper()
	body, err := nsMetrics(hc, addr)
	if err != nil {
		t.Fatalf("/metrics at %s: %v", addr, err)
	}
	return testutil.Metric(body, name, labels)
}

// waitNsTunnels polls the agent's metrics (from inside its host) until n
// tunnels are up.
func waitNsTunnels(t *testing.T, hc *http.Client, a *Agent, n int, timeout time.Duration) time.Duration {
	t.Helper()
	return testutil.Poll(t, timeout, fmt.Sprintf("agent with %d tunnels up", n), func() (bool, string) {
		body, err := nsMetrics(hc, a.MetricsAddr)
		if err != nil {
			return false, err.Error()
		}
		up := testutil.Metric(body, "ferry_agent_tunnels_connected", nil)
		return up >= float64(n), "tunnels_connected " + ftoa(up)
	})
}

// isTimeout reports whether a dial failed because nothing answered.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestEgressOnly: on an agent host that lets out only TCP to the gateway's
// port 443 (and to its target) and lets nothing in, the agent connects, the
// core connection test passes, and no connection from outside reaches the
// host, its metrics port included. An agent whose allowed_ips leaves the
// gateway's address out never sends it a packet.
func TestEgressOnly(t *testing.T) {
	t.Parallel()
	topo := testutil.NewTopology(t)
	topo.Agent.SetHosts(t, "127.0.0.1 localhost\n::1 localhost\n"+testutil.TopoGatewayIP+" "+gwHost+"\n")
	echo := testutil.NewEchoServerOn(t, topo.Target.Listen(t, "tcp", net.JoinHostPort(testutil.TopoTargetIP, "0")))

	// A service on the agent host, reachable from the gateway host before
	// the firewall is up: what stops connections later is the firewall, not
	// the topology.
	probe := testutil.NewCountingListenerOn(t, topo.Agent.Listen(t, "tcp", net.JoinHostPort(testutil.TopoAgentIP, "0")))
	c, err := topo.Gateway.DialTimeout("tcp", probe.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("before the firewall, the gateway host cannot reach the agent host at %s: %v", probe.Addr, err)
	}
	c.Close()
	topo.Agent.Nft(t, agentFirewall(portOf(echo.Addr)))

	const name = "a1"
	g := startNetnsGateway(t, topo, "", []conn{{Name: "echo", Agent: name, Target: echo.Addr}})
	tok := g.CreateAgent(t, name)
	agentHC := topo.Agent.HTTPClient(5 * time.Second)
	gwHC := topo.Gateway.HTTPClient(5 * time.Second)

	// allowed_ips without the gateway's address: the agent says why it does
	// not connect, and sends the gateway nothing.
	excluded := startNetnsAgent(t, topo, g, agentOpts{Token: tok, Allow: []string{echo.Addr}, HA: 1},
		nsAgentOpts{Gateway: `allowed_ips = ["10.231.9.0/24"]`, Metrics: "127.0.0.1:0"})
	testutil.Poll(t, 15*time.Second, "the agent outside allowed_ips has tried and refused 3 times", func() (bool, string) {
		n := excluded.Proc.Log.Count(reNoAllowedIP)
		return n >= 3, fmt.Sprintf("%d log lines matching %q", n, reNoAllowedIP)
	})
	for _, line := range excluded.Proc.Log.Lines() {
		if reNoAllowedIP.MatchString(line) {
			t.Logf("agent with allowed_ips outside the gateway logs: %s", line)
			break
		}
	}
	if up := nsMetric(t, agentHC, excluded.MetricsAddr, "ferry_agent_tunnels_connected", nil); up != 0 {
		t.Errorf("agent with the gateway outside allowed_ips has %v tunnels", up)
	}
	if code := excluded.Proc.Stop(); code != 0 {
		t.Errorf("agent with the gateway outside allowed_ips exited with %d after SIGTERM", code)
	}
	if n := topo.Agent.NftCounter(t, fwTable, "to_gateway"); n != 0 {
		t.Errorf("the agent host sent %d packets to the gateway while only an agent whose allowed_ips excludes it ran", n)
	}
	if n := nsMetric(t, gwHC, g.AdminAddr, "ferry_gateway_handshakes_total", nil); n != 0 {
		t.Errorf("ferry_gateway_handshakes_total = %v while only an agent whose allowed_ips excludes the gateway ran, want 0", n)
	}

	// The real agent: egress only, and everything works.
	a := startNetnsAgent(t, topo, g, agentOpts{Token: tok, Allow: []string{echo.Addr}}, nsAgentOpts{})
	d := waitNsTunnels(t, agentHC, a, 2, startTimeout)
	t.Logf("agent tunnels up through the firewall after %s", d.Round(time.Millisecond))
	g.WaitOnline(t, name, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	info, err := g.API.GetAgent(ctx, name)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	for _, tun := range info.Tunnels {
		if host, _, _ := net.SplitHostPort(tun.RemoteAddr); host != testutil.TopoAgentIP {
			t.Errorf("gateway sees a tunnel from %s, want the agent host %s", tun.RemoteAddr, testutil.TopoAgentIP)
		}
	}
	if n := topo.Agent.NftCounter(t, fwTable, "to_gateway"); n == 0 {
		t.Errorf("nft counter to_gateway is 0 with the agent connected: the allowed_ips check above proves nothing")
	}

	// Nothing gets in: not from the gateway host, not from the target
	// host, not from the router; neither the agent's metrics port nor any
	// other. Each attempt times out (dropped), where before the firewall
	// the same path connected.
	agentAddr := func(port string) string { return net.JoinHostPort(testutil.TopoAgentIP, port) }
	if c, err := topo.Agent.DialTimeout("tcp", agentAddr(agentMetrics), 5*time.Second); err != nil {
		t.Fatalf("the agent's metrics port does not answer on %s even inside its host: %v", agentAddr(agentMetrics), err)
	} else {
		c.Close()
	}
	droppedBefore := topo.Agent.NftCounter(t, fwTable, "inbound_dropped")
	type attempt struct {
		from *testutil.NetNS
		addr string
	}
	attempts := []attempt{
		{topo.Gateway, agentAddr(agentMetrics)},
		{topo.Gateway, probe.Addr},
		{topo.Gateway, agentAddr("22")},
		{topo.Gateway, agentAddr("443")},
		{topo.Target, agentAddr(agentMetrics)},
		{topo.Router, agentAddr(agentMetrics)},
	}
	var wg sync.WaitGroup
	for _, at := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c, err := at.from.DialTimeout("tcp", at.addr, probeTimeout)
			switch {
			case err == nil:
				c.Close()
				t.Errorf("a connection from %s reached the agent host at %s", at.from.Name, at.addr)
			case !isTimeout(err):
				t.Errorf("a connection from %s to %s failed with %v after %s, want a timeout (packets dropped)", at.from.Name, at.addr, err, time.Since(start).Round(time.Millisecond))
			}
		}()
	}
	wg.Wait()
	if n := topo.Agent.NftCounter(t, fwTable, "inbound_dropped") - droppedBefore; n < uint64(len(attempts)) {
		t.Errorf("the agent host's firewall dropped %d inbound packets during %d connection attempts", n, len(attempts))
	} else {
		t.Logf("%d inbound connection attempts to the agent host timed out; its firewall dropped %d packets", len(attempts), n)
	}

	// Nothing gets out but the tunnel and the target: the gateway host's
	// other ports are closed to the agent host.
	if c, err := topo.Agent.DialTimeout("tcp", net.JoinHostPort(testutil.TopoGatewayIP, "8443"), probeTimeout); err == nil {
		c.Close()
		t.Errorf("the agent host connected to the gateway host's port 8443")
	} else if n := topo.Agent.NftCounter(t, fwTable, "outbound_dropped"); n == 0 {
		t.Errorf("an outbound connection to port 8443 failed (%v), but not at the agent host's firewall", err)
	} else {
		t.Logf("the agent host cannot connect to the gateway host's port 8443 (dropped by its firewall): %v", err)
	}

	// The core connection test, through all of it.
	addr := g.Conns["echo"]
	dialGW := func() (net.Conn, error) { return topo.Gateway.DialTimeout("tcp", addr, 10*time.Second) }
	if err := transferVia(dialGW, 1024); err != nil {
		t.Fatalf("first connection through the tunnel: %v", err)
	}
	acceptedBefore, eofBefore := echo.Accepted(), echo.CleanEOF()
	const conns, size = 16, 1 << 20
	start := time.Now()
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := transferVia(dialGW, size); err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	elapsed := time.Since(start)
	t.Logf("%d connections × %d MiB echoed with half-close from the gateway host to the target host in %s", conns, size>>20, elapsed.Round(time.Millisecond))
	if got := echo.Accepted() - acceptedBefore; got != conns {
		t.Errorf("echo target accepted %d connections, want %d", got, conns)
	}
	if got := echo.CleanEOF() - eofBefore; got != conns {
		t.Errorf("echo target saw a clean EOF on %d connections, want %d (errors: %v)", got, conns, echo.Errors())
	}
}

// TestBlackholeDetected: when the link between agent and gateway silently
// drops every packet, both ends notice within the keepalive timeout, the
// gateway resets the tunnel's client connections (neither a hang nor a
// clean end), the agent ends its target connections, and once the link is
// back the agent reconnects by itself.
func TestBlackholeDetected(t *testing.T) {
	t.Parallel()
	const (
		keepalive = "[limits]\nkeepalive_interval = \"1s\"\nkeepalive_timeout = \"4s\""
		timeout   = 4 * time.Second
		bound     = 3 * timeout // how long to wait at all: scheduling and TCP are not exact
	)
	topo := testutil.NewTopology(t)
	topo.Agent.SetHosts(t, "127.0.0.1 localhost\n::1 localhost\n"+testutil.TopoGatewayIP+" "+gwHost+"\n")
	writer := testutil.NewWriterServerOn(t, topo.Target.Listen(t, "tcp", net.JoinHostPort(testutil.TopoTargetIP, "0")))
	echo := testutil.NewEchoServerOn(t, topo.Target.Listen(t, "tcp", net.JoinHostPort(testutil.TopoTargetIP, "0")))
	topo.Agent.Nft(t, agentFirewall(portOf(writer.Addr), portOf(echo.Addr)))

	const name = "a1"
	g := startNetnsGateway(t, topo, keepalive, []conn{
		{Name: "stream", Agent: name, Target: writer.Addr},
		{Name: "echo", Agent: name, Target: echo.Addr},
	})
	tok := g.CreateAgent(t, name)
	agentHC := topo.Agent.HTTPClient(5 * time.Second)
	// A short handshake timeout: attempts made into the blackhole give up
	// soon, so the reconnect after it is quick.
	a := startNetnsAgent(t, topo, g, agentOpts{Token: tok, Allow: []string{writer.Addr, echo.Addr}}, nsAgentOpts{
		Gateway: "keepalive_interval = \"1s\"\nkeepalive_timeout = \"4s\"\nhandshake_timeout = \"2s\"",
	})
	waitNsTunnels(t, agentHC, a, 2, startTimeout)
	g.WaitOnline(t, name, 2)
	okBefore := nsMetric(t, agentHC, a.MetricsAddr, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})

	dialGW := func(conn string) *net.TCPConn {
		c, err := topo.Gateway.DialTimeout("tcp", g.Conns[conn], 10*time.Second)
		if err != nil {
			t.Fatalf("dial connection %s: %v", conn, err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.TCPConn)
	}
	// A long transfer in flight: the client reads without pause.
	stream := dialGW("stream")
	stream.SetReadDeadline(time.Now().Add(bound + 10*time.Second))
	buf := make([]byte, 64<<10)
	var got int64
	for got < 4<<20 {
		n, err := stream.Read(buf)
		got += int64(n)
		if err != nil {
			t.Fatalf("read before the blackhole, after %d bytes: %v", got, err)
		}
	}
	// An idle connection: one echo to be sure it is open end to end, then
	// silence.
	idle := dialGW("echo")
	idle.SetDeadline(time.Now().Add(bound + 10*time.Second))
	if _, err := idle.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(idle, make([]byte, 1)); err != nil {
		t.Fatalf("echo on the idle connection: %v", err)
	}
	echoEndedBefore := echo.CleanEOF() + int64(len(echo.Errors()))

	agentFrom, gwFrom := a.Proc.Log.Len(), g.Proc.Log.Len()
	type result struct {
		after time.Duration
		err   error
	}
	streamEnd, idleEnd := make(chan result, 1), make(chan result, 1)
	holeAt := time.Now()
	go func() {
		var err error
		for err == nil {
			_, err = stream.Read(buf)
		}
		streamEnd <- result{time.Since(holeAt), err}
	}()
	go func() {
		_, err := idle.Read(make([]byte, 1))
		idleEnd <- result{time.Since(holeAt), err}
	}()
	topo.Router.Nft(t, blackhole())
	// Packets keep flowing until the rules are in place, and running nft
	// takes a while on a loaded machine: the keepalive clock starts here.
	inPlace := time.Now()
	t.Logf("blackhole in place %s after the order", inPlace.Sub(holeAt).Round(time.Millisecond))
	holeOn := true
	removeHole := func() {
		if holeOn {
			topo.Router.Exec(t, "nft", "delete", "table", "inet", holeTable)
			holeOn = false
		}
	}
	t.Cleanup(removeHole) // before the processes stop: their shutdown needs the link

	// Both ends notice.
	var agentAfter, gwAfter time.Duration
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := a.Proc.Log.WaitForFrom(agentFrom, reTunnelDown, bound); err != nil {
			t.Errorf("agent did not notice the blackhole: %v", err)
			return
		}
		agentAfter = time.Since(inPlace)
	}()
	go func() {
		defer wg.Done()
		if _, err := g.Proc.Log.WaitForFrom(gwFrom, reGatewayTunnelEnd, bound); err != nil {
			t.Errorf("gateway did not notice the blackhole: %v", err)
			return
		}
		gwAfter = time.Since(inPlace)
	}()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("blackhole detected by agent after %s, by gateway after %s (keepalive interval 1s, timeout %s)",
		agentAfter.Round(10*time.Millisecond), gwAfter.Round(10*time.Millisecond), timeout)
	// The promise is detection within the keepalive timeout; the session's
	// watchdog checks every timeout/8. Half a timeout of slack covers a
	// loaded machine without letting the old twice-the-timeout behaviour
	// pass.
	if limit := timeout + timeout/2; agentAfter > limit || gwAfter > limit {
		t.Errorf("dead link noticed after %s (agent) and %s (gateway), want within keepalive_timeout %s (+ slack, %s)", agentAfter, gwAfter, timeout, limit)
	}
	testutil.Poll(t, bound, "agent reports no tunnel", func() (bool, string) {
		up := nsMetric(t, agentHC, a.MetricsAddr, "ferry_agent_tunnels_connected", nil)
		return up == 0, "tunnels_connected " + ftoa(up)
	})
	t.Logf("ferry_agent_tunnels_connected 0 at %s after the blackhole", time.Since(holeAt).Round(10*time.Millisecond))

	// The clients are reset: not a hang, not a clean end.
	for _, c := range []struct {
		what string
		ch   chan result
	}{{"long transfer", streamEnd}, {"idle connection", idleEnd}} {
		select {
		case r := <-c.ch:
			switch {
			case errors.Is(r.err, io.EOF):
				t.Errorf("%s: the client read a clean EOF %s after the blackhole: a cut connection looks complete", c.what, r.after.Round(10*time.Millisecond))
			case !testutil.IsReset(r.err):
				t.Errorf("%s: the client's read ended with %v %s after the blackhole, want ECONNRESET", c.what, r.err, r.after.Round(10*time.Millisecond))
			default:
				t.Logf("%s: client connection reset %s after the blackhole", c.what, r.after.Round(10*time.Millisecond))
			}
		case <-time.After(bound - time.Since(holeAt) + time.Second):
			t.Errorf("%s: the client's connection still hangs %s after the blackhole", c.what, time.Since(holeAt).Round(time.Second))
		}
	}

	// The targets' connections end too (the agent resets them).
	select {
	case err := <-writer.Ended:
		t.Logf("long transfer: target connection ended %s after the blackhole: %v", time.Since(holeAt).Round(10*time.Millisecond), err)
	case <-time.After(bound - time.Since(holeAt) + time.Second):
		t.Errorf("long transfer: the target's connection still runs %s after the blackhole", time.Since(holeAt).Round(time.Second))
	}
	testutil.Poll(t, bound, "the idle connection's target side ends", func() (bool, string) {
		n := echo.CleanEOF() + int64(len(echo.Errors()))
		return n > echoEndedBefore, fmt.Sprintf("%d ended, %d before", n, echoEndedBefore)
	})
	if errs := echo.Errors(); len(errs) > 0 {
		t.Logf("idle connection: target connection ended %s after the blackhole: %v", time.Since(holeAt).Round(10*time.Millisecond), errs[len(errs)-1])
	} else {
		t.Logf("idle connection: target connection closed (EOF) by %s after the blackhole", time.Since(holeAt).Round(10*time.Millisecond))
	}
	dropped := topo.Router.NftCounter(t, holeTable, "dropped")

	// The link comes back: the agent heals by itself.
	removeHole()
	backAt := time.Now()
	testutil.Poll(t, 20*time.Second, "agent reconnected after the blackhole", func() (bool, string) {
		body, err := nsMetrics(agentHC, a.MetricsAddr)
		if err != nil {
			return false, err.Error()
		}
		up := testutil.Metric(body, "ferry_agent_tunnels_connected", nil)
		ok := testutil.Metric(body, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})
		return up >= 1 && ok > okBefore, "tunnels_connected " + ftoa(up) + ", connects ok " + ftoa(ok)
	})
	reconnect := time.Since(backAt)
	msg := []byte("after the blackhole " + randomHex(8))
	testutil.Poll(t, 10*time.Second, "a new connection through the healed tunnel", func() (bool, string) {
		c, err := topo.Gateway.DialTimeout("tcp", g.Conns["echo"], 5*time.Second)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return false, err.Error()
		}
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		return err == nil && bytes.Equal(b, msg), fmt.Sprintf("got %q, %v", b, err)
	})
	t.Logf("blackhole dropped %d packets; agent reconnected %s after the link came back, and a new connection works",
		dropped, reconnect.Round(10*time.Millisecond))
}

// TestKeepaliveDefaults: with no keepalive keys, a dead link is noticed
// within 30 s on both sides (DESIGN §7, docs/protocol.md §2); not waited
// for end to end, the configuration's defaults are checked.
func TestKeepaliveDefaults(t *testing.T) {
	t.Parallel()
	a, err := config.ParseAgent([]byte("[gateway]\nurl = \"wss://gw.example.com/v1/tunnel\"\n"), "agent.toml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := config.ParseGateway([]byte("[tls]\nself_signed = true\n"), "gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what              string
		interval, timeout time.Duration
	}{
		{"agent [gateway]", a.Gateway.KeepaliveInterval, a.Gateway.KeepaliveTimeout},
		{"gateway [limits]", g.Limits.KeepaliveInterval, g.Limits.KeepaliveTimeout},
	} {
		if c.timeout <= 0 || c.timeout > 30*time.Second || c.interval <= 0 || c.interval >= c.timeout {
			t.Errorf("%s default keepalive_interval %s, keepalive_timeout %s: want an interval below a timeout of at most 30s", c.what, c.interval, c.timeout)
		}
		t.Logf("%s defaults: keepalive_interval %s, keepalive_timeout %s", c.what, c.interval, c.timeout)
	}
}
