// Command ferry-soak is Ferry's soak test (make soak): connection churn with
// random sizes and SHA-256-verified echoes through a pair of gateway nodes
// sharing a store and two agent replicas sharing a token, while the gateway
// nodes and the replicas are restarted one at a time on a schedule. It prints
// totals and exits non-zero when any byte was lost or corrupted, a
// connection failed other than on a node that was deliberately down, or a
// process did not stop cleanly.
//
// It needs Linux and root (the agents resolve the nodes' shared name through
// a private /etc/hosts, see internal/testutil/cluster.go). The store is the
// PostgreSQL named by FERRY_TEST_POSTGRES_DSN (a fresh database, dropped
// afterwards), else a SQLite file the nodes share.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminclient"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

func main() { os.Exit(run()) }

type options struct {
	duration   time.Duration
	workers    int
	maxSize    int
	interval   time.Duration
	agentBin   string
	gatewayBin string
	dir        string
	keep       bool
}

func run() int {
	var o options
	def := 5 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ferry-soak: SOAK_DURATION=%q: %v\n", v, err)
			return 2
		}
		def = d
	}
	flag.DurationVar(&o.duration, "duration", def, "how long the churn runs (env SOAK_DURATION)")
	flag.IntVar(&o.workers, "workers", 4, "concurrent client connections")
	flag.IntVar(&o.maxSize, "max-size", 4<<20, "largest transfer in bytes (sizes are log-uniform from 1 byte)")
	flag.DurationVar(&o.interval, "interval", 2*time.Second, "quiet time between two restarts")
	flag.StringVar(&o.agentBin, "agent-bin", "", "ferry-agent binary (default: go build)")
	flag.StringVar(&o.gatewayBin, "gateway-bin", "", "ferry-gateway binary (default: go build)")
	flag.StringVar(&o.dir, "dir", "", "work directory for configs and logs (default: a temporary one, removed on success)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory even on success")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := newSoak(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-soak:", err)
		return 2
	}
	ok := s.run(ctx)
	if ok && !o.keep && s.tmpDir {
		os.RemoveAll(s.dir)
	} else {
		fmt.Printf("work directory (configs, logs): %s\n", s.dir)
	}
	if !ok {
		return 1
	}
	return 0
}

// counters of the client side.
type counters struct {
	opened, succeeded, failedDown, failedUnexpected, corrupt, bytes atomic.Int64
}

type soak struct {
	o      options
	dir    string
	tmpDir bool
	start  time.Time

	store      *testutil.SharedStore
	nodes      []*testutil.GatewayNode
	nodeNames  []string
	apis       []*adminclient.Client
	agents     []*testutil.AgentNode
	adminToken string
	echo       net.Listener
	down       []atomic.Bool // node deliberately down: its failures are expected

	c counters

	mu         sync.Mutex // guards the fields below and the nodes' and agents' Proc
	errs       []string   // unexpected failures, the first ones
	fatal      []string   // process and recovery failures
	peakRSS    map[string]int64
	tunnelsOK  float64 // ferry_agent_tunnel_connects_total over all agent runs
	tunnelsErr float64
	events     map[string][]time.Duration // restart kind → drain durations
	recovery   map[string][]time.Duration
}

const agentName = "soak"

func newSoak(o options) (*soak, error) {
	s := &soak{o: o, dir: o.dir, peakRSS: map[string]int64{}, events: map[string][]time.Duration{}, recovery: map[string][]time.Duration{}}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "ferry-soak-")
		if err != nil {
			return nil, err
		}
		s.dir, s.tmpDir = d, true
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "logs"), 0o700); err != nil {
		return nil, err
	}
	if err := testutil.CheckHostsRemap(s.dir); err != nil {
		return nil, fmt.Errorf("cannot run the gateway pair here: %w", err)
	}
	return s, nil
}

func (s *soak) logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

func (s *soak) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.logf("FAIL: %s", msg)
	s.mu.Lock()
	s.fatal = append(s.fatal, msg)
	s.mu.Unlock()
}

