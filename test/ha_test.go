package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminclient"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// Zero-downtime restarts (issue 3, points 3 and 4): gateway nodes sharing a
// store and agent replicas sharing a token are restarted one after the other
// while a client opens connections without pause; none may fail, and
// transfers in flight on the process being stopped finish intact.

// requireHostsRemap skips (or, with FERRY_REQUIRE_SERVICES=1, fails) when
// the agent cannot be given its own /etc/hosts here.
func requireHostsRemap(t *testing.T) {
	t.Helper()
	if err := testutil.CheckHostsRemap(t.TempDir()); err != nil {
		msg := "two gateway nodes under one DNS name need a private /etc/hosts for the agent: " + err.Error()
		if os.Getenv(testutil.EnvRequireServices) == "1" {
			t.Fatal(msg + "; " + testutil.EnvRequireServices + "=1 makes this a failure")
		}
		t.Skip(msg)
	}
}

// tracked keeps every process a node ran, to stop the last one at cleanup
// (SIGTERM must end it with 0) and show all their logs when the test fails.
type tracked struct {
	mu    sync.Mutex
	procs []*testutil.Process
}

func (tr *tracked) add(p *testutil.Process) {
	tr.mu.Lock()
	tr.procs = append(tr.procs, p)
	tr.mu.Unlock()
}

func newTracked(t *testing.T) *tracked {
	tr := &tracked{}
	t.Cleanup(func() {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, p := range tr.procs {
			if p.Exited() {
				continue
			}
			code, err := p.Terminate(15 * time.Second)
			if err != nil {
				p.Kill()
				t.Errorf("%s still ran 15s after SIGTERM (killed)", p.Name)
			} else if code != 0 {
				t.Errorf("%s exited with %d after SIGTERM, want 0", p.Name, code)
			}
		}
		if t.Failed() {
			for _, p := range tr.procs {
				p.Dump(t)
			}
		}
	})
	return tr
}

func startNode(t *testing.T, tr *tracked, n *testutil.GatewayNode) {
	t.Helper()
	start := time.Now()
	err := n.Start()
	if n.Proc != nil {
		tr.add(n.Proc)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gateway node %s started (run %d) in %s: tunnel %s, admin %s, connections %v",
		n.Name, n.Starts, time.Since(start).Round(time.Millisecond), n.TunnelAddr, n.AdminAddr, n.ConnAddrs)
}

