package test

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

var reCPULimit = regexp.MustCompile(`msg="cpu limit" max_procs=(\d+) cpus_available=(\d+) set_by=(\w+)`)

// TestMaxProcs checks that max_procs reaches the Go scheduler of each
// process, as its log line and its go_sched_gomaxprocs_threads metric say,
// and that the automatic default leaves one CPU free.
func TestMaxProcs(t *testing.T) {
	g := startGateway(t, gatewayOpts{Extra: "[limits]\nmax_procs = 3"})
	m, err := g.Proc.Log.WaitFor(reCPULimit, startTimeout)
	if err != nil {
		t.Fatalf("gateway logged no cpu limit: %v", err)
	}
	if m[1] != "3" || m[3] != "config" {
		t.Errorf("gateway with max_procs = 3 logged %q", m[0])
	}
	if got := g.Metric(t, "go_sched_gomaxprocs_threads", nil); got != 3 {
		t.Errorf("gateway go_sched_gomaxprocs_threads = %v, want 3", got)
	}

	a := startAgent(t, g, agentOpts{Token: g.CreateAgent(t, "a1")})
	m, err = a.Proc.Log.WaitFor(reCPULimit, startTimeout)
	if err != nil {
		t.Fatalf("agent logged no cpu limit: %v", err)
	}
	procs, _ := strconv.Atoi(m[1])
	avail, _ := strconv.Atoi(m[2])
	if os.Getenv("GOMAXPROCS") == "" {
		if want := max(1, avail-1); procs != want || m[3] != "automatic" {
			t.Errorf("agent without max_procs logged %q, want max_procs=%d set_by=automatic", m[0], want)
		}
	}
	if got := a.Metric(t, "go_sched_gomaxprocs_threads", nil); got != float64(procs) {
		t.Errorf("agent go_sched_gomaxprocs_threads = %v, its log says %d", got, procs)
	}
}
