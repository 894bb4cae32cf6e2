package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Settings say what a run measures and how long each measurement lasts.
type Settings struct {
	Self       string        // this executable, re-run for the sink and forwarders
	AgentBin   string        // ferry-agent
	GatewayBin string        // ferry-gateway
	Dir        string        // work directory: configs, data, logs
	Duration   time.Duration // of each timed measurement
	Reps       int           // repetitions of each timed measurement (medians are reported)
	Conns      []int         // connection counts of the throughput tests
	Workers    int           // concurrent workers of the parallel connection-rate test
	Bulk       int           // bulk uploads behind the latency probe
	IdleConns  []int         // idle connection counts held for the memory figures, ascending
	FerryHA    int           // the agent's ha_connections
	Paths      []string      // which paths to measure, of AllPaths
	Settle     time.Duration // quiet time before reading idle RSS
	Tests      []string      // which phases to run, of AllTests
	Version    string        // of the code measured, for the JSON
	Log        io.Writer     // progress lines

	// The wan test: each path of WANPaths through a delay line of each
	// profile.
	WAN         []Profile
	WANConns    []int         // connection counts
	WANDuration time.Duration // of each timed measurement over a line
	WANReps     int
	// FerryMaxWindow is Ferry's largest stream window in bytes: the WAN
	// table prints the bound it sets, window per round trip, per stream.
	FerryMaxWindow int64

	// The stall test (Ferry only, one tunnel): a fast download and upload
	// beside StallDown connections whose clients never read, and beside
	// StallUp connections whose targets never read, over each of
	// StallLines (Loopback: none).
	StallDown  []int
	StallUp    []int
	StallLines []Profile
	// StallWait bounds every wait of the stall test: for the stalled
	// connections to fill, for a fast transfer beyond its length, for the
	// streams to be freed after the resets, for the echo after.
	StallWait time.Duration
}

// The phases of a run, in the order they run.
const (
	TestThroughput = "throughput" // bulk transfers; also idle and peak RSS, CPU per GB
	TestRate       = "rate"       // new connections
	TestLatency    = "latency"    // 1-byte echo under bulk load
	TestIdle       = "idle"       // RSS holding idle connections
	TestWAN        = "wan"        // throughput through delay lines
	TestStall      = "stall"      // fast streams beside stalled readers, and the resets
)

// AllTests are the phases ferry-bench knows, in the order they run.
var AllTests = []string{TestThroughput, TestRate, TestLatency, TestIdle, TestWAN, TestStall}

// LoopbackTests are the phases of a run on loopback alone, ferry-bench's
// default; `make bench` adds the wan and stall tests.
var LoopbackTests = []string{TestThroughput, TestRate, TestLatency, TestIdle}

// DefaultSettings are ferry-bench's defaults: the loopback phases (about
// five minutes), with the wan and stall tests set up as `make bench` runs
// them once they are added to Tests.
func DefaultSettings() Settings {
	wan, _ := ParseProfiles("50ms,50ms@1gbit,150ms,150ms@1gbit")
	stallOn, _ := ParseProfiles("loopback,50ms")
	return Settings{
		WAN:            wan,
		WANConns:       []int{1, 8},
		WANDuration:    10 * time.Second,
		WANReps:        1,
		FerryMaxWindow: 32 << 20,
		StallDown:      []int{32, 128},
		StallUp:        []int{32},
		StallLines:     stallOn,
		StallWait:      5 * time.Second,

		Duration:  2 * time.Second,
		Reps:      3,
		Conns:     []int{1, 8, 64},
		Workers:   32,
		Bulk:      8,
		IdleConns: []int{1000, 10000},
		FerryHA:   1,
		Paths:     slices.Clone(AllPaths),
		Settle:    time.Second,
		Tests:     slices.Clone(LoopbackTests),
		Log:       io.Discard,
	}
}