func (s *soak) run(ctx context.Context) bool {
	s.start = time.Now()
	defer s.shutdown()
	if err := s.setUp(ctx); err != nil {
		s.fail("set-up: %v", err)
		s.report()
		return false
	}
	churnCtx, stopChurn := context.WithTimeout(ctx, s.o.duration)
	defer stopChurn()
	s.logf("churn for %s: %d workers, sizes 1 B to %d B, through %s and %s", s.o.duration, s.o.workers, s.o.maxSize, s.nodeNames[0], s.nodeNames[1])

	var wg sync.WaitGroup
	for w := range s.o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(churnCtx, uint64(w))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.sampleLoop(churnCtx)
	}()
	s.chaos(churnCtx, stopChurn)
	wg.Wait()
	s.collectAgentCounters()
	s.samplePeaks()
	return s.report()
}

func (s *soak) setUp(ctx context.Context) error {
	var err error
	if s.o.agentBin == "" || s.o.gatewayBin == "" {
		s.logf("building ferry-agent and ferry-gateway")
		if s.o.agentBin, s.o.gatewayBin, err = build(filepath.Join(s.dir, "bin")); err != nil {
			return err
		}
	}
	s.echo, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go serveEcho(s.echo)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.store, err = testutil.NewSharedStore(sctx, s.dir, os.Getenv(testutil.EnvPostgresDSN))
	if err != nil {
		return err
	}
	cert, key, err := testutil.WriteCert(s.dir, testutil.GatewayHost)
	if err != nil {
		return err
	}
	hosts, err := testutil.WriteHosts(s.dir, testutil.GatewayHost, testutil.NodeIPs)
	if err != nil {
		return err
	}
	var tok [16]byte
	for i := range tok {
		tok[i] = "abcdefghijklmnopqrstuvwxyz012345"[rand.IntN(32)]
	}
	s.adminToken = "adm-" + string(tok[:])
	s.nodeNames = []string{"gw-a", "gw-b"}
	s.down = make([]atomic.Bool, 2)
	for i, ip := range testutil.NodeIPs {
		port := "0"
		if i > 0 {
			port = s.nodes[0].TunnelPort()
		}
		n := &testutil.GatewayNode{
			Name: s.nodeNames[i], Bin: s.o.gatewayBin, DataDir: filepath.Join(s.dir, s.nodeNames[i]),
			Tunnel: ip + ":" + port, Admin: "127.0.0.1:0", CertFile: cert, KeyFile: key,
			Store: s.store, AdminToken: s.adminToken,
			Conns:   []testutil.StaticConnection{{Name: "echo", Agent: agentName, Target: s.echo.Addr().String(), Listen: ip + ":0"}},
			LogFile: filepath.Join(s.dir, "logs", s.nodeNames[i]+".log"),
		}
		s.nodes = append(s.nodes, n)
		if err := s.startNode(i); err != nil {
			return err
		}
	}
	s.logf("gateway nodes up: %s tunnel %s, %s tunnel %s; store: %s", s.nodes[0].Name, s.nodes[0].TunnelAddr, s.nodes[1].Name, s.nodes[1].TunnelAddr, s.store)
	actx, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	created, err := s.apis[0].CreateAgent(actx, agentName, "ferry-soak replicas")
	if err != nil {
		return fmt.Errorf("create agent: %w", err)
	}
	for i := range 2 {
		name := fmt.Sprintf("agent-%d", i+1)
		s.agents = append(s.agents, &testutil.AgentNode{
			Name: name, Bin: s.o.agentBin, Dir: filepath.Join(s.dir, name),
			URL:   "wss://" + testutil.GatewayHost + ":" + s.nodes[0].TunnelPort() + "/v1/tunnel",
			Token: created.Token, CAFile: cert, Allow: []string{s.echo.Addr().String()}, HostsFile: hosts,
			LogFile: filepath.Join(s.dir, "logs", name+".log"),
		})
		if err := s.startAgent(i); err != nil {
			return err
		}
	}
	d, err := s.waitRecovered(30 * time.Second)
	if err != nil {
		return err
	}
	s.logf("agent replicas up with a tunnel to each node after %s", d.Round(time.Millisecond))
	return nil
}

