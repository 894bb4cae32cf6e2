package bench

import (
	"testing"
	"time"
)

func TestParseProfiles(t *testing.T) {
	t.Parallel()
	got, err := ParseProfiles("50ms, 150ms@1gbit,loopback,20ms@100mbit,")
	if err != nil {
		t.Fatal(err)
	}
	want := []Profile{
		{Name: "50ms", RTT: 50 * time.Millisecond},
		{Name: "150ms@1gbit", RTT: 150 * time.Millisecond, Rate: 125e6},
		Loopback,
		{Name: "20ms@100mbit", RTT: 20 * time.Millisecond, Rate: 12.5e6},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d profiles %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("profile %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !got[2].IsLoopback() || got[0].IsLoopback() {
		t.Error("IsLoopback wrong")
	}
	for _, bad := range []string{"50", "0ms", "-5ms", "50ms@", "50ms@1gbps", "50ms@0gbit", "50ms@fastgbit"} {
		if _, err := ParseProfiles(bad); err == nil {
			t.Errorf("%q parsed, want an error", bad)
		}
	}
	if ps, err := ParseProfiles(""); err != nil || len(ps) != 0 {
		t.Errorf(`"" = %v, %v; want none`, ps, err)
	}
}

func TestProfileLimits(t *testing.T) {
	t.Parallel()
	capped, _ := ParseProfile("50ms@1gbit")
	if q := capped.Queue(); q != 125e6/20+4<<20 {
		t.Errorf("queue %d, want the BDP over the round trip plus 4 MiB", q)
	}
	if l := capped.LineLimit(); l != 125e6 {
		t.Errorf("capped line limit %g, want the cap", l)
	}
	open, _ := ParseProfile("50ms")
	if q := open.Queue(); q != DefaultLineQueue {
		t.Errorf("uncapped queue %d, want %d", q, DefaultLineQueue)
	}
	if l, want := open.LineLimit(), float64(DefaultLineQueue)/0.025; l != want {
		t.Errorf("uncapped line limit %g, want queue per one-way delay %g", l, want)
	}
	wp := wanProfile(open, 32<<20)
	if want := float64(32<<20) / 0.05 / 1e6; wp.FerryBoundMBps != want {
		t.Errorf("ferry bound %g MB/s, want window/RTT %g", wp.FerryBoundMBps, want)
	}
}

// TestWANTargets: over a capped line Ferry with several connections is
// judged against one TLS-forwarder connection; uncapped lines have no
// targets.
func TestWANTargets(t *testing.T) {
	t.Parallel()
	s := DefaultSettings()
	s.Tests = []string{TestWAN}
	s.WAN, _ = ParseProfiles("50ms,50ms@1gbit")
	s.WANConns = []int{1, 8}
	res := &Results{Figures: map[string]map[string]float64{
		PathFerry: {
			wanKey("50ms@1gbit", true, 1): 100, wanKey("50ms@1gbit", true, 8): 110,
			wanKey("50ms", true, 1): 10,
		},
		PathTLSFwd: {
			wanKey("50ms@1gbit", true, 1): 120, wanKey("50ms@1gbit", true, 8): 900,
			wanKey("50ms", true, 1): 500,
		},
	}}
	got := map[string]TargetResult{}
	for _, tr := range evalTargets(res, s) {
		got[tr.Figure] = tr
	}
	if len(got) != 2 {
		t.Fatalf("targets %v, want the two capped uploads with figures", got)
	}
	if tr := got[wanKey("50ms@1gbit", true, 1)]; tr.OK || tr.Value != 100.0/120 {
		t.Errorf("1 conn: %+v, want 100/120 missed", tr)
	}
	if tr := got[wanKey("50ms@1gbit", true, 8)]; !tr.OK || tr.Value != 110.0/120 || tr.Section != sectionWAN {
		t.Errorf("8 conns: %+v, want 110/120 (against ONE tls-fwd connection) met", tr)
	}
}
