package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// figureDef is one row of the table.
type figureDef struct {
	key   string
	label string
	unit  string
	ref   string // path the ferry/ref ratio divides by
	procs bool   // a figure of the path's processes (none for direct)
	prec  int    // decimals
}

// target is one of issue 5's targets for the ferry column.
type target struct {
	key  string
	ref  string  // "" for an absolute bound
	max  bool    // value (or ratio) must be at most bound; else at least
	val  float64 // the bound
	text string
}

// TargetResult says whether ferry met one target.
type TargetResult struct {
	Figure string  `json:"figure"`
	Target string  `json:"target"`
	Value  float64 `json:"value"` // the ratio for relative targets
	OK     bool    `json:"ok"`
}

func figureDefs(s Settings) []figureDef {
	var d []figureDef
	for _, n := range s.Conns {
		for _, dir := range []string{"up", "down"} {
			d = append(d, figureDef{key: fmt.Sprintf("tput_%s_%d", dir, n), label: fmt.Sprintf("throughput %s, %d conn", map[string]string{"up": "upload", "down": "download"}[dir], n), unit: "MB/s", ref: PathTLSFwd})
		}
	}
	d = append(d,
		figureDef{key: "cpu_s_per_gb", label: "CPU of path processes per GB", unit: "s/GB", ref: PathTLSFwd, procs: true, prec: 2},
		figureDef{key: "rate_seq", label: "new conns, sequential", unit: "conn/s", ref: PathTCPFwd},
		figureDef{key: "rate_seq_p50_ms", label: "  latency p50", unit: "ms", ref: PathTCPFwd, prec: 2},
		figureDef{key: "rate_seq_p99_ms", label: "  latency p99", unit: "ms", ref: PathTCPFwd, prec: 2},
		figureDef{key: "rate_par", label: fmt.Sprintf("new conns, %d workers", s.Workers), unit: "conn/s", ref: PathTCPFwd},
		figureDef{key: "rate_par_p50_ms", label: "  latency p50", unit: "ms", ref: PathTCPFwd, prec: 2},
		figureDef{key: "rate_par_p99_ms", label: "  latency p99", unit: "ms", ref: PathTCPFwd, prec: 2},
		figureDef{key: "lat_load_p50_ms", label: fmt.Sprintf("1-byte echo under %d uploads p50", s.Bulk), unit: "ms", ref: PathTLSFwd, prec: 2},
		figureDef{key: "lat_load_p99_ms", label: fmt.Sprintf("1-byte echo under %d uploads p99", s.Bulk), unit: "ms", ref: PathTLSFwd, prec: 2},
	)
	mem := func(key, label, unit string, prec int) {
		for i, who := range []string{"gw|A", "agent|B"} {
			d = append(d, figureDef{key: fmt.Sprintf(key, side(i)), label: fmt.Sprintf(label, who), unit: unit, ref: PathTLSFwd, procs: true, prec: prec})
		}
	}
	mem("rss_idle_%s_mib", "RSS idle, %s", "MiB", 1)
	for _, n := range s.IdleConns {
		mem(fmt.Sprintf("rss_%d_", n)+"%s_mib", fmt.Sprintf("RSS %d idle conns, ", n)+"%s", "MiB", 1)
		mem(fmt.Sprintf("perconn_%d_", n)+"%s_kib", fmt.Sprintf("  per conn at %d, ", n)+"%s", "KiB", 1)
	}
	for _, n := range s.Conns {
		mem(fmt.Sprintf("hwm_%d_", n)+"%s_mib", fmt.Sprintf("peak RSS, tput %d conn, ", n)+"%s", "MiB", 1)
	}
	return d
}

// targets are issue 5's, for the ferry column.
func targets(s Settings) []target {
	var t []target
	for _, n := range s.Conns {
		bound := 0.8
		if n == 1 {
			bound = 0.75
		}
		for _, dir := range []string{"up", "down"} {
			t = append(t, target{key: fmt.Sprintf("tput_%s_%d", dir, n), ref: PathTLSFwd, val: bound, text: fmt.Sprintf(">=%.2fx tls", bound)})
		}
	}
	t = append(t,
		target{key: "rate_seq", ref: PathTCPFwd, val: 0.8, text: ">=0.8x tcp"},
		target{key: "rate_seq_p99_ms", ref: PathTCPFwd, max: true, val: 1.5, text: "<=1.5x tcp"},
		target{key: "rate_par", ref: PathTCPFwd, val: 0.8, text: ">=0.8x tcp"},
		target{key: "rate_par_p99_ms", ref: PathTCPFwd, max: true, val: 1.5, text: "<=1.5x tcp"},
		target{key: "lat_load_p99_ms", ref: PathDirect, max: true, val: 2, text: "<=2x direct"},
	)
	for _, sd := range []string{"in", "out"} {
		t = append(t, target{key: "rss_idle_" + sd + "_mib", max: true, val: 15, text: "<=15 MiB"})
		if n := len(s.IdleConns); n > 0 {
			t = append(t, target{key: fmt.Sprintf("perconn_%d_%s_kib", s.IdleConns[n-1], sd), max: true, val: 16, text: "<=16 KiB"})
		}
		for _, n := range s.Conns {
			t = append(t, target{key: fmt.Sprintf("hwm_%d_%s_mib", n, sd), max: true, val: 48, text: "<=48 MiB"})
		}
	}
	return t
}

