package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of stalled sets.
const (
	StallDownloads = "down" // the clients never read
	StallUploads   = "up"   // the targets never read
)

// StallResult is one case of the stall test: Ferry (one tunnel) carrying
// a fast download and a fast upload beside N stalled connections, then
// freeing them when they are reset.
type StallResult struct {
	Line   string `json:"line"`   // "loopback" or the delay line's profile
	Kind   string `json:"kind"`   // StallDownloads or StallUploads
	N      int    `json:"n"`      // stalled connections asked for
	Opened int    `json:"opened"` // stalled connections that opened

	// HeldMiB is what the stalled connections had taken in when the fast
	// transfers began: the bytes waiting in the stalled clients' receive
	// queues (downloads) or written by the stalled clients (uploads).
	HeldMiB     float64 `json:"held_mib"`
	FillSeconds float64 `json:"fill_seconds"` // until HeldMiB stopped growing

	SoloDownMBps float64 `json:"solo_down_mbps"`
	SoloUpMBps   float64 `json:"solo_up_mbps"`
	DownMBps     float64 `json:"down_mbps"` // beside the stalled set
	UpMBps       float64 `json:"up_mbps"`
	DownNote     string  `json:"down_note,omitempty"` // why a fast transfer fell short
	UpNote       string  `json:"up_note,omitempty"`

	// RSSGrowthMiB is each process's (gateway, agent) largest RSS while
	// the stalled set was open, less its RSS before.
	RSSGrowthMiB [2]float64 `json:"rss_growth_mib"`

	StillOpen int    `json:"still_open"` // stalled connections open after the fast transfers
	OpenNote  string `json:"open_note,omitempty"`

	// FreedSeconds is from the resets until both processes'
	// streams_active gauges were back at the live count; -1: not within
	// Settings.StallWait, and Left… are the gauges then.
	FreedSeconds float64 `json:"freed_seconds"`
	LeftGateway  float64 `json:"left_gateway"`
	LeftAgent    float64 `json:"left_agent"`
	FreeNote     string  `json:"free_note,omitempty"`

	EchoAfter bool   `json:"echo_after"` // a new connection through the same tunnel echoed
	EchoNote  string `json:"echo_note,omitempty"`
}

// stallKey is the figure key of one judged stall figure.
func stallKey(line, kind string, n int, what string) string {
	return fmt.Sprintf("stall_%s_%s%d_%s", line, kind, n, what)
}

// stallPhase runs each stalled set over each line on fresh Ferry
// processes with one tunnel.
func (r *runner) stallPhase(ctx context.Context, sinkAddr string) {
	var fp *ferryPath
	for _, p := range r.paths {
		if f, ok := p.(*ferryPath); ok {
			fp = f
		}
	}
	for _, p := range r.paths {
		if err := p.Stop(); err != nil && !r.dead[p.Name()] {
			r.pathErr(p.Name(), fmt.Errorf("stop: %w", err))
		}
	}
	if fp == nil || r.dead[PathFerry] {
		return
	}
	defer func() {
		fp.setLine(nil)
		if err := fp.Stop(); err != nil && !r.dead[PathFerry] {
			r.pathErr(PathFerry, fmt.Errorf("stop after the stall test: %w", err))
		}
	}()
	for _, line := range r.s.StallLines {
		if line.IsLoopback() {
			fp.setLine(nil)
		} else {
			fp.setLine(&line)
		}
		for _, c := range stallCases(r.s) {
			if ctx.Err() != nil || r.dead[PathFerry] {
				return
			}
			res, ok := r.stallCase(ctx, fp, sinkAddr, line, c.kind, c.n)
			r.res.Stall = append(r.res.Stall, res)
			if ok {
				r.stallFigures(res)
			}
		}
	}
}

