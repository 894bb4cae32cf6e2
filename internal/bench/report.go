package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
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

// target is one of the targets for the ferry column (issues 5 and 12).
type target struct {
	key     string
	ref     string  // "" for an absolute bound
	refKey  string  // the reference's figure, if not key
	max     bool    // value (or ratio) must be at most bound; else at least
	val     float64 // the bound
	text    string
	section string // sectionLoopback, sectionWAN or sectionStall
}

// The sections of the targets, as the summary counts them.
const (
	sectionLoopback = "loopback"
	sectionWAN      = "wan"
	sectionStall    = "stall"
)

// TargetResult says whether ferry met one target.
type TargetResult struct {
	Figure  string  `json:"figure"`
	Target  string  `json:"target"`
	Value   float64 `json:"value"` // the ratio for relative targets
	OK      bool    `json:"ok"`
	Section string  `json:"section"`
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

// targets are issue 5's (loopback, raised by issue 12) and issue 12's
// (wan, stall), for the ferry column.
func targets(s Settings) []target {
	var t []target
	for _, n := range s.Conns {
		for _, dir := range []string{"up", "down"} {
			bound := 0.9
			if n == 1 && dir == "up" {
				bound = 0.75
			}
			t = append(t, target{key: fmt.Sprintf("tput_%s_%d", dir, n), ref: PathTLSFwd, val: bound, text: fmt.Sprintf(">=%.2fx tls", bound)})
		}
	}
	t = append(t,
		target{key: "rate_seq", ref: PathTCPFwd, val: 0.9, text: ">=0.9x tcp"},
		target{key: "rate_seq_p99_ms", ref: PathTCPFwd, max: true, val: 1.5, text: "<=1.5x tcp"},
		target{key: "rate_par", ref: PathTCPFwd, val: 0.9, text: ">=0.9x tcp"},
		target{key: "rate_par_p99_ms", ref: PathTCPFwd, max: true, val: 1.5, text: "<=1.5x tcp"},
		target{key: "lat_load_p99_ms", ref: PathDirect, max: true, val: 2, text: "<=2x direct"},
	)
	for _, sd := range []string{"in", "out"} {
		t = append(t, target{key: "rss_idle_" + sd + "_mib", max: true, val: 15, text: "<=15 MiB"})
		if n := len(s.IdleConns); n > 0 {
			t = append(t, target{key: fmt.Sprintf("perconn_%d_%s_kib", s.IdleConns[n-1], sd), max: true, val: 8, text: "<=8 KiB"})
		}
		for _, n := range s.Conns {
			bound := 48.0
			if n >= 64 {
				bound = 32
			}
			t = append(t, target{key: fmt.Sprintf("hwm_%d_%s_mib", n, sd), max: true, val: bound, text: fmt.Sprintf("<=%.0f MiB", bound)})
		}
	}
	for i := range t {
		t[i].section = sectionLoopback
	}
	if slices.Contains(s.Tests, TestWAN) {
		// Over a capped line: one connection against one TLS-forwarder
		// connection; several Ferry streams (one tunnel, one capped TCP
		// connection) against one TLS-forwarder connection too, since
		// the forwarder's several connections get a cap each.
		for _, p := range s.WAN {
			if p.Rate <= 0 {
				continue
			}
			for _, n := range s.WANConns {
				for _, up := range []bool{true, false} {
					tg := target{key: wanKey(p.Name, up, n), ref: PathTLSFwd, val: 0.9, text: ">=0.9x tls", section: sectionWAN}
					if n > 1 {
						tg.refKey, tg.text = wanKey(p.Name, up, 1), ">=0.9x tls 1 conn"
					}
					t = append(t, tg)
				}
			}
		}
	}
	if slices.Contains(s.Tests, TestStall) {
		for _, line := range s.StallLines {
			for _, c := range stallCases(s) {
				k := func(what string) string { return stallKey(line.Name, c.kind, c.n, what) }
				t = append(t,
					target{key: k("down_ratio"), val: 0.8, text: ">=0.8x solo", section: sectionStall},
					target{key: k("up_ratio"), val: 0.8, text: ">=0.8x solo", section: sectionStall},
					target{key: k("rss_in_mib"), max: true, val: 64, text: "<=64 MiB", section: sectionStall},
					target{key: k("rss_out_mib"), max: true, val: 64, text: "<=64 MiB", section: sectionStall},
					target{key: k("open"), val: 1, text: "all open", section: sectionStall},
					target{key: k("freed_s"), max: true, val: 1, text: "<=1 s", section: sectionStall},
					target{key: k("echo"), val: 1, text: "echoes", section: sectionStall},
				)
			}
		}
	}
	return t
}

// stallCase is one stalled set of the stall test.
type stallCase struct {
	kind string
	n    int
}

func stallCases(s Settings) []stallCase {
	var out []stallCase
	for _, n := range s.StallDown {
		out = append(out, stallCase{StallDownloads, n})
	}
	for _, n := range s.StallUp {
		out = append(out, stallCase{StallUploads, n})
	}
	return out
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
			rk := t.key
			if t.refKey != "" {
				rk = t.refKey
			}
			rv, ok := res.Figures[t.ref][rk]
			if !ok || rv == 0 {
				continue
			}
			v /= rv
		}
		pass := v >= t.val
		if t.max {
			pass = v <= t.val
		}
		out = append(out, TargetResult{Figure: t.key, Target: t.text, Value: v, OK: pass, Section: t.section})
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

// PrintTable writes a run's tables: the loopback table (each path's
// figure, the forwarders' and ferry's ratio to direct, ferry's ratio to
// the reference, and the targets with pass/miss marks), then the WAN and
// stall tables when those tests ran, then the targets met, notes and
// whether every byte was verified.
func PrintTable(w io.Writer, res *Results, s Settings) {
	loopback := slices.ContainsFunc(s.Tests, func(t string) bool { return slices.Contains(LoopbackTests, t) })
	fmt.Fprintf(w, "ferry-bench %s — %d CPUs, %s, kernel %s, %s", res.Version, res.Machine.CPUs, res.Machine.CPUModel, res.Machine.Kernel, res.Machine.GoVersion)
	if loopback {
		fmt.Fprintf(w, "; %s × %d reps per figure", s.Duration, s.Reps)
	}
	fmt.Fprintf(w, "\npaths: direct = client→sink; tcp-fwd, tls-fwd = client→A→(TLS)→B→sink (Go stdlib); ferry = client→gateway→wss tunnel (ha_connections=%d)→agent→sink\n", s.FerryHA)
	fmt.Fprintf(w, "MB = 10^6 bytes; ~ = the reps of this figure spread over more than 25%% of its median (a noisy figure)\n")
	tg := map[string]TargetResult{}
	for _, t := range res.Targets {
		tg[t.Figure] = t
	}
	if loopback {
		fmt.Fprintf(w, "(x) = ratio to direct; ferry/ref = ratio to the reference named in the ref column; gw|A = gateway or forwarder A, agent|B = agent or forwarder B\n\n")
		printLoopback(w, res, s, tg)
	}
	if slices.Contains(s.Tests, TestWAN) && len(res.WAN) > 0 {
		printWAN(w, res, s, tg)
	}
	if slices.Contains(s.Tests, TestStall) && len(res.Stall) > 0 {
		printStall(w, res, s, tg)
	}
	pass, all := 0, 0
	type count struct{ pass, all int }
	bySection := map[string]*count{}
	for _, t := range res.Targets {
		all++
		c := bySection[t.Section]
		if c == nil {
			c = &count{}
			bySection[t.Section] = c
		}
		c.all++
		if t.OK {
			pass++
			c.pass++
		}
	}
	if all > 0 {
		var parts []string
		for _, sec := range []string{sectionLoopback, sectionWAN, sectionStall} {
			if c := bySection[sec]; c != nil {
				parts = append(parts, fmt.Sprintf("%s %d of %d", sec, c.pass, c.all))
			}
		}
		fmt.Fprintf(w, "\nferry meets %d of %d targets (informational): %s.\n", pass, all, strings.Join(parts, ", "))
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

// mark is a target's cell: its text and pass or MISS; judged adds the
// value judged when the row does not show it.
func mark(t TargetResult, judged bool) (string, string) {
	m := "MISS"
	if t.OK {
		m = "pass"
	}
	if judged {
		return fmt.Sprintf("%s (%.2fx)", t.Target, t.Value), m
	}
	return t.Target, m
}

func printLoopback(w io.Writer, res *Results, s Settings, tg map[string]TargetResult) {
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
			text, m := mark(t, false)
			row = append(row, text, m)
		} else {
			row = append(row, "", "")
		}
		rows = append(rows, row)
	}
	writeRows(w, rows, func(i, n int) bool { return i < 2 || i >= n-2 })
}

// printWAN writes the WAN table: per profile and connection count, upload
// and download through the line, with the line's limit and Ferry's
// window bound beside them.
func printWAN(w io.Writer, res *Results, s Settings, tg map[string]TargetResult) {
	fmt.Fprintf(w, "\nWAN: a delay line (ferry-bench's own, a separate process) between the client and the sink (direct: the line's own limit), between forwarders A and B (tls-fwd), between ferry-agent and ferry-gateway (ferry: one tunnel, so one TCP connection through the line). %s × %d rep(s) per figure.\n", s.WANDuration, s.WANReps)
	fmt.Fprintf(w, "The line delays each direction by RTT/2 and caps each TCP connection on its own (@RATE). It terminates TCP: each side's TCP sees loopback, so only windows carried end to end\n")
	fmt.Fprintf(w, "(Ferry's stream window) see the round trip; the line holds at most its queue per direction and connection: its own window. line limit = n connections × (cap, or queue per RTT/2);\n")
	fmt.Fprintf(w, "ferry bound = one TCP connection's limit, and n × max stream window (%s, -ferry-max-window) per RTT; ferry window seen = ferry's rate × RTT / n, what each stream had in flight.\n", sizeText(s.FerryMaxWindow))
	fmt.Fprintf(w, "Targets over capped lines only; ferry with n > 1 is judged against ONE tls-fwd connection.\n\n")
	rows := [][]string{{"profile", "figure", "unit", "direct (line)", "tls-fwd", "ferry", "ferry/tls-fwd", "line limit", "ferry bound", "ferry window seen", "target", ""}}
	cell := func(p, key string) string {
		v, ok := res.Figures[p][key]
		if !ok {
			return "-"
		}
		noisy := ""
		if sp := res.Spread[p][key]; sp > 0.25 {
			noisy = "~"
		}
		return noisy + format(v, 0)
	}
	for _, wp := range res.WAN {
		prof := Profile{Name: wp.Name}
		for _, p := range s.WAN {
			if p.Name == wp.Name {
				prof = p
			}
		}
		first := true
		for _, n := range s.WANConns {
			for _, up := range []bool{true, false} {
				key := wanKey(wp.Name, up, n)
				name := ""
				if first {
					name = wp.Name
					first = false
				}
				ratio := "-"
				fv, ok1 := res.Figures[PathFerry][key]
				rv, ok2 := res.Figures[PathTLSFwd][key]
				if ok1 && ok2 && rv != 0 {
					ratio = fmt.Sprintf("%.2fx", fv/rv)
				}
				perConn := prof.LineLimit() / 1e6
				ferryBound := min(perConn, float64(n)*wp.FerryBoundMBps)
				// What Ferry's rate implies each stream had in flight per
				// round trip: its effective window.
				seen := "-"
				if ok1 {
					seen = sizeText(int64(fv * 1e6 * prof.RTT.Seconds() / float64(n)))
				}
				row := []string{name, fmt.Sprintf("%s, %d conn", dirName(up), n), "MB/s",
					cell(PathDirect, key), cell(PathTLSFwd, key), cell(PathFerry, key), ratio,
					format(float64(n)*perConn, 0), format(ferryBound, 0), seen}
				if t, ok := tg[key]; ok {
					text, m := mark(t, n > 1)
					row = append(row, text, m)
				} else {
					row = append(row, "", "")
				}
				rows = append(rows, row)
			}
		}
	}
	writeRows(w, rows, func(i, n int) bool { return i < 3 || i >= n-2 })
	fmt.Fprintln(w)
	for _, wp := range res.WAN {
		capText := "no cap"
		if wp.CapMBps > 0 {
			capText = fmt.Sprintf("cap %s MB/s per TCP connection", format(wp.CapMBps, 0))
		}
		fmt.Fprintf(w, "  %s: RTT %s ms, %s, line queue %.1f MiB per direction (limit %s MB/s per connection), ferry window/RTT %s MB/s per stream\n",
			wp.Name, format(wp.RTTMs, 0), capText, wp.QueueMiB, format(wp.LineLimitMBps, 0), format(wp.FerryBoundMBps, 0))
	}
}

// printStall writes the stall table: per line and stalled set, the fast
// streams' rates solo and beside the set, the processes' growth, whether
// the stalled connections stayed open, how long the resets took to free
// the streams, and whether the tunnel carried a new connection after.
func printStall(w io.Writer, res *Results, s Settings, tg map[string]TargetResult) {
	fmt.Fprintf(w, "\nStalled readers (ferry only, ha_connections=%d): a fast download, then a fast upload (%s on loopback, %s over a line), solo and beside N connections whose clients never read (down)\n", s.FerryHA, s.Duration, s.WANDuration)
	fmt.Fprintf(w, "or whose targets never read (up). held = what the stalled connections had taken in when the fast transfers began (unread in the clients' receive queues; for up, written by the clients,\n")
	fmt.Fprintf(w, "mostly socket buffers); RSS growth = each process's largest RSS meanwhile less its RSS before (gateway/agent); still open = no reset, no end of stream, no failed write;\n")
	fmt.Fprintf(w, "freed = from the resets (clients', or targets' for up) until ferry_gateway_streams_active and ferry_agent_streams_active are back at the live count (1 held connection);\n")
	fmt.Fprintf(w, "echo after = a new connection through the same tunnel (the agent made no new connect attempt). Every wait is bound by %s (-stall-wait), a fast transfer by its length plus that.\n\n", s.StallWait)
	rows := [][]string{{"line", "stalled", "held MiB", "solo down", "beside", "ratio", "solo up", "beside", "ratio", "RSS growth MiB", "still open", "freed after resets", "echo after"}}
	judge := func(key string) string {
		t, ok := tg[key]
		if !ok {
			return ""
		}
		if t.OK {
			return " pass"
		}
		return " MISS"
	}
	var notes []string
	for _, r := range res.Stall {
		k := func(what string) string { return stallKey(r.Line, r.Kind, r.N, what) }
		ratio := func(v, solo float64, key string) string {
			if solo <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx%s", v/solo, judge(key))
		}
		freed := fmt.Sprintf("%.3f s%s", r.FreedSeconds, judge(k("freed_s")))
		if r.FreedSeconds < 0 {
			freed = fmt.Sprintf("not freed within %s (gw %g, agent %g)%s", s.StallWait, r.LeftGateway, r.LeftAgent, judge(k("freed_s")))
		}
		echo := "no"
		if r.EchoAfter {
			echo = "yes"
		}
		kind := map[string]string{StallDownloads: "downloads", StallUploads: "uploads"}[r.Kind]
		rows = append(rows, []string{r.Line, fmt.Sprintf("%d %s", r.N, kind), format(r.HeldMiB, 1),
			format(r.SoloDownMBps, 0), format(r.DownMBps, 0), ratio(r.DownMBps, r.SoloDownMBps, k("down_ratio")),
			format(r.SoloUpMBps, 0), format(r.UpMBps, 0), ratio(r.UpMBps, r.SoloUpMBps, k("up_ratio")),
			fmt.Sprintf("+%.1f/+%.1f%s", r.RSSGrowthMiB[0], r.RSSGrowthMiB[1], worst(judge(k("rss_in_mib")), judge(k("rss_out_mib")))),
			fmt.Sprintf("%d/%d%s", r.StillOpen, r.N, judge(k("open"))),
			freed, echo + judge(k("echo"))})
		for _, n := range []struct{ what, note string }{{"fast download", r.DownNote}, {"fast upload", r.UpNote}, {"stalled set", r.OpenNote}, {"freeing", r.FreeNote}, {"echo after", r.EchoNote}} {
			if n.note != "" {
				notes = append(notes, fmt.Sprintf("stall %s, %d %s: %s: %s", r.Line, r.N, kind, n.what, n.note))
			}
		}
	}
	writeRows(w, rows, func(i, n int) bool { return i < 2 || i >= n-2 })
	fmt.Fprintln(w, "\ntargets: fast streams >=0.8x solo; RSS growth <=64 MiB per process; every stalled connection still open; streams freed <=1 s after the resets; the tunnel echoes after.")
	for _, n := range notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
}

// worst combines two marks: MISS if either missed.
func worst(a, b string) string {
	if a == " MISS" || b == " MISS" {
		return " MISS"
	}
	if a == "" {
		return b
	}
	return a
}

// sizeText writes b in MiB or KiB: exactly when it is a whole number of
// them, else to one decimal.
func sizeText(b int64) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", b>>10)
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", b)
}

// writeRows writes rows as aligned columns, a rule under the header; left
// says which columns are left-aligned (the others are right-aligned).
func writeRows(w io.Writer, rows [][]string, left func(i, n int) bool) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	for ri, r := range rows {
		var b strings.Builder
		for i, c := range r {
			pad := widths[i] - len([]rune(c))
			if left(i, len(r)) {
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
	for _, t := range LoopbackTests {
		if !slices.Contains(s.Tests, t) {
			return nil // a partial run
		}
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