// Validate reports the first bad setting.
func (s Settings) Validate() error {
	switch {
	case s.Duration < 50*time.Millisecond:
		return errors.New("duration must be at least 50ms")
	case s.Reps < 1:
		return errors.New("reps must be at least 1")
	case len(s.Conns) == 0:
		return errors.New("no connection counts for the throughput tests")
	case s.Workers < 1 || s.Bulk < 1:
		return errors.New("workers and bulk must be at least 1")
	case !slices.IsSorted(s.IdleConns):
		return errors.New("idle connection counts must be ascending")
	case s.FerryHA < 1:
		return errors.New("ferry ha_connections must be at least 1")
	case slices.Contains(s.Tests, TestWAN) && (len(s.WANConns) == 0 || s.WANReps < 1 || s.WANDuration < 50*time.Millisecond):
		return errors.New("the wan test needs connection counts, at least one rep and a duration of at least 50ms")
	case s.FerryMaxWindow < 1:
		return errors.New("ferry max window must be positive")
	case slices.Contains(s.Tests, TestStall) && len(s.StallLines) == 0:
		return errors.New("the stall test needs at least one line (loopback or a profile)")
	case slices.Contains(s.Tests, TestStall) && s.StallWait < 100*time.Millisecond:
		return errors.New("the stall wait must be at least 100ms")
	}
	if slices.Contains(s.Tests, TestStall) && !slices.Contains(s.Paths, PathFerry) {
		return errors.New("the stall test measures the ferry path: add it to the paths")
	}
	for _, p := range s.Paths {
		if !slices.Contains(AllPaths, p) {
			return fmt.Errorf("unknown path %q (known: %s)", p, strings.Join(AllPaths, ", "))
		}
	}
	for _, t := range s.Tests {
		if !slices.Contains(AllTests, t) {
			return fmt.Errorf("unknown test %q (known: %s)", t, strings.Join(AllTests, ", "))
		}
	}
	if slices.Contains(s.Paths, PathFerry) && (s.AgentBin == "" || s.GatewayBin == "") {
		return errors.New("the ferry path needs the agent and gateway binaries")
	}
	return nil
}

// Results are every figure of a run, as the JSON file holds them.
type Results struct {
	Version  string    `json:"version,omitempty"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Settings struct {
		DurationSeconds float64  `json:"duration_seconds"`
		Reps            int      `json:"reps"`
		Conns           []int    `json:"conns"`
		Workers         int      `json:"workers"`
		Bulk            int      `json:"bulk"`
		IdleConns       []int    `json:"idle_conns"`
		FerryHA         int      `json:"ferry_ha_connections"`
		WAN             []string `json:"wan,omitempty"`
		WANConns        []int    `json:"wan_conns,omitempty"`
		WANSeconds      float64  `json:"wan_duration_seconds,omitempty"`
		WANReps         int      `json:"wan_reps,omitempty"`
		FerryMaxWindow  int64    `json:"ferry_max_window_bytes"`
		StallDown       []int    `json:"stall_down,omitempty"`
		StallUp         []int    `json:"stall_up,omitempty"`
		StallLines      []string `json:"stall_lines,omitempty"`
		StallWait       float64  `json:"stall_wait_seconds,omitempty"`
	} `json:"settings"`
	Paths []string `json:"paths"`
	// Figures maps path → figure key → value (units in the key or the
	// table; MB = 10^6 bytes, MiB/KiB = 2^20/2^10 bytes).
	Figures map[string]map[string]float64 `json:"figures"`
	// Spread maps path → figure key → (max-min)/median over the reps of a
	// repeated figure: how far to trust a difference between two runs.
	Spread  map[string]map[string]float64 `json:"spread"`
	Targets []TargetResult                `json:"targets"`
	Runs    []Sample                      `json:"runs"`
	// Errors maps a path to why it failed; a failed path makes the run fail.
	Errors  map[string]string `json:"errors,omitempty"`
	Corrupt bool              `json:"corrupt"`
	Notes   []string          `json:"notes,omitempty"`
	// WAN are the wan test's profiles and their physical limits; its
	// figures are in Figures, keyed wan_PROFILE_tput_DIR_CONNS.
	WAN []WANProfile `json:"wan,omitempty"`
	// Stall is the stall test, one entry per line and stalled set; its
	// judged figures are also in Figures["ferry"], keyed stall_….
	Stall []StallResult `json:"stall,omitempty"`
}

// Sample is one timed measurement.
type Sample struct {
	Path       string  `json:"path"`
	Test       string  `json:"test"`
	Rep        int     `json:"rep"`
	Conns      int     `json:"conns,omitempty"`
	Bytes      int64   `json:"bytes,omitempty"`
	Ops        int     `json:"ops,omitempty"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"` // of the path's processes
	Value      float64 `json:"value"`       // MB/s or connections/s
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	MemTotal  string `json:"mem_total"`
}

