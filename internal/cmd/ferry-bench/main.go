// Command ferry-bench measures Ferry against the limits of the machine it
// runs on (`make bench`): on loopback, the same sink is reached directly,
// through a reference TCP forwarder pair, through a reference TLS forwarder
// pair and through ferry-gateway and ferry-agent, and one table compares
// throughput, connection rate, latency under load, memory and CPU. The wan
// test (-tests wan, -wan) measures throughput through a delay line of its
// own; the stall test (-tests stall) a fast stream beside stalled readers
// in Ferry's one tunnel. See docs/performance.md.
//
// It exits 0 when every path was measured and every byte arrived intact
// (whether Ferry meets its targets is printed, not judged), 1 when a path
// failed or data was corrupted, 2 on bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/ferry-tunnel/ferry/internal/bench"
)

var version = "dev"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case bench.SinkCommand:
			os.Exit(runSink(os.Args[2:]))
		case bench.FwdCommand:
			os.Exit(runForwarder(os.Args[2:]))
		case bench.DelayCommand:
			os.Exit(runDelay(os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	s := bench.DefaultSettings()
	fs := flag.NewFlagSet("ferry-bench", flag.ContinueOnError)
	fs.StringVar(&s.AgentBin, "agent", "bin/ferry-agent", "ferry-agent binary")
	fs.StringVar(&s.GatewayBin, "gateway", "bin/ferry-gateway", "ferry-gateway binary")
	fs.DurationVar(&s.Duration, "duration", s.Duration, "length of each timed measurement")
	fs.IntVar(&s.Reps, "reps", s.Reps, "repetitions of each timed measurement (medians are reported)")
	fs.IntVar(&s.Workers, "workers", s.Workers, "concurrent workers of the parallel new-connection test")
	fs.IntVar(&s.Bulk, "bulk", s.Bulk, "bulk uploads behind the 1-byte echo probe")
	fs.IntVar(&s.FerryHA, "ferry-ha", s.FerryHA, "the agent's ha_connections (1: every stream shares one tunnel)")
	fs.DurationVar(&s.Settle, "settle", s.Settle, "quiet time before reading RSS")
	conns := fs.String("conns", joinInts(s.Conns), "connection counts of the throughput tests")
	idle := fs.String("idle-conns", joinInts(s.IdleConns), "idle connection counts held for the memory figures (\"\" to skip)")
	paths := fs.String("paths", strings.Join(s.Paths, ","), "paths to measure")
	tests := fs.String("tests", strings.Join(s.Tests, ","), "phases to run, of "+strings.Join(bench.AllTests, ",")+" (make bench runs them all; a subset for quick comparisons while tuning)")
	wan := fs.String("wan", bench.ProfileNames(s.WAN), "delay-line profiles of the wan test: RTT[@RATE], e.g. 50ms or 150ms@1gbit (\"\" for none)")
	wanConns := fs.String("wan-conns", joinInts(s.WANConns), "connection counts of the wan test")
	fs.DurationVar(&s.WANDuration, "wan-duration", s.WANDuration, "length of each timed measurement over a delay line (wan test; stall test over a line)")
	fs.IntVar(&s.WANReps, "wan-reps", s.WANReps, "repetitions of each wan measurement")
	maxWindow := fs.String("ferry-max-window", "32MiB", "Ferry's largest stream window, for the window/RTT bound printed beside the WAN figures")
	stallDown := fs.String("stall", joinInts(s.StallDown), "stall test: counts of stalled downloads (clients that never read) beside the fast streams")
	stallUp := fs.String("stall-up", joinInts(s.StallUp), "stall test: counts of stalled uploads (targets that never read)")
	stallLines := fs.String("stall-lines", bench.ProfileNames(s.StallLines), "stall test: where to run it, loopback and/or delay-line profiles")
	fs.DurationVar(&s.StallWait, "stall-wait", s.StallWait, "stall test: bound on each wait (fill, a fast transfer beyond its length, the streams freed, the echo after)")
	jsonOut := fs.String("json", "", "also write every figure to this JSON file")
	dir := fs.String("dir", "", "work directory for configs and logs (default: a temporary one, removed unless the run fails)")
	quiet := fs.Bool("quiet", false, "no progress lines, only the table")
	fs.StringVar(&s.Version, "version", version, "label of the code measured, for the table and JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if s.Conns, err = parseInts(*conns); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -conns:", err)
		return 2
	}
	if s.IdleConns, err = parseInts(*idle); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -idle-conns:", err)
		return 2
	}
	if s.WANConns, err = parseInts(*wanConns); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -wan-conns:", err)
		return 2
	}
	if s.StallDown, err = parseInts(*stallDown); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -stall:", err)
		return 2
	}
	if s.StallUp, err = parseInts(*stallUp); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -stall-up:", err)
		return 2
	}
	if s.WAN, err = bench.ParseProfiles(*wan); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -wan:", err)
		return 2
	}
	if s.StallLines, err = bench.ParseProfiles(*stallLines); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -stall-lines:", err)
		return 2
	}
	if s.FerryMaxWindow, err = parseSize(*maxWindow); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench: -ferry-max-window:", err)
		return 2
	}
	s.Paths = strings.Split(*paths, ",")
	s.Tests = strings.Split(*tests, ",")
	if s.Self, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench:", err)
		return 1
	}
	for _, b := range []*string{&s.AgentBin, &s.GatewayBin} {
		if _, err := os.Stat(*b); err != nil {
			fmt.Fprintf(os.Stderr, "ferry-bench: %v (run `make build` first, or pass -agent/-gateway)\n", err)
			return 2
		}
	}
	if !*quiet {
		s.Log = os.Stderr
	}
	if err := s.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench:", err)
		return 2
	}
	if err := raiseFileLimit(s); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench:", err)
	}
	keep := *dir != ""
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "ferry-bench-"); err != nil {
			fmt.Fprintln(os.Stderr, "ferry-bench:", err)
			return 1
		}
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench:", err)
		return 1
	}
	s.Dir = *dir

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-bench:", err)
		fmt.Fprintln(os.Stderr, "ferry-bench: logs are in", s.Dir)
		return 1
	}
	fmt.Println()
	bench.PrintTable(os.Stdout, res, s)
	if *jsonOut != "" {
		if err := bench.WriteJSON(*jsonOut, res); err != nil {
			fmt.Fprintln(os.Stderr, "ferry-bench:", err)
			return 1
		}
	}
	if res.Failed() {
		fmt.Fprintln(os.Stderr, "ferry-bench: logs are in", s.Dir)
		return 1
	}
	if !keep {
		os.RemoveAll(s.Dir)
	}
	return 0
}