func startAgentNode(t *testing.T, tr *tracked, a *testutil.AgentNode) {
	t.Helper()
	err := a.Start()
	if a.Proc != nil {
		tr.add(a.Proc)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// stopNode sends SIGTERM to a process and requires exit status 0 within
// timeout; it returns how long the process took.
func stopProc(t *testing.T, p *testutil.Process, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	code, err := p.Terminate(timeout)
	if err != nil {
		t.Fatalf("%s: %v after SIGTERM", p.Name, err)
	}
	if code != 0 {
		t.Fatalf("%s exited with %d after SIGTERM, want 0", p.Name, code)
	}
	return time.Since(start)
}

// clientLoop opens connections one after the other (workers at a time) to
// the address in addr: a few KB each way, half-close, read back, verify.
type clientLoop struct {
	addr   atomic.Pointer[string]
	gate   sync.RWMutex // workers hold it for reading during each connection
	ok     atomic.Int64
	failed atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	errs []string
}

func startClientLoop(t *testing.T, addr string, workers int) *clientLoop {
	l := &clientLoop{stop: make(chan struct{})}
	l.addr.Store(&addr)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				to := *l.addr.Load()
				l.gate.RLock()
				res := testutil.EchoRoundTrip(to, testutil.EchoOpts{Size: 1024 + rng.IntN(8<<10), Seed: rng.Uint64(), Chunk: 2048, Timeout: 20 * time.Second})
				l.gate.RUnlock()
				if res.Err == nil {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 20 {
					l.errs = append(l.errs, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), to, res.Err))
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

func (l *clientLoop) Switch(addr string) { l.addr.Store(&addr) }

// Pause waits for the connections in flight and holds new ones back until
// Resume.
func (l *clientLoop) Pause() { l.gate.Lock() }

// Resume lets the loop go on after Pause.
func (l *clientLoop) Resume() { l.gate.Unlock() }

// Stop ends the loop and waits for the connections in flight.
func (l *clientLoop) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *clientLoop) check(t *testing.T) {
	t.Helper()
	l.Stop()
	t.Logf("client loop: %d connections verified, %d failed", l.ok.Load(), l.failed.Load())
	if n := l.failed.Load(); n > 0 {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Errorf("%d client connection(s) failed during the rolling restart, want 0; first ones:", n)
		for _, e := range l.errs {
			t.Errorf("  %s", e)
		}
	}
	if l.ok.Load() == 0 {
		t.Error("the client loop made no connection at all")
	}
}

// longTransfer runs a slow echo transfer (about 2.5 s) through addr in the
// background; its result arrives on the returned channel.
func longTransfer(addr string, seed uint64) <-chan testutil.EchoResult {
	ch := make(chan testutil.EchoResult, 1)
	go func() {
		ch <- testutil.EchoRoundTrip(addr, testutil.EchoOpts{Size: 2 << 20, Seed: seed, Chunk: 16 << 10, Pause: 10 * time.Millisecond, Timeout: 30 * time.Second})
	}()
	return ch
}

func apiClient(adminAddr, token string) *adminclient.Client {
	return adminclient.New("http://"+adminAddr, token, &http.Client{Timeout: 5 * time.Second})
}

// agentTunnels polls a node's API until the agent's record there satisfies
// ok (given its tunnels and their distinct instances).
func waitAgentRecord(t *testing.T, api *adminclient.Client, agent, what string, ok func(tunnels, instances int) bool) time.Duration {
	t.Helper()
	return testutil.Poll(t, 20*time.Second, what, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a, err := api.GetAgent(ctx, agent)
		if err != nil {
			return false, err.Error()
		}
		inst := map[string]bool{}
		for _, tu := range a.Tunnels {
			inst[tu.Instance] = true
		}
		return a.Online && ok(len(a.Tunnels), len(inst)), fmt.Sprintf("online=%v tunnels=%d instances=%d", a.Online, len(a.Tunnels), len(inst))
	})
}

var (
	reGoaway      = regexp.MustCompile(`time=(\S+) .*msg="gateway node is going away: opening a replacement tunnel" tunnel=(\d+) node=(\S+)`)
	reTunnelUp    = regexp.MustCompile(`time=(\S+) .*msg="tunnel connected" tunnel=(\d+) gateway=(\S+) node=(\S+)`)
	reRetired     = regexp.MustCompile(`time=(\S+) .*msg="retired tunnel closed" tunnel=(\d+) gateway=(\S+)`)
	reGraceExpire = regexp.MustCompile(`shutdown grace expired`)
	reLongDone    = regexp.MustCompile(`msg=connection .*result=ok bytes_to_target=2097152 bytes_from_target=2097152`)
)

// checkMakeBeforeBreak reads the agent's log from line from on: after the
// goaway of node, the slot's replacement tunnel (on another node) must be up
// before the old tunnel closed. It waits for the old tunnel to close.
func checkMakeBeforeBreak(t *testing.T, log *testutil.Log, from int, node, nodeIP string) {
	t.Helper()
	g, err := log.WaitForFrom(from, regexp.MustCompile(`msg="gateway node is going away: opening a replacement tunnel" tunnel=\d+ node=`+regexp.QuoteMeta(node)+`\b`), 10*time.Second)
	if err != nil {
		t.Fatalf("agent log: %v", err)
	}
	if _, err := log.WaitForFrom(from, regexp.MustCompile(`msg="retired tunnel closed" tunnel=\d+ gateway=`+regexp.QuoteMeta(nodeIP)+`\b`), 15*time.Second); err != nil {
		t.Fatalf("agent log: the tunnel to %s was never closed: %v", node, err)
	}
	_ = g
	lines := log.Lines()[from:]
	goawayAt, upAt, closedAt := -1, -1, -1
	var slot, tGoaway, tUp, tClosed string
	for i, line := range lines {
		if m := reGoaway.FindStringSubmatch(line); m != nil && goawayAt < 0 && m[3] == node {
			goawayAt, slot, tGoaway = i, m[2], m[1]
			continue
		}
		if goawayAt < 0 {
			continue
		}
		if m := reTunnelUp.FindStringSubmatch(line); m != nil && upAt < 0 && m[2] == slot && m[4] != node {
			upAt, tUp = i, m[1]
		}
		if m := reRetired.FindStringSubmatch(line); m != nil && closedAt < 0 && m[2] == slot && m[3] == nodeIP {
			closedAt, tClosed = i, m[1]
		}
	}
	switch {
	case upAt < 0:
		t.Errorf("agent log: no replacement tunnel for slot %s after %s's goaway", slot, node)
	case closedAt < 0:
		t.Errorf("agent log: slot %s's tunnel to %s never closed", slot, node)
	case upAt > closedAt:
		t.Errorf("agent log: slot %s's replacement tunnel came up after the old one to %s closed (break before make)", slot, node)
	default:
		t.Logf("make before break on slot %s: goaway from %s, replacement up after %s, old tunnel closed after %s",
			slot, node, since(tGoaway, tUp), since(tGoaway, tClosed))
	}
}

func since(a, b string) string {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	if err1 != nil || err2 != nil {
		return "?"
	}
	return tb.Sub(ta).Round(time.Millisecond).String()
}

// TestRollingGatewayRestart: two gateway nodes share a store and one DNS
// name; the agent keeps a tunnel to each. Each node in turn gets SIGTERM
// (with a long transfer in flight on it) and is started again, while a
// client opens connections without pause through the other node.
func TestRollingGatewayRestart(t *testing.T) {
	t.Parallel()
	requireHostsRemap(t)
	echo := testutil.NewEchoServer(t)
	st := testutil.NewTestSharedStore(t)
	dir := t.TempDir()
	cert, key, err := testutil.WriteCert(dir, testutil.GatewayHost)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := testutil.WriteHosts(dir, testutil.GatewayHost, testutil.NodeIPs)
	if err != nil {
		t.Fatal(err)
	}
	const agentName = "ha"
	adminToken := "adm-" + randomHex(16)
	tr := newTracked(t)
	names := []string{"gw-a", "gw-b"}
	nodes := make([]*testutil.GatewayNode, 2)
	for i, ip := range testutil.NodeIPs {
		port := "0"
		if i > 0 {
			port = nodes[0].TunnelPort() // one port, two addresses
		}
		nodes[i] = &testutil.GatewayNode{
			Name: names[i], Bin: gatewayBin, DataDir: filepath.Join(dir, names[i]),
			Tunnel: ip + ":" + port, Admin: "127.0.0.1:0", CertFile: cert, KeyFile: key,
			Store: st, AdminToken: adminToken,
			Conns: []testutil.StaticConnection{{Name: "echo-" + names[i], Agent: agentName, Target: echo.Addr, Listen: ip + ":0"}},
		}
		startNode(t, tr, nodes[i])
	}
	t.Logf("shared store: %s", st)
	apis := []*adminclient.Client{apiClient(nodes[0].AdminAddr, adminToken), apiClient(nodes[1].AdminAddr, adminToken)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	created, err := apis[0].CreateAgent(ctx, agentName, "HA test agent")
	cancel()
	if err != nil {
		t.Fatalf("create agent: %v", err)
	}
	ag := &testutil.AgentNode{
		Name: "ferry-agent", Bin: agentBin, Dir: filepath.Join(dir, "agent"),
		URL:   "wss://" + testutil.GatewayHost + ":" + nodes[0].TunnelPort() + "/v1/tunnel",
		Token: created.Token, CAFile: cert, Allow: []string{echo.Addr}, HostsFile: hosts,
	}
	startAgentNode(t, tr, ag)
	d := testutil.Poll(t, 20*time.Second, "agent tunnels on both nodes", func() (bool, string) { return ag.Spread(names) })
	t.Logf("agent has a tunnel to each node after %s", d.Round(time.Millisecond))
	for i := range nodes {
		waitAgentRecord(t, apis[i], agentName, "agent online on "+names[i], func(n, _ int) bool { return n >= 1 })
	}

	connAddr := func(i int) string { return nodes[i].ConnAddrs["echo-"+names[i]] }
	loop := startClientLoop(t, connAddr(1), 2)
	for i := range nodes {
		other := 1 - i
		loop.Switch(connAddr(other))
		time.Sleep(300 * time.Millisecond) // the loop runs on the other node
		from := ag.Proc.Log.Len()
		long := longTransfer(connAddr(i), uint64(i)+1)
		// The transfer is under way once the agent's tunnel to the node
		// carries a stream: before, SIGTERM could close the listener with
		// the client's connection still in its accept queue.
		testutil.Poll(t, 10*time.Second, "the long transfer under way through "+names[i], func() (bool, string) {
			st, err := ag.Status()
			if err != nil {
				return false, err.Error()
			}
			for _, tu := range st.Tunnels {
				if tu.State == "connected" && tu.Node == names[i] && tu.Streams > 0 {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%+v", st.Tunnels)
		})
		before := loop.ok.Load()
		drain := stopProc(t, nodes[i].Proc, 20*time.Second)
		res := <-long
		if res.Err != nil {
			t.Fatalf("long transfer in flight on %s when it got SIGTERM: %v (sent %d, got back %d)", names[i], res.Err, res.Sent, res.Received)
		}
		t.Logf("%s exited 0, %s after SIGTERM; the 2 MiB transfer in flight on it finished intact; %d client connections through %s meanwhile",
			names[i], drain.Round(time.Millisecond), loop.ok.Load()-before, names[other])
		checkMakeBeforeBreak(t, ag.Proc.Log, from, names[i], testutil.NodeIPs[i])

		restart := time.Now()
		startNode(t, tr, nodes[i])
		apis[i] = apiClient(nodes[i].AdminAddr, adminToken)
		waitAgentRecord(t, apis[i], agentName, "agent online on restarted "+names[i], func(n, _ int) bool { return n >= 1 })
		testutil.Poll(t, 20*time.Second, "agent back on both nodes", func() (bool, string) { return ag.Spread(names) })
		t.Logf("%s restarted; agent back on its own tunnel slots %s after the start", names[i], time.Since(restart).Round(time.Millisecond))
		if ag.Proc.Exited() {
			t.Fatal("the agent exited")
		}
	}
	loop.check(t)
	if n := ag.Proc.Log.Count(reGraceExpire); n > 0 {
		t.Errorf("agent log: shutdown grace expired %d time(s)", n)
	}
}

// TestAgentReplicasRollingRestart: two agent processes with the same token
// serve one gateway. Each in turn gets SIGTERM while long transfers run
// through it, and is started again, while a client opens connections
// without pause through the gateway.
func TestAgentReplicasRollingRestart(t *testing.T) {
	t.Parallel()
	echo := testutil.NewEchoServer(t)
	longEcho := testutil.NewEchoServer(t) // the long transfers' target
	g := startGateway(t, gatewayOpts{
		Connections: []conn{{Name: "echo", Agent: "rep", Target: echo.Addr}, {Name: "long", Agent: "rep", Target: longEcho.Addr}},
		Extra:       "[limits]\nshutdown_grace = \"5s\"",
	})
	tok := g.CreateAgent(t, "rep")
	tr := newTracked(t)
	dir := t.TempDir()
	reps := make([]*testutil.AgentNode, 2)
	for i := range reps {
		reps[i] = &testutil.AgentNode{
			Name: fmt.Sprintf("replica-%d", i+1), Bin: agentBin, Dir: filepath.Join(dir, fmt.Sprintf("r%d", i+1)),
			URL: g.URL(), Token: tok, CAFile: g.CertFile, Allow: []string{echo.Addr, longEcho.Addr},
		}
		startAgentNode(t, tr, reps[i])
	}
	both := func(what string) time.Duration {
		return waitAgentRecord(t, g.API, "rep", what, func(n, inst int) bool { return n >= 4 && inst == 2 })
	}
	both("both replicas online with 2 tunnels each")

	addr := g.Conns["echo"]
	loop := startClientLoop(t, addr, 2)
	time.Sleep(300 * time.Millisecond)
	for i, r := range reps {
		other := reps[1-i]
		// Long transfers on all four tunnels (the gateway puts each new
		// stream on the least loaded one): some run through r.
		// Place long transfers while the client loop holds still for a
		// moment, so that an active stream on r can only be one of them:
		// one after the other until one runs through r.
		loop.Pause()
		var longs []<-chan testutil.EchoResult
		testutil.Poll(t, 15*time.Second, r.Name+" carries a long transfer", func() (bool, string) {
			mine, err := r.Status()
			if err != nil {
				return false, err.Error()
			}
			theirs, err := other.Status()
			if err != nil {
				return false, err.Error()
			}
			if settled := mine.StreamsActive+theirs.StreamsActive == int64(len(longs)); settled {
				if mine.StreamsActive > 0 {
					return true, ""
				}
				if len(longs) < 12 {
					longs = append(longs, longTransfer(g.Conns["long"], uint64(100*i+len(longs))))
				}
			}
			return false, fmt.Sprintf("%d long transfers started; streams active: %s %d, %s %d", len(longs), r.Name, mine.StreamsActive, other.Name, theirs.StreamsActive)
		})
		loop.Resume()
		time.Sleep(200 * time.Millisecond)
		otherBefore := metricOf(t, other, "ferry_agent_streams_total", map[string]string{"result": "ok"})
		lines := r.Proc.Log.Len()
		took := stopProc(t, r.Proc, 20*time.Second)
		for j, ch := range longs {
			if res := <-ch; res.Err != nil {
				t.Fatalf("long transfer %d (in flight when %s got SIGTERM): %v (sent %d, got back %d)", j, r.Name, res.Err, res.Sent, res.Received)
			}
		}
		otherAfter := metricOf(t, other, "ferry_agent_streams_total", map[string]string{"result": "ok"})
		t.Logf("%s drained and exited 0, %s after SIGTERM; %d long transfer(s) finished intact; %s served %v new streams meanwhile",
			r.Name, took.Round(time.Millisecond), len(longs), other.Name, otherAfter-otherBefore)
		if otherAfter <= otherBefore {
			t.Errorf("%s served no new stream while %s drained", other.Name, r.Name)
		}
		if n := countFrom(r.Proc.Log, lines, reLongDone); n == 0 {
			t.Fatalf("no long transfer went through %s: the test proved nothing", r.Name)
		} else {
			t.Logf("%d of the long transfers ran through %s", n, r.Name)
		}
		if n := countFrom(r.Proc.Log, lines, reGraceExpire); n > 0 {
			t.Errorf("%s: shutdown grace expired: its streams did not end by themselves", r.Name)
		}
		restart := time.Now()
		startAgentNode(t, tr, r)
		d := both("both replicas online again")
		t.Logf("%s restarted; both replicas online after %s (%s after the start)", r.Name, d.Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))
	}
	loop.check(t)
}

func metricOf(t *testing.T, a *testutil.AgentNode, name string, labels map[string]string) float64 {
	t.Helper()
	body, err := a.MetricsText()
	if err != nil {
		t.Fatalf("%s /metrics: %v", a.Name, err)
	}
	return testutil.Metric(body, name, labels)
}

func countFrom(l *testutil.Log, from int, re *regexp.Regexp) int {
	n := 0
	for _, s := range l.Lines()[from:] {
		if re.MatchString(s) {
			n++
		}
	}
	return n
}