func (s *soak) startNode(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[i]
	if err := n.Start(); err != nil {
		return err
	}
	api := adminclient.New("http://"+n.AdminAddr, s.adminToken, nil)
	if len(s.apis) <= i {
		s.apis = append(s.apis, api)
	} else {
		s.apis[i] = api
	}
	return nil
}

func (s *soak) startAgent(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agents[i].Start()
}

// waitRecovered waits until every agent has each tunnel slot back on its
// own node and every node's API shows a tunnel from each replica.
func (s *soak) waitRecovered(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		ok, detail := s.recovered()
		if ok {
			return time.Since(start), nil
		}
		last = detail
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("not recovered within %s: %s", timeout, last)
}

func (s *soak) recovered() (bool, string) {
	for _, a := range s.agents {
		if ok, detail := a.Spread(s.nodeNames); !ok {
			return false, detail
		}
	}
	for i, api := range s.apis {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, err := api.GetAgent(ctx, agentName)
		cancel()
		if err != nil {
			return false, s.nodeNames[i] + ": " + err.Error()
		}
		inst := map[string]bool{}
		for _, t := range rec.Tunnels {
			if !t.Draining {
				inst[t.Instance] = true
			}
		}
		if len(inst) < len(s.agents) {
			return false, fmt.Sprintf("%s sees live tunnels from %d of %d replicas", s.nodeNames[i], len(inst), len(s.agents))
		}
	}
	return true, ""
}

// worker opens connections one after the other until ctx ends.
func (s *soak) worker(ctx context.Context, id uint64) {
	rng := rand.New(rand.NewPCG(id, uint64(time.Now().UnixNano())))
	for ctx.Err() == nil {
		node := rng.IntN(len(s.nodes))
		wasDown := s.down[node].Load()
		s.mu.Lock()
		addr := s.nodes[node].ConnAddrs["echo"]
		s.mu.Unlock()
		size := int(math.Exp(rng.Float64() * math.Log(float64(s.o.maxSize))))
		o := testutil.EchoOpts{Size: size, Seed: rng.Uint64(), Chunk: 1 + rng.IntN(128<<10), Timeout: 60 * time.Second}
		if rng.IntN(2) == 0 {
			o.CloseDelay = time.Duration(rng.IntN(20_000)) * time.Microsecond
		}
		res := testutil.EchoRoundTrip(addr, o)
		s.c.opened.Add(1)
		switch {
		case res.Corrupt:
			s.c.corrupt.Add(1)
			s.noteErr("CORRUPT %s via %s (%d bytes): %v", time.Now().Format("15:04:05.000"), s.nodeNames[node], size, res.Err)
		case res.Err == nil:
			s.c.succeeded.Add(1)
			s.c.bytes.Add(int64(size))
		case wasDown:
			s.c.failedDown.Add(1)
			time.Sleep(20 * time.Millisecond)
		default:
			s.c.failedUnexpected.Add(1)
			s.noteErr("%s via %s (%d bytes): %v", time.Now().Format("15:04:05.000"), s.nodeNames[node], size, res.Err)
		}
	}
}

func (s *soak) noteErr(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 20 {
		s.errs = append(s.errs, msg)
		fmt.Printf("[%6.1fs] unexpected: %s\n", time.Since(s.start).Seconds(), msg)
	}
}

// chaos restarts gateway nodes and agent replicas one at a time, waiting
// for recovery after each, until ctx ends. A failed restart ends the soak.
func (s *soak) chaos(ctx context.Context, stop context.CancelFunc) {
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.o.interval):
		}
		select {
		case <-progress.C:
			s.logf("progress: %d opened, %d verified, %d failed on a down node, %d unexpected, %d corrupt",
				s.c.opened.Load(), s.c.succeeded.Load(), s.c.failedDown.Load(), s.c.failedUnexpected.Load(), s.c.corrupt.Load())
		default:
		}
		var err error
		switch step := i % 4; step {
		case 0, 2:
			err = s.restartNode(step / 2)
		default:
			err = s.restartAgent(step / 2)
		}
		if err != nil {
			s.fail("%v", err)
			stop()
			return
		}
	}
}