// raiseFileLimit lifts RLIMIT_NOFILE so that the bench and its children
// (which inherit it, since it is set explicitly) can hold every idle
// connection: a forwarder holds two sockets per connection, and the plain
// one two splice pipes (two descriptors each) on top while it waits.
func raiseFileLimit(s bench.Settings) error {
	want := uint64(4096)
	idle := slices.Contains(s.Tests, bench.TestIdle)
	if n := len(s.IdleConns); n > 0 && idle {
		want = max(want, uint64(8*s.IdleConns[n-1]+4096))
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Max < want {
		hi := lim
		hi.Max, hi.Cur = want, want
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &hi) == nil {
			return nil
		}
	}
	lim.Cur = min(max(lim.Cur, want), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < want && len(s.IdleConns) > 0 && idle {
		return fmt.Errorf("open-file limit is %d and cannot be raised here: the forwarders need 2 (TLS) to 6 (plain TCP, splice pipes) descriptors per idle connection and may not reach %d; the table says how many each reached", lim.Cur, s.IdleConns[len(s.IdleConns)-1])
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSize reads a byte count: a number, optionally with KiB, MiB or GiB.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive size such as 32MiB", s)
	}
	return n * mult, nil
}

// runSink is the hidden sink subcommand.
func runSink(args []string) int {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	ports := fs.Int("ports", 1, "how many listeners (one per path)")
	if fs.Parse(args) != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sink := bench.NewSink(bench.NewPattern())
	defer sink.Close()
	var (
		addrs []string
		wg    sync.WaitGroup
	)
	for range max(*ports, 1) {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		context.AfterFunc(ctx, func() { ln.Close() })
		addrs = append(addrs, ln.Addr().String())
		wg.Go(func() { sink.Serve(ln) })
	}
	fmt.Printf("sink listening addr=%s\n", strings.Join(addrs, ","))
	wg.Wait()
	return 0
}

// runForwarder is the hidden forwarder subcommand.
func runForwarder(args []string) int {
	var c bench.FwdConfig
	fs := flag.NewFlagSet("forwarder", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:0", "address")
	fs.StringVar(&c.To, "to", "", "relay to")
	fs.BoolVar(&c.InTLS, "in-tls", false, "accept TLS")
	fs.BoolVar(&c.OutTLS, "out-tls", false, "dial with TLS")
	fs.StringVar(&c.Cert, "cert", "", "certificate (PEM)")
	fs.StringVar(&c.Key, "key", "", "key (PEM)")
	fs.StringVar(&c.CA, "ca", "", "CA to verify the next hop (PEM)")
	if fs.Parse(args) != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.RunForwarder(ctx, c, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// runDelay is the hidden delay-line subcommand.
func runDelay(args []string) int {
	var c bench.LineConfig
	fs := flag.NewFlagSet("delay", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:0", "address")
	fs.StringVar(&c.To, "to", "", "relay to")
	fs.DurationVar(&c.RTT, "rtt", 0, "round trip added (each direction waits half)")
	fs.Int64Var(&c.Rate, "rate", 0, "cap in bytes per second per direction of each connection (0: none)")
	fs.IntVar(&c.Queue, "queue", 0, "bytes held per direction of each connection (0: the bandwidth-delay product plus 4 MiB, or 64 MiB without a cap)")
	if fs.Parse(args) != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.RunDelayLine(ctx, c, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