// Failed reports whether the run must exit non-zero.
func (r *Results) Failed() bool { return r.Corrupt || len(r.Errors) > 0 }

func readMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if sm := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindStringSubmatch(string(b)); sm != nil {
			m.CPUModel = strings.TrimSpace(sm[1])
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if sm := regexp.MustCompile(`(?m)^MemTotal:\s*(.+)$`).FindStringSubmatch(string(b)); sm != nil {
			m.MemTotal = strings.TrimSpace(sm[1])
		}
	}
	return m
}

// runner holds a run's state.
type runner struct {
	s     Settings
	pat   *Pattern
	res   *Results
	paths []Path
	dead  map[string]bool // paths that could not start: skipped from then on

	tput    map[string]map[string][]float64 // path → figure → per-rep values
	idleRSS map[string][2][]float64         // path → in/out → per-start RSS
	cpu     map[string]float64              // path → CPU seconds over the throughput tests
	moved   map[string]int64                // path → bytes over the throughput tests
	lat     map[string]map[string][]time.Duration
	rate    map[string]map[string][]float64
}

// SinkCommand is the hidden ferry-bench subcommand that runs the sink.
const SinkCommand = "_sink"

var reSinkListening = regexp.MustCompile(`sink listening addr=(\S+)`)

// Run measures every path and returns the figures. It returns an error only
// when it could not measure at all (no sink); failed paths and corrupted
// data are in the results (see Results.Failed).
func Run(ctx context.Context, s Settings) (*Results, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	r := &runner{
		s: s, pat: NewPattern(), dead: map[string]bool{},
		res:     &Results{Version: s.Version, Started: start.UTC(), Machine: readMachine(), Paths: s.Paths, Figures: map[string]map[string]float64{}, Spread: map[string]map[string]float64{}, Errors: map[string]string{}},
		tput:    map[string]map[string][]float64{},
		idleRSS: map[string][2][]float64{},
		cpu:     map[string]float64{},
		moved:   map[string]int64{},
		lat:     map[string]map[string][]time.Duration{},
		rate:    map[string]map[string][]float64{},
	}
	rs := &r.res.Settings
	rs.DurationSeconds, rs.Reps, rs.Conns, rs.Workers, rs.Bulk, rs.IdleConns, rs.FerryHA =
		s.Duration.Seconds(), s.Reps, s.Conns, s.Workers, s.Bulk, s.IdleConns, s.FerryHA
	rs.FerryMaxWindow = s.FerryMaxWindow
	if slices.Contains(s.Tests, TestWAN) {
		rs.WAN, rs.WANConns, rs.WANSeconds, rs.WANReps = profileNames(s.WAN), s.WANConns, s.WANDuration.Seconds(), s.WANReps
	}
	if slices.Contains(s.Tests, TestStall) {
		rs.StallDown, rs.StallUp, rs.StallLines, rs.StallWait = s.StallDown, s.StallUp, profileNames(s.StallLines), s.StallWait.Seconds()
	}
	for _, p := range s.Paths {
		r.res.Figures[p] = map[string]float64{}
		r.res.Spread[p] = map[string]float64{}
	}

	// One sink process with a port per path: each path's connections to
	// the sink then have their own ephemeral-port space, so the TIME_WAIT
	// sockets one path's connection-rate test leaves cannot starve another.
	sink, err := StartChild("sink", filepath.Join(s.Dir, "sink.log"), ChildEnv(), s.Self, SinkCommand, "-listen", "127.0.0.1:0", "-ports", fmt.Sprint(len(s.Paths)))
	if err != nil {
		return nil, err
	}
	defer sink.Stop(stopGrace)
	m, err := sink.WaitLog(reSinkListening, startTimeout)
	if err != nil {
		return nil, err
	}
	sinkAddrs := strings.Split(m[1], ",")
	if len(sinkAddrs) != len(s.Paths) {
		return nil, fmt.Errorf("sink listens on %d ports, want %d", len(sinkAddrs), len(s.Paths))
	}
	maxStreams := 1024
	if n := len(s.IdleConns); n > 0 {
		maxStreams = max(maxStreams, 2*s.IdleConns[n-1])
	}
	for i, name := range s.Paths {
		sinkAddr := sinkAddrs[i]
		var p Path
		switch name {
		case PathDirect:
			p = &directPath{sink: sinkAddr, self: s.Self, dir: s.Dir}
		case PathTCPFwd, PathTLSFwd:
			p = &fwdPath{name: name, self: s.Self, dir: s.Dir, sink: sinkAddr, tls: name == PathTLSFwd}
		case PathFerry:
			p = &ferryPath{agentBin: s.AgentBin, gatewayBin: s.GatewayBin, self: s.Self, dir: s.Dir, sink: sinkAddr, ha: s.FerryHA, maxStreams: maxStreams}
		}
		r.paths = append(r.paths, p)
	}
	defer func() {
		for _, p := range r.paths {
			if err := p.Stop(); err != nil && !r.dead[p.Name()] {
				r.pathErr(p.Name(), fmt.Errorf("stop: %w", err))
			}
		}
	}()

	loopback := slices.ContainsFunc(s.Tests, func(t string) bool { return slices.Contains(LoopbackTests, t) })
	if slices.Contains(s.Tests, TestThroughput) {
		r.throughputPhase(ctx)
	} else if loopback {
		r.startFresh(ctx)
	}
	if slices.Contains(s.Tests, TestRate) {
		r.ratePhase(ctx)
	}
	if slices.Contains(s.Tests, TestLatency) {
		r.latencyPhase(ctx)
	}
	if slices.Contains(s.Tests, TestIdle) {
		r.idlePhase(ctx)
	}
	if slices.Contains(s.Tests, TestWAN) {
		r.wanPhase(ctx)
	}
	if slices.Contains(s.Tests, TestStall) {
		r.stallPhase(ctx, sinkAddrs[slices.Index(s.Paths, PathFerry)])
	}
	if sink.Exited() {
		r.res.Errors["sink"] = "the sink process died; its log:\n" + sink.Tail(20)
	}
	r.figures()
	r.res.Seconds = time.Since(start).Seconds()
	return r.res, ctx.Err()
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.s.Log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// pathErr records that a path failed; the run will exit non-zero.
func (r *runner) pathErr(path string, err error) {
	if errors.Is(err, ErrCorrupt) {
		r.res.Corrupt = true
	}
	msg := err.Error()
	if old := r.res.Errors[path]; old != "" {
		msg = old + "; " + msg
	}
	r.res.Errors[path] = msg
	r.logf("[%s] FAILED: %v", path, err)
}

// live are the paths still being measured.
func (r *runner) live(ctx context.Context) []Path {
	if ctx.Err() != nil {
		return nil
	}
	var out []Path
	for _, p := range r.paths {
		if !r.dead[p.Name()] {
			out = append(out, p)
		}
	}
	return out
}

func (r *runner) startFresh(ctx context.Context) {
	for _, p := range r.live(ctx) {
		if err := p.Start(ctx); err != nil {
			r.pathErr(p.Name(), fmt.Errorf("start: %w", err))
			r.dead[p.Name()] = true
			p.Stop()
		}
	}
}

// cpuOf sums the CPU time of a path's processes.
func cpuOf(p Path) time.Duration {
	var t time.Duration
	for _, c := range p.Procs() {
		if s, err := c.Sample(); err == nil {
			t += s.CPU
		}
	}
	return t
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func (r *runner) add(path, key string, v float64) {
	if r.tput[path] == nil {
		r.tput[path] = map[string][]float64{}
	}
	r.tput[path][key] = append(r.tput[path][key], v)
}

// throughputPhase: for each connection count, fresh processes, their idle
// RSS, then upload and download repeated, then their peak RSS.
func (r *runner) throughputPhase(ctx context.Context) {
	for _, conns := range r.s.Conns {
		r.startFresh(ctx)
		time.Sleep(r.s.Settle)
		for _, p := range r.live(ctx) {
			for i, c := range p.Procs() {
				if s, err := c.Sample(); err == nil {
					v := r.idleRSS[p.Name()]
					v[i] = append(v[i], mib(s.RSS))
					r.idleRSS[p.Name()] = v
				}
			}
		}
		for rep := range r.s.Reps {
			for _, p := range r.live(ctx) {
				for _, up := range []bool{true, false} {
					r.throughput(p, conns, up, rep)
				}
			}
		}
		for _, p := range r.live(ctx) {
			for i, c := range p.Procs() {
				s, err := c.Sample()
				if err != nil {
					r.pathErr(p.Name(), err)
					continue
				}
				r.res.Figures[p.Name()][fmt.Sprintf("hwm_%d_%s_mib", conns, side(i))] = mib(s.HWM)
			}
		}
	}
}

func side(i int) string { return [...]string{"in", "out"}[i] }

func (r *runner) throughput(p Path, conns int, up bool, rep int) {
	dir, test := "down", fmt.Sprintf("tput_down_%d", conns)
	if up {
		dir, test = "up", fmt.Sprintf("tput_up_%d", conns)
	}
	x, err := r.transfer(p, conns, up, r.s.Duration, time.Now().Add(r.s.Duration+transferSlack))
	if err != nil {
		r.pathErr(p.Name(), fmt.Errorf("%s: %w", test, err))
		return
	}
	r.add(p.Name(), test, x.mbps)
	r.cpu[p.Name()] += x.cpu
	r.moved[p.Name()] += x.bytes
	r.res.Runs = append(r.res.Runs, Sample{Path: p.Name(), Test: test, Rep: rep, Conns: conns, Bytes: x.bytes, Seconds: x.secs, CPUSeconds: x.cpu, Value: x.mbps})
	cpuNote := ""
	if len(p.Procs()) > 0 && x.bytes > 0 {
		cpuNote = fmt.Sprintf(", path CPU %.2f s/GB", x.cpu/(float64(x.bytes)/1e9))
	}
	r.logf("[%s] throughput %s %d conn rep %d: %.1f MB/s%s", p.Name(), dir, conns, rep+1, x.mbps, cpuNote)
}

// errConnect marks a transfer that failed before it started: a connection
// through the path, or the sink's answer to its request, did not come.
var errConnect = errors.New("connect")

// transferSlack is how much longer than its length a throughput
// measurement may take (to connect, and to drain what is in flight) before
// the path fails: a bound, so that a path that deadlocks cannot hang the
// bench.
const transferSlack = 2 * time.Minute

// xfer is one timed bulk transfer.
type xfer struct {
	bytes int64   // pattern bytes moved and verified
	secs  float64 // from the start until the last connection's end was confirmed
	cpu   float64 // CPU seconds of the path's processes meanwhile
	mbps  float64
}

// transfer prepares conns uploads or downloads through p (each proven by
// the sink's answer), then runs them for dur, every byte checked. With a
// deadline (non-zero), preparing and running end by it: past it the error
// wraps os.ErrDeadlineExceeded and the bytes verified so far are in the
// result.
func (r *runner) transfer(p Path, conns int, up bool, dur time.Duration, deadline time.Time) (xfer, error) {
	var (
		ups   []*Upload
		downs []*Download
		cerr  error
	)
	for range conns {
		off := rand.Int64()
		prepBy := time.Now().Add(dialTimeout)
		if !deadline.IsZero() && deadline.Before(prepBy) {
			prepBy = deadline
		}
		if up {
			u, err := prepareUpload(p.Addr(), off, prepBy)
			if err != nil {
				cerr = err
				break
			}
			ups = append(ups, u)
		} else {
			d, err := prepareDownload(p.Addr(), off, dur, prepBy)
			if err != nil {
				cerr = err
				break
			}
			downs = append(downs, d)
		}
	}
	if cerr != nil {
		for _, u := range ups {
			u.Close()
		}
		for _, d := range downs {
			d.Close()
		}
		return xfer{}, fmt.Errorf("%w: %w", errConnect, cerr)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	done := func(n int64, err error) {
		mu.Lock()
		total += n
		if err != nil {
			errs = append(errs, err)
		}
		mu.Unlock()
		wg.Done()
	}
	cpu0 := cpuOf(p)
	start := time.Now()
	until := start.Add(dur)
	runBy := deadline
	if runBy.IsZero() {
		runBy = start.Add(10 * time.Minute)
	}
	wg.Add(conns)
	for _, u := range ups {
		go func() {
			n, err := u.RunBy(r.pat, until, deadline)
			if err != nil {
				n = 0 // written, but the sink never confirmed them
			}
			done(n, err)
		}()
	}
	for _, d := range downs {
		go func() {
			buf := make([]byte, chunk+trailerLen)
			done(d.RunBy(r.pat, buf, runBy))
		}()
	}
	wg.Wait()
	x := xfer{bytes: total, secs: time.Since(start).Seconds(), cpu: (cpuOf(p) - cpu0).Seconds()}
	x.mbps = float64(total) / 1e6 / x.secs
	if len(errs) > 0 {
		return x, fmt.Errorf("%d of %d connections failed, first: %w", len(errs), conns, errs[0])
	}
	return x, nil
}

// ratePhase: new connections (open, 1-byte echo, close), one at a time
// and with Workers at once.
func (r *runner) ratePhase(ctx context.Context) {
	var hit []string // rates measured while conntrack dropped packets
	var dropped uint64
	for rep := range r.s.Reps {
		for _, p := range r.live(ctx) {
			for _, workers := range []int{1, r.s.Workers} {
				test := "rate_seq"
				if workers > 1 {
					test = "rate_par"
				}
				d0, ok := conntrackDrops()
				r.connRate(p, test, workers, rep)
				if d1, _ := conntrackDrops(); ok && d1 > d0 {
					hit = append(hit, fmt.Sprintf("%s %s rep %d", p.Name(), test, rep+1))
					dropped += d1 - d0
				}
			}
		}
	}
	if len(hit) > 0 {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("the kernel's connection tracking table (net.netfilter.nf_conntrack_max = %s) was full and dropped %d packets during %s: those rates measure SYN retransmissions, not the path; raise the limit (sysctl -w net.netfilter.nf_conntrack_max=1048576) or shorten -duration, and run again",
			conntrackMax(), dropped, strings.Join(hit, ", ")))
	}
}

func (r *runner) connRate(p Path, test string, workers, rep int) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		lats  []time.Duration
		errs  []error
		until = time.Now().Add(r.s.Duration)
	)
	cpu0 := cpuOf(p)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 4096)
			var err error
			for time.Now().Before(until) {
				t0 := time.Now()
				var c *net.TCPConn
				if c, err = OpenEcho(p.Addr()); err != nil {
					break
				}
				c.Close()
				l = append(l, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, l...)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu := (cpuOf(p) - cpu0).Seconds()
	if len(errs) > 0 {
		r.pathErr(p.Name(), fmt.Errorf("%s: %d of %d workers hit an error, first: %w", test, len(errs), workers, errs[0]))
	}
	rate := float64(len(lats)) / secs
	if r.rate[p.Name()] == nil {
		r.rate[p.Name()] = map[string][]float64{}
		r.lat[p.Name()] = map[string][]time.Duration{}
	}
	r.rate[p.Name()][test] = append(r.rate[p.Name()][test], rate)
	r.lat[p.Name()][test] = append(r.lat[p.Name()][test], lats...)
	r.res.Runs = append(r.res.Runs, Sample{Path: p.Name(), Test: test, Rep: rep, Conns: workers, Ops: len(lats), Seconds: secs, CPUSeconds: cpu, Value: rate})
	slices.Sort(lats)
	r.logf("[%s] new connections, %d worker(s), rep %d: %.0f/s, p50 %.2f ms, p99 %.2f ms", p.Name(), workers, rep+1, rate, ms(pct(lats, 50)), ms(pct(lats, 99)))
}