func (s *soak) restartNode(i int) error {
	n := s.nodes[i]
	s.down[i].Store(true)
	defer s.down[i].Store(false)
	// Clients that chose this node before it was marked down have been
	// accepted by the SIGTERM (their transfers must finish); from here on,
	// its failures are expected.
	time.Sleep(50 * time.Millisecond)
	s.samplePeaks()
	s.logf("SIGTERM %s (run %d)", n.Name, n.Starts)
	drain, err := terminate(n.Proc, 30*time.Second)
	if err != nil {
		return err
	}
	if err := s.startNode(i); err != nil {
		return fmt.Errorf("restart %s: %w", n.Name, err)
	}
	d, err := s.waitRecovered(30 * time.Second)
	if err != nil {
		return fmt.Errorf("after restarting %s: %w", n.Name, err)
	}
	s.logf("%s drained and exited 0 in %s; restarted; agents back on both nodes after %s", n.Name, drain.Round(time.Millisecond), d.Round(time.Millisecond))
	s.mu.Lock()
	s.events["gateway"] = append(s.events["gateway"], drain)
	s.recovery["gateway"] = append(s.recovery["gateway"], d)
	s.mu.Unlock()
	return nil
}

func (s *soak) restartAgent(i int) error {
	a := s.agents[i]
	s.samplePeaks()
	s.addAgentCounters(a)
	s.logf("SIGTERM %s (run %d)", a.Name, a.Starts)
	drain, err := terminate(a.Proc, 30*time.Second)
	if err != nil {
		return err
	}
	if err := s.startAgent(i); err != nil {
		return fmt.Errorf("restart %s: %w", a.Name, err)
	}
	d, err := s.waitRecovered(30 * time.Second)
	if err != nil {
		return fmt.Errorf("after restarting %s: %w", a.Name, err)
	}
	s.logf("%s drained and exited 0 in %s; restarted; back on both nodes after %s", a.Name, drain.Round(time.Millisecond), d.Round(time.Millisecond))
	s.mu.Lock()
	s.events["agent"] = append(s.events["agent"], drain)
	s.recovery["agent"] = append(s.recovery["agent"], d)
	s.mu.Unlock()
	return nil
}

// terminate sends SIGTERM and requires exit status 0 within timeout.
func terminate(p *testutil.Process, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	code, err := p.Terminate(timeout)
	if err != nil {
		p.Kill()
		return 0, fmt.Errorf("%s: %v after SIGTERM (killed)", p.Name, err)
	}
	if code != 0 {
		return 0, fmt.Errorf("%s exited with %d after SIGTERM, want 0", p.Name, code)
	}
	return time.Since(start), nil
}

func (s *soak) addAgentCounters(a *testutil.AgentNode) {
	body, err := a.MetricsText()
	if err != nil {
		s.logf("warning: %s /metrics: %v", a.Name, err)
		return
	}
	s.mu.Lock()
	s.tunnelsOK += testutil.Metric(body, "ferry_agent_tunnel_connects_total", map[string]string{"result": "ok"})
	s.tunnelsErr += testutil.Metric(body, "ferry_agent_tunnel_connects_total", map[string]string{"result": "error"})
	s.mu.Unlock()
}

func (s *soak) collectAgentCounters() {
	for _, a := range s.agents {
		if a.Proc != nil && !a.Proc.Exited() {
			s.addAgentCounters(a)
		}
	}
}

func (s *soak) sampleLoop(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.samplePeaks()
		}
	}
}

// samplePeaks records each process's VmHWM (peak RSS since it started).
func (s *soak) samplePeaks() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var procs []*testutil.Process
	for _, n := range s.nodes {
		procs = append(procs, n.Proc)
	}
	for _, a := range s.agents {
		procs = append(procs, a.Proc)
	}
	for _, p := range procs {
		if p == nil || p.Exited() {
			continue
		}
		if st, err := testutil.ReadProcStatus(p.PID()); err == nil && st.PeakRSS > s.peakRSS[p.Name] {
			s.peakRSS[p.Name] = st.PeakRSS
		}
	}
}

