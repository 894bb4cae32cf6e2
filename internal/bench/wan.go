package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Profile is one emulated link: a delay line adding RTT to every round
// trip and, with a Rate, capping each TCP connection through it on its
// own. The zero RTT and Rate (named "loopback") is no line at all.
type Profile struct {
	Name string        // as written: "50ms", "150ms@1gbit", "loopback"
	RTT  time.Duration // round trip added by the line
	Rate int64         // bytes per second per TCP connection and direction; 0: no cap
}

// Loopback is the profile of no delay line.
var Loopback = Profile{Name: "loopback"}

// IsLoopback reports whether p is no line at all.
func (p Profile) IsLoopback() bool { return p.RTT == 0 && p.Rate == 0 }

// Queue is what the line holds per direction of one connection.
func (p Profile) Queue() int { return LineQueue(p.RTT, p.Rate) }

// LineLimit is the most one TCP connection moves through the line, in
// bytes per second: the cap, or without one the line's queue emptied once
// per one-way delay.
func (p Profile) LineLimit() float64 {
	if p.Rate > 0 {
		return float64(p.Rate)
	}
	if p.RTT <= 0 {
		return 0
	}
	return float64(p.Queue()) / (p.RTT / 2).Seconds()
}

// ParseProfile reads "loopback", "RTT" or "RTT@RATE", where RTT is a Go
// duration and RATE a number of kbit, mbit or gbit (per second, powers of
// ten): "50ms", "150ms@1gbit".
func ParseProfile(s string) (Profile, error) {
	s = strings.TrimSpace(s)
	if s == "loopback" {
		return Loopback, nil
	}
	rtt, rate, capped := strings.Cut(s, "@")
	p := Profile{Name: s}
	var err error
	if p.RTT, err = time.ParseDuration(rtt); err != nil || p.RTT <= 0 {
		return p, fmt.Errorf("profile %q: round trip %q is not a positive duration such as 50ms", s, rtt)
	}
	if capped {
		bits, err := parseBits(rate)
		if err != nil {
			return p, fmt.Errorf("profile %q: %w", s, err)
		}
		p.Rate = bits / 8
	}
	return p, nil
}

// parseBits reads "1gbit", "100mbit", "500kbit" as bits per second.
func parseBits(s string) (int64, error) {
	low := strings.ToLower(s)
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if num, ok := strings.CutSuffix(low, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v <= 0 {
				break
			}
			return int64(v * u.mult), nil
		}
	}
	return 0, fmt.Errorf("rate %q is not a number of kbit, mbit or gbit such as 1gbit", s)
}

// ParseProfiles reads a comma-separated list of profiles; "" is none.
func ParseProfiles(s string) ([]Profile, error) {
	var out []Profile
	for f := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		p, err := ParseProfile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// ProfileNames joins the profiles' names with commas.
func ProfileNames(ps []Profile) string { return strings.Join(profileNames(ps), ",") }

func profileNames(ps []Profile) []string {
	n := make([]string, len(ps))
	for i, p := range ps {
		n[i] = p.Name
	}
	return n
}

// WANPaths are the paths the wan test runs through a delay line: direct
// (the line's own limit), the TLS forwarder pair and Ferry.
var WANPaths = []string{PathDirect, PathTLSFwd, PathFerry}

// WANProfile is a profile's physical limits, as the JSON holds them.
type WANProfile struct {
	Name  string  `json:"name"`
	RTTMs float64 `json:"rtt_ms"`
	// CapMBps is the rate cap per TCP connection and direction (0: none).
	CapMBps float64 `json:"cap_mbps"`
	// QueueMiB is what the line holds per direction of a connection: its
	// own window.
	QueueMiB float64 `json:"line_queue_mib"`
	// LineLimitMBps is the most one TCP connection moves through the line.
	LineLimitMBps float64 `json:"line_limit_mbps"`
	// FerryBoundMBps is one Ferry stream's bound: the largest stream
	// window (Settings.FerryMaxWindow) per round trip.
	FerryBoundMBps float64 `json:"ferry_window_bound_mbps"`
}

func wanProfile(p Profile, maxWindow int64) WANProfile {
	return WANProfile{
		Name: p.Name, RTTMs: ms(p.RTT), CapMBps: float64(p.Rate) / 1e6,
		QueueMiB: mib(int64(p.Queue())), LineLimitMBps: p.LineLimit() / 1e6,
		FerryBoundMBps: float64(maxWindow) / p.RTT.Seconds() / 1e6,
	}
}

// wanKey is the figure key of a WAN throughput measurement.
func wanKey(prof string, up bool, conns int) string {
	dir := "down"
	if up {
		dir = "up"
	}
	return fmt.Sprintf("wan_%s_tput_%s_%d", prof, dir, conns)
}

// wanPhase: for each profile and connection count, fresh processes with a
// delay line in each path, then upload and download repeated.
func (r *runner) wanPhase(ctx context.Context) {
	var paths []Path
	for _, p := range r.paths {
		if slices.Contains(WANPaths, p.Name()) {
			paths = append(paths, p)
		}
	}
	// The loopback phases leave their processes running; the wan test
	// needs the CPUs for the paths it measures.
	for _, p := range r.paths {
		if err := p.Stop(); err != nil && !r.dead[p.Name()] {
			r.pathErr(p.Name(), fmt.Errorf("stop: %w", err))
		}
	}
	defer func() {
		for _, p := range paths {
			p.(linePath).setLine(nil)
			if err := p.Stop(); err != nil && !r.dead[p.Name()] {
				r.pathErr(p.Name(), fmt.Errorf("stop after the wan test: %w", err))
			}
		}
	}()
	for _, prof := range r.s.WAN {
		if ctx.Err() != nil {
			return
		}
		r.res.WAN = append(r.res.WAN, wanProfile(prof, r.s.FerryMaxWindow))
		for _, p := range paths {
			p.(linePath).setLine(&prof)
		}
		for _, conns := range r.s.WANConns {
			live := r.startPaths(ctx, paths)
			for rep := range r.s.WANReps {
				for _, p := range live {
					if r.dead[p.Name()] {
						continue
					}
					for _, up := range []bool{true, false} {
						key := wanKey(prof.Name, up, conns)
						x, err := r.transfer(p, conns, up, r.s.WANDuration, time.Now().Add(r.s.WANDuration+transferSlack))
						if err != nil {
							r.pathErr(p.Name(), fmt.Errorf("wan %s: %s: %w", prof.Name, key, err))
							continue
						}
						r.add(p.Name(), key, x.mbps)
						r.res.Runs = append(r.res.Runs, Sample{Path: p.Name(), Test: key, Rep: rep, Conns: conns, Bytes: x.bytes, Seconds: x.secs, CPUSeconds: x.cpu, Value: x.mbps})
						r.logf("[%s] wan %s: %s %d conn rep %d: %.1f MB/s", p.Name(), prof.Name, dirName(up), conns, rep+1, x.mbps)
					}
				}
			}
		}
	}
}

func dirName(up bool) string {
	if up {
		return "upload"
	}
	return "download"
}

// startPaths starts fresh processes for paths that are still alive and
// returns those that started.
func (r *runner) startPaths(ctx context.Context, paths []Path) []Path {
	var out []Path
	for _, p := range paths {
		if r.dead[p.Name()] || ctx.Err() != nil {
			continue
		}
		if err := p.Start(ctx); err != nil {
			r.pathErr(p.Name(), fmt.Errorf("start: %w", err))
			r.dead[p.Name()] = true
			p.Stop()
			continue
		}
		out = append(out, p)
	}
	return out
}