// stallFigures files a case's judged figures under Figures["ferry"].
func (r *runner) stallFigures(res StallResult) {
	fig := r.res.Figures[PathFerry]
	k := func(what string) string { return stallKey(res.Line, res.Kind, res.N, what) }
	if res.SoloDownMBps > 0 {
		fig[k("down_ratio")] = res.DownMBps / res.SoloDownMBps
	}
	if res.SoloUpMBps > 0 {
		fig[k("up_ratio")] = res.UpMBps / res.SoloUpMBps
	}
	fig[k("rss_in_mib")] = res.RSSGrowthMiB[0]
	fig[k("rss_out_mib")] = res.RSSGrowthMiB[1]
	fig[k("open")] = float64(res.StillOpen) / float64(res.N)
	freed := res.FreedSeconds
	if freed < 0 {
		freed = r.s.StallWait.Seconds() // a lower bound: not freed by then
	}
	fig[k("freed_s")] = freed
	fig[k("echo")] = 0
	if res.EchoAfter {
		fig[k("echo")] = 1
	}
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// stallTransfer is one fast transfer of the stall test, bound by dur plus
// the stall wait. A deadline passing (the tunnel blocked) is a figure, not
// a failure: the rate counts the bytes verified by then and note says so.
// Corrupt data fails the run as everywhere.
func (r *runner) stallTransfer(p Path, up bool, dur time.Duration) (mbps float64, note string) {
	wait := r.s.StallWait
	x, err := r.transfer(p, 1, up, dur, time.Now().Add(dur+wait))
	switch {
	case err == nil:
		return x.mbps, ""
	case errors.Is(err, ErrCorrupt):
		r.pathErr(p.Name(), fmt.Errorf("stall test %s: %w", dirName(up), err))
		return 0, "corrupt"
	case errors.Is(err, errConnect) && isTimeout(err):
		return 0, fmt.Sprintf("no answer to its open within %s", min(dialTimeout, dur+wait))
	case isTimeout(err):
		return x.mbps, fmt.Sprintf("not done within %s (%.1f MB verified)", dur+wait, float64(x.bytes)/1e6)
	}
	return x.mbps, err.Error()
}

// stallCase runs one stalled set on fresh processes. Not ok: the case
// could not be measured (the path failed; the run fails), and its result
// holds only what was measured before.
func (r *runner) stallCase(ctx context.Context, fp *ferryPath, sinkAddr string, line Profile, kind string, n int) (StallResult, bool) {
	res := StallResult{Line: line.Name, Kind: kind, N: n, FreedSeconds: -1}
	what := fmt.Sprintf("%d stalled %ss over %s", n, map[string]string{StallDownloads: "download", StallUploads: "upload"}[kind], line.Name)
	dur := r.s.Duration
	if !line.IsLoopback() {
		dur = r.s.WANDuration
	}
	wait := r.s.StallWait
	if err := fp.Start(ctx); err != nil {
		r.pathErr(PathFerry, fmt.Errorf("stall test: start: %w", err))
		r.dead[PathFerry] = true
		fp.Stop()
		return res, false
	}

	res.SoloDownMBps, res.DownNote = r.stallTransfer(fp, false, dur)
	res.SoloUpMBps, res.UpNote = r.stallTransfer(fp, true, dur)
	if res.DownNote != "" || res.UpNote != "" {
		r.pathErr(PathFerry, fmt.Errorf("stall test, %s: the solo transfers failed: download %s; upload %s", what, res.DownNote, res.UpNote))
		res.DownNote, res.UpNote = "solo: "+res.DownNote, "solo: "+res.UpNote
		return res, false
	}
	procs := fp.Procs()
	var base [2]int64
	for i, c := range procs {
		s, err := c.Sample()
		if err != nil {
			r.pathErr(PathFerry, err)
			return res, false
		}
		base[i] = s.RSS
	}
	var peak [2]int64
	sample := func() {
		for i, c := range procs {
			if s, err := c.Sample(); err == nil {
				peak[i] = max(peak[i], s.RSS)
			}
		}
	}

	// One live connection held throughout: the gauges must come back to
	// it, not to zero.
	keep, err := requestBy(fp.Addr(), []byte{modeEcho}, modeEcho, time.Now().Add(wait))
	if err != nil {
		r.pathErr(PathFerry, fmt.Errorf("stall test, %s: open the live connection: %w", what, err))
		return res, false
	}
	defer keep.Close()
	const live = 1

	// The echo after must go through the same tunnel: the agent's connect
	// attempts must not move meanwhile.
	connects0, cerr0 := fp.tunnelConnects(ctx)

	st := r.openStalled(fp.Addr(), kind, n, time.Now().Add(wait))
	defer st.close()
	res.Opened = len(st.conns)
	if st.err != nil {
		res.OpenNote = fmt.Sprintf("opened %d of %d: %v", len(st.conns), n, st.err)
	}
	t0 := time.Now()
	res.HeldMiB = mib(st.waitFull(wait))
	res.FillSeconds = time.Since(t0).Seconds()
	sample()
	r.logf("[ferry] stall: %s: %d open, %.1f MiB held after %.1f s", what, res.Opened, res.HeldMiB, res.FillSeconds)

	res.DownMBps, res.DownNote = r.stallTransfer(fp, false, dur)
	sample()
	res.UpMBps, res.UpNote = r.stallTransfer(fp, true, dur)
	sample()
	for i := range procs {
		res.RSSGrowthMiB[i] = mib(max(peak[i]-base[i], 0))
	}
	res.StillOpen, res.OpenNote = st.stillOpen(res.OpenNote)

	// The resets: the stalled clients reset their connections, or the
	// stalled targets theirs; then the gauges must come back to the live
	// count.
	r.logf("[ferry] stall: %s: fast transfers done; resetting the stalled connections", what)
	t0 = time.Now()
	switch kind {
	case StallDownloads:
		st.reset()
	case StallUploads:
		got, err := resetStalled(sinkAddr, st.group)
		switch {
		case err != nil:
			r.pathErr(PathFerry, fmt.Errorf("stall test, %s: %w", what, err))
		case got != len(st.conns):
			res.FreeNote = fmt.Sprintf("the sink reset %d stalled targets, %d were opened", got, len(st.conns))
		}
	}
	freed, gw, ag, err := fp.waitStreams(ctx, live, t0.Add(wait))
	res.LeftGateway, res.LeftAgent = gw, ag
	switch {
	case err != nil:
		res.FreeNote = strings.TrimPrefix(res.FreeNote+"; "+err.Error(), "; ")
	case freed:
		res.FreedSeconds = time.Since(t0).Seconds()
	}
	st.close()

	// The same tunnel must carry a new connection.
	if c, err := requestBy(fp.Addr(), []byte{modeEcho}, modeEcho, time.Now().Add(wait)); err != nil {
		res.EchoNote = err.Error()
	} else {
		c.SetDeadline(time.Now().Add(wait))
		if err := EchoByte(c, 0x5a, make([]byte, 1)); err != nil {
			res.EchoNote = err.Error()
			if errors.Is(err, ErrCorrupt) {
				r.pathErr(PathFerry, fmt.Errorf("stall test, %s: echo after: %w", what, err))
			}
		} else {
			res.EchoAfter = true
		}
		c.Close()
	}
	switch connects, err := fp.tunnelConnects(ctx); {
	case cerr0 != nil || err != nil:
		res.EchoAfter = false
		res.EchoNote = strings.TrimPrefix(fmt.Sprintf("%s; cannot tell whether the tunnel is the same: %v", res.EchoNote, errors.Join(cerr0, err)), "; ")
	case connects != connects0:
		res.EchoAfter = false
		res.EchoNote = strings.TrimPrefix(fmt.Sprintf("%s; not the same tunnel: the agent made %g tunnel connect attempts meanwhile", res.EchoNote, connects-connects0), "; ")
	}
	freedText := fmt.Sprintf("streams freed in %.3f s", res.FreedSeconds)
	if res.FreedSeconds < 0 {
		freedText = fmt.Sprintf("streams not freed within %s (gateway %g, agent %g active, live %d)", wait, gw, ag, live)
	}
	r.logf("[ferry] stall: %s: download %.1f of %.1f MB/s%s, upload %.1f of %.1f MB/s%s, RSS +%.1f/+%.1f MiB, %d still open, %s, echo after: %v",
		what, res.DownMBps, res.SoloDownMBps, noteSuffix(res.DownNote), res.UpMBps, res.SoloUpMBps, noteSuffix(res.UpNote),
		res.RSSGrowthMiB[0], res.RSSGrowthMiB[1], res.StillOpen, freedText, res.EchoAfter)
	return res, true
}

func noteSuffix(n string) string {
	if n == "" {
		return ""
	}
	return " (" + n + ")"
}

// stalledSet is the stalled connections of one case, client side.
type stalledSet struct {
	kind  string
	group uint64 // the sink's group of stalled targets (uploads)
	conns []*net.TCPConn
	err   error // why fewer than asked for opened

	// Uploads: one writer per connection, writing until its connection
	// fails; the set waits for them in close.
	wg      sync.WaitGroup
	written atomic.Int64
	failed  atomic.Int32
	once    sync.Once
}

// openStalled opens n stalled connections through addr, each step bound
// by deadline. Downloads are all opened before any starts, so that the
// first to fill cannot keep the later ones from opening.
func (r *runner) openStalled(addr, kind string, n int, deadline time.Time) *stalledSet {
	st := &stalledSet{kind: kind, group: rand.Uint64()}
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	for range min(n, 16) {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= n || st.err != nil {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				var c *net.TCPConn
				var err error
				if kind == StallDownloads {
					c, err = openStalledDownload(addr, rand.Int64(), deadline)
				} else {
					c, err = openStalledTarget(addr, st.group, deadline)
				}
				mu.Lock()
				if err != nil {
					if st.err == nil {
						st.err = err
					}
				} else {
					st.conns = append(st.conns, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, c := range st.conns {
		switch kind {
		case StallDownloads:
			if err := startStalledDownload(c); err != nil && st.err == nil {
				st.err = err
			}
		case StallUploads:
			st.wg.Go(func() {
				buf := r.pat.At(rand.Int64(), chunk)
				for {
					n, err := c.Write(buf)
					st.written.Add(int64(n))
					if err != nil {
						st.failed.Add(1)
						return
					}
				}
			})
		}
	}
	return st
}

// held is what the stalled connections have taken in so far.
func (st *stalledSet) held() int64 {
	if st.kind == StallUploads {
		return st.written.Load()
	}
	var n int64
	for _, c := range st.conns {
		n += int64(unreadBytes(c))
	}
	return n
}

// waitFull samples held every 100 ms until it has grown by less than
// 1 % (and 64 KiB) over the last half second, or until wait has passed,
// and returns it. Sampling a state, not a sleep standing in for an event:
// nothing tells the bench that a stalled path is full.
func (st *stalledSet) waitFull(wait time.Duration) int64 {
	const window = 5
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(wait)
	hist := []int64{st.held()}
	for time.Now().Before(end) {
		<-tick.C
		h := st.held()
		hist = append(hist, h)
		if len(hist) > window {
			old := hist[len(hist)-1-window]
			if h-old < max(64<<10, old/100) {
				return h
			}
		}
	}
	return hist[len(hist)-1]
}

// stillOpen counts the stalled connections still open, looked at without
// blocking or reading: no end of stream, no reset, and (uploads) no
// failed write.
func (st *stalledSet) stillOpen(note string) (int, string) {
	open := 0
	var why []string
	for _, c := range st.conns {
		if ok, w := connState(c); ok {
			open++
		} else if len(why) < 1 {
			why = append(why, w)
		}
	}
	if f := int(st.failed.Load()); f > 0 {
		open = max(0, min(open, len(st.conns)-f))
		why = append(why, fmt.Sprintf("%d stalled writers got an error", f))
	}
	if len(why) > 0 {
		note = strings.TrimPrefix(note+"; "+strings.Join(why, "; "), "; ")
	}
	return open, note
}

// reset resets every stalled client connection (linger 0).
func (st *stalledSet) reset() {
	for _, c := range st.conns {
		resetConn(c)
	}
}

// close resets what is left and waits for the writers.
func (st *stalledSet) close() {
	st.once.Do(func() {
		st.reset()
		st.wg.Wait()
	})
}

// waitStreams samples both processes' streams_active gauges every 20 ms
// until both are at live or deadline passes; it returns whether they got
// there and the last values read.
func (p *ferryPath) waitStreams(ctx context.Context, live int, deadline time.Time) (ok bool, gw, ag float64, err error) {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		gw, err = scrapeGauge(ctx, client, "http://"+p.adminAddr+"/metrics", "ferry_gateway_streams_active")
		if err == nil {
			ag, err = scrapeGauge(ctx, client, "http://"+p.agentAddr+"/metrics", "ferry_agent_streams_active")
		}
		if err != nil {
			return false, gw, ag, err
		}
		if gw == float64(live) && ag == float64(live) {
			return true, gw, ag, nil
		}
		if time.Now().After(deadline) {
			return false, gw, ag, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false, gw, ag, ctx.Err()
		}
	}
}

// tunnelConnects is the agent's count of tunnel connect attempts, all
// results.
func (p *ferryPath) tunnelConnects(ctx context.Context) (float64, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	return scrapeGauge(ctx, client, "http://"+p.agentAddr+"/metrics", "ferry_agent_tunnel_connects_total")
}

// scrapeGauge reads one metric from a Prometheus text exposition at url,
// summed over its label sets.
func scrapeGauge(ctx context.Context, client *http.Client, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parseGauge(bufio.NewScanner(resp.Body), name)
}

// parseGauge sums the samples of metric name in a text exposition.
func parseGauge(sc *bufio.Scanner, name string) (float64, error) {
	var sum float64
	found := false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			i := strings.LastIndexByte(rest, '}')
			if i < 0 {
				continue
			}
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %w", name, line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("no metric %s", name)
	}
	return sum, nil
}