func (s *soak) shutdown() {
	s.mu.Lock()
	var procs []*testutil.Process
	for _, n := range s.nodes {
		procs = append(procs, n.Proc)
	}
	for _, a := range s.agents {
		procs = append(procs, a.Proc)
	}
	s.mu.Unlock()
	for _, p := range procs {
		if p == nil || p.Exited() {
			continue
		}
		if _, err := terminate(p, 20*time.Second); err != nil {
			s.fail("at the end: %v", err)
		}
	}
	if s.echo != nil {
		s.echo.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "ferry-soak: drop the store: %v\n", err)
		}
	}
}

// report prints the totals and says whether the soak passed.
func (s *soak) report() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Println()
	fmt.Println("== ferry-soak totals ==")
	store := "none"
	if s.store != nil {
		store = s.store.Driver
	}
	fmt.Printf("duration            %s churn (%s in all), %d workers, store %s\n", s.o.duration, time.Since(s.start).Round(time.Second), s.o.workers, store)
	restarts := func(kind string) string {
		ds, rs := s.events[kind], s.recovery[kind]
		if len(ds) == 0 {
			return "0"
		}
		return fmt.Sprintf("%d (drain max %s, recovery max %s)", len(ds), maxDur(ds), maxDur(rs))
	}
	fmt.Printf("gateway restarts    %s\n", restarts("gateway"))
	fmt.Printf("agent restarts      %s\n", restarts("agent"))
	opened, ok := s.c.opened.Load(), s.c.succeeded.Load()
	down, unexpected, corrupt := s.c.failedDown.Load(), s.c.failedUnexpected.Load(), s.c.corrupt.Load()
	fmt.Printf("connections         opened %d, succeeded %d, failed %d (node deliberately down %d, unexpected %d), corrupt %d\n",
		opened, ok, down+unexpected, down, unexpected, corrupt)
	fmt.Printf("bytes verified      %s (%d B), each byte echoed and SHA-256 checked\n", mib(s.c.bytes.Load()), s.c.bytes.Load())
	starts := 0
	for _, a := range s.agents {
		starts += a.Starts
	}
	first := float64(2 * starts) // each start's first tunnel per slot
	fmt.Printf("tunnel connects     %.0f ok (%.0f reconnects beyond each start's first 2), %.0f failed attempts\n", s.tunnelsOK, math.Max(0, s.tunnelsOK-first), s.tunnelsErr)
	names := make([]string, 0, len(s.peakRSS))
	for n := range s.peakRSS {
		names = append(names, n)
	}
	sort.Strings(names)
	var rss []string
	for _, n := range names {
		rss = append(rss, n+" "+mib(s.peakRSS[n]))
	}
	fmt.Printf("peak RSS (VmHWM)    %s\n", strings.Join(rss, ", "))
	var why []string
	if corrupt > 0 {
		why = append(why, fmt.Sprintf("%d connection(s) lost or corrupted bytes", corrupt))
	}
	if unexpected > 0 {
		why = append(why, fmt.Sprintf("%d unexpected connection failure(s)", unexpected))
	}
	if ok == 0 {
		why = append(why, "no connection succeeded")
	}
	why = append(why, s.fatal...)
	if len(s.errs) > 0 {
		fmt.Println("first failures:")
		for _, e := range s.errs {
			fmt.Println("  " + e)
		}
	}
	if len(why) > 0 {
		fmt.Println("result              FAIL: " + strings.Join(why, "; "))
		return false
	}
	fmt.Println("result              PASS")
	return true
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m.Round(time.Millisecond)
}

// build compiles the two binaries into dir.
func build(dir string) (agent, gateway string, err error) {
	agent, gateway = filepath.Join(dir, "ferry-agent"), filepath.Join(dir, "ferry-gateway")
	for bin, pkg := range map[string]string{agent: "github.com/ferry-tunnel/ferry/cmd/ferry-agent", gateway: "github.com/ferry-tunnel/ferry/cmd/ferry-gateway"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return agent, gateway, nil
}

// serveEcho echoes every connection until EOF, then half-closes and waits
// for the client to close first.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			tc := c.(*net.TCPConn)
			if _, err := io.Copy(tc, tc); err != nil {
				if !errors.Is(err, net.ErrClosed) {
					tc.SetLinger(0) // pass a broken connection on as a reset
				}
				return
			}
			tc.CloseWrite()
			tc.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, tc)
		}()
	}
}