func evalTargets(res *Results, s Settings) []TargetResult {
	var out []TargetResult
	ferry, ok := res.Figures[PathFerry]
	if !ok {
		return nil
	}
	for _, t := range targets(s) {
		v, ok := ferry[t.key]
		if !ok {
			continue
		}
		if t.ref != "" {
			rv, ok := res.Figures[t.ref][t.key]
			if !ok || rv == 0 {
				continue
			}
			v /= rv
		}
		pass := v >= t.val
		if t.max {
			pass = v <= t.val
		}
		out = append(out, TargetResult{Figure: t.key, Target: t.text, Value: v, OK: pass})
	}
	return out
}

func format(v float64, prec int) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case prec == 0 && math.Abs(v) >= 10:
		return fmt.Sprintf("%.0f", v)
	case prec == 0:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// PrintTable writes the one table of a run: each path's figure, the
// forwarders' and ferry's ratio to direct, ferry's ratio to the reference,
// and the targets with pass/miss marks.
func PrintTable(w io.Writer, res *Results, s Settings) {
	fmt.Fprintf(w, "ferry-bench %s — %d CPUs, %s, kernel %s, %s; %s × %d reps per figure\n",
		res.Version, res.Machine.CPUs, res.Machine.CPUModel, res.Machine.Kernel, res.Machine.GoVersion, s.Duration, s.Reps)
	fmt.Fprintf(w, "paths: direct = client→sink; tcp-fwd, tls-fwd = client→A→(TLS)→B→sink (Go stdlib); ferry = client→gateway→wss tunnel (ha_connections=%d)→agent→sink\n", s.FerryHA)
	fmt.Fprintf(w, "(x) = ratio to direct; ferry/ref = ratio to the reference named in the ref column; MB = 10^6 bytes; gw|A = gateway or forwarder A, agent|B = agent or forwarder B;\n~ = the reps of this figure spread over more than 25%% of its median (a noisy figure)\n\n")
	tg := map[string]TargetResult{}
	for _, t := range res.Targets {
		tg[t.Figure] = t
	}
	cols := res.Paths
	header := []string{"figure", "unit"}
	header = append(header, cols...)
	header = append(header, "ref", "ferry/ref", "target", "")
	rows := [][]string{header}
	for _, d := range figureDefs(s) {
		row := []string{d.label, d.unit}
		direct, hasDirect := res.Figures[PathDirect][d.key]
		for _, p := range cols {
			v, ok := res.Figures[p][d.key]
			noisy := ""
			if sp := res.Spread[p][d.key]; sp > 0.25 {
				noisy = "~"
			}
			if n, ok := reachedShort(res.Figures[p], d.key); ok {
				noisy = fmt.Sprintf("(only %d) ", n)
			}
			switch {
			case !ok:
				row = append(row, "-")
			case p != PathDirect && hasDirect && direct != 0 && !d.procs:
				row = append(row, fmt.Sprintf("%s%s (%.2fx)", noisy, format(v, d.prec), v/direct))
			default:
				row = append(row, noisy+format(v, d.prec))
			}
		}
		ratio := "-"
		fv, ok1 := res.Figures[PathFerry][d.key]
		rv, ok2 := res.Figures[d.ref][d.key]
		if ok1 && ok2 && rv != 0 {
			ratio = fmt.Sprintf("%.2fx", fv/rv)
		}
		row = append(row, d.ref, ratio)
		if t, ok := tg[d.key]; ok {
			mark := "MISS"
			if t.OK {
				mark = "pass"
			}
			row = append(row, t.Target, mark)
		} else {
			row = append(row, "", "")
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(header))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for ri, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := widths[i] - len([]rune(c))
			if i < 2 || i >= len(r)-2 {
				b.WriteString(c + strings.Repeat(" ", pad))
			} else {
				b.WriteString(strings.Repeat(" ", pad) + c)
			}
			b.WriteString("  ")
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if ri == 0 {
			n := 0
			for _, wd := range widths {
				n += wd + 2
			}
			fmt.Fprintln(w, strings.Repeat("-", n-2))
		}
	}
	pass, all := 0, 0
	for _, t := range res.Targets {
		all++
		if t.OK {
			pass++
		}
	}
	if all > 0 {
		fmt.Fprintf(w, "\nferry meets %d of %d targets (informational).\n", pass, all)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for p, e := range res.Errors {
		fmt.Fprintf(w, "FAILED %s: %s\n", p, e)
	}
	if res.Corrupt {
		fmt.Fprintln(w, "DATA CORRUPTED: a byte was lost, altered or reordered on some path; the figures above are invalid.")
	}
	if !res.Failed() {
		fmt.Fprintf(w, "verified: every byte moved arrived intact, on every path (run took %.0f s).\n", res.Seconds)
	}
}

// WriteJSON writes the results to path.
func WriteJSON(path string, res *Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// MissingFigures lists the figures a complete run has and res lacks (each
// as path/key): a check that nothing was skipped.
func MissingFigures(res *Results, s Settings) []string {
	if len(s.Tests) != len(AllTests) {
		return nil // a partial run
	}
	var out []string
	for _, p := range res.Paths {
		for _, d := range figureDefs(s) {
			if d.procs && p == PathDirect {
				continue
			}
			if _, ok := res.Figures[p][d.key]; !ok {
				out = append(out, p+"/"+d.key)
			}
		}
	}
	return out
}

// reachedShort says, for a figure of N idle connections, whether fewer
// were reached, and how many.
func reachedShort(fig map[string]float64, key string) (int, bool) {
	var n int
	var rest string
	for _, prefix := range []string{"rss_", "perconn_"} {
		if strings.HasPrefix(key, prefix) {
			rest = strings.TrimPrefix(key, prefix)
		}
	}
	if _, err := fmt.Sscanf(rest, "%d_", &n); err != nil || n == 0 {
		return 0, false
	}
	got, ok := fig[fmt.Sprintf("idle_%d_reached", n)]
	return int(got), ok && int(got) < n
}