// latencyPhase: 1-byte echo round trips on one connection while Bulk
// uploads run through the same path.
func (r *runner) latencyPhase(ctx context.Context) {
	for rep := range r.s.Reps {
		for _, p := range r.live(ctx) {
			r.latencyUnderLoad(p, rep)
		}
	}
}

func (r *runner) latencyUnderLoad(p Path, rep int) {
	const test = "lat_load"
	probe, err := OpenEcho(p.Addr())
	if err != nil {
		r.pathErr(p.Name(), fmt.Errorf("%s: open probe: %w", test, err))
		return
	}
	defer probe.Close()
	var ups []*Upload
	for range r.s.Bulk {
		u, err := PrepareUpload(p.Addr(), rand.Int64())
		if err != nil {
			r.pathErr(p.Name(), fmt.Errorf("%s: connect: %w", test, err))
			for _, u := range ups {
				u.Close()
			}
			return
		}
		ups = append(ups, u)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	// Half again the usual length: a probe waits for its answer before the
	// next, and on slow paths each takes tens of milliseconds.
	dur := r.s.Duration * 3 / 2
	start := time.Now()
	until := start.Add(dur)
	for _, u := range ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := u.Run(r.pat, until)
			mu.Lock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	// Probe from a tenth of the way in (the bulk flows are at speed) until
	// shortly before their end.
	time.Sleep(dur / 10)
	probeUntil := until.Add(-dur / 20)
	lats := make([]time.Duration, 0, 4096)
	one := make([]byte, 1)
	var perr error
	for i := 0; time.Now().Before(probeUntil); i++ {
		t0 := time.Now()
		if perr = EchoByte(probe, byte(i), one); perr != nil {
			break
		}
		lats = append(lats, time.Since(t0))
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if perr != nil {
		errs = append(errs, fmt.Errorf("probe: %w", perr))
	}
	if len(errs) > 0 {
		r.pathErr(p.Name(), fmt.Errorf("%s: %w", test, errors.Join(errs...)))
		return
	}
	if r.lat[p.Name()] == nil {
		r.lat[p.Name()] = map[string][]time.Duration{}
	}
	r.lat[p.Name()][test] = append(r.lat[p.Name()][test], lats...)
	mbps := float64(total) / 1e6 / secs
	r.res.Runs = append(r.res.Runs, Sample{Path: p.Name(), Test: test, Rep: rep, Conns: r.s.Bulk, Bytes: total, Ops: len(lats), Seconds: secs, Value: mbps})
	slices.Sort(lats)
	r.logf("[%s] 1-byte echo under %d bulk uploads (%.0f MB/s), rep %d: %d probes, p50 %.2f ms, p99 %.2f ms", p.Name(), r.s.Bulk, mbps, rep+1, len(lats), ms(pct(lats, 50)), ms(pct(lats, 99)))
}

// idlePhase: each path's processes' RSS while holding the idle connection
// counts, each connection proven end to end by one echo.
func (r *runner) idlePhase(ctx context.Context) {
	if len(r.s.IdleConns) == 0 {
		return
	}
	for _, p := range r.live(ctx) {
		if len(p.Procs()) == 0 {
			continue
		}
		r.idleConns(p)
	}
}

func (r *runner) idleConns(p Path) {
	procs := p.Procs()
	base := make([]ProcSample, len(procs))
	baseSockets := make([]int, len(procs))
	for i, c := range procs {
		s, err := c.Sample()
		if err != nil {
			r.pathErr(p.Name(), err)
			return
		}
		base[i] = s
		baseSockets[i], _ = CountSockets(c.PID())
	}
	var conns []*net.TCPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		r.waitSockets(p, baseSockets)
	}()
	fig := r.res.Figures[p.Name()]
	for _, n := range r.s.IdleConns {
		t0 := time.Now()
		more, err := openIdle(p.Addr(), n-len(conns), r.s.Workers)
		conns = append(conns, more...)
		if err != nil {
			note := fmt.Sprintf("%s: reached %d of %d idle connections: %v", p.Name(), len(conns), n, err)
			r.res.Notes = append(r.res.Notes, note)
			r.logf("[%s] %s", p.Name(), note)
		}
		fig[fmt.Sprintf("idle_%d_reached", n)] = float64(len(conns))
		if len(conns) == 0 {
			return
		}
		time.Sleep(r.s.Settle)
		line := fmt.Sprintf("[%s] %d idle connections (opened in %s):", p.Name(), len(conns), time.Since(t0).Round(time.Millisecond))
		for i, c := range procs {
			s, err := c.Sample()
			if err != nil {
				r.pathErr(p.Name(), err)
				return
			}
			per := float64(s.RSS-base[i].RSS) / float64(len(conns)) / 1024
			fig[fmt.Sprintf("rss_%d_%s_mib", n, side(i))] = mib(s.RSS)
			fig[fmt.Sprintf("perconn_%d_%s_kib", n, side(i))] = per
			line += fmt.Sprintf(" %s %.1f MiB (%+.1f KiB each)", c.Name, mib(s.RSS), per)
		}
		r.logf("%s", line)
		if err != nil {
			return
		}
	}
}

// openIdle opens n echo connections with workers at once; on the first
// error it stops and returns what it has.
func openIdle(addr string, n, workers int) ([]*net.TCPConn, error) {
	var (
		mu    sync.Mutex
		out   = make([]*net.TCPConn, 0, n)
		first error
		next  int
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= n || first != nil {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				c, err := OpenEcho(addr)
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
				} else {
					out = append(out, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out, first
}

// waitSockets waits until the path's processes have let go of the
// connections.
func (r *runner) waitSockets(p Path, base []int) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for i, c := range p.Procs() {
			n, err := CountSockets(c.PID())
			if err != nil {
				return
			}
			if n > base[i]+16 {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("%s: sockets still held 60s after closing the idle connections", p.Name()))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the p-th percentile (nearest rank) of sorted values.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *runner) spread(path, key string, v []float64) {
	if m := median(v); len(v) > 1 && m > 0 {
		r.res.Spread[path][key] = (slices.Max(v) - slices.Min(v)) / m
	}
}

// figures turns the samples into the reported figures.
func (r *runner) figures() {
	for _, p := range r.paths {
		name := p.Name()
		fig := r.res.Figures[name]
		for k, v := range r.tput[name] {
			fig[k] = median(v)
			r.spread(name, k, v)
		}
		if len(p.Procs()) > 0 && r.moved[name] > 0 {
			fig["cpu_s_per_gb"] = r.cpu[name] / (float64(r.moved[name]) / 1e9)
		}
		for i, v := range r.idleRSS[name] {
			if len(v) > 0 {
				fig[fmt.Sprintf("rss_idle_%s_mib", side(i))] = median(v)
			}
		}
		for test, v := range r.rate[name] {
			fig[test] = median(v)
			r.spread(name, test, v)
		}
		for test, l := range r.lat[name] {
			slices.Sort(l)
			if len(l) > 0 {
				fig[test+"_p50_ms"] = ms(pct(l, 50))
				fig[test+"_p99_ms"] = ms(pct(l, 99))
			}
		}
	}
	r.res.Targets = evalTargets(r.res, r.s)
}
