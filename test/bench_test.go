package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/bench"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// TestBenchSmoke runs ferry-bench (`make bench`) in a tiny mode: every path,
// every test, a fraction of a second each, 200 idle connections instead
// of 10,000, one short WAN profile and 8 stalled readers each way. It asserts only that the run completes, that every byte it
// moved was verified, and that it produced every figure; never a timing.
func TestBenchSmoke(t *testing.T) {
	benchBin := filepath.Join(t.TempDir(), "ferry-bench")
	build := exec.Command("go", "build", "-o", benchBin, "./internal/cmd/ferry-bench")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ferry-bench: %v\n%s", err, out)
	}

	s := bench.DefaultSettings()
	s.Duration = 200 * time.Millisecond
	s.Reps = 1
	s.IdleConns = []int{200}
	s.Settle = 200 * time.Millisecond
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	start := time.Now()
	s.Tests = bench.AllTests
	r := testutil.Run(t, 4*time.Minute, nil, benchBin,
		"-agent", agentBin, "-gateway", gatewayBin,
		"-duration", s.Duration.String(), "-reps", "1", "-idle-conns", "200", "-settle", s.Settle.String(),
		"-tests", strings.Join(s.Tests, ","),
		"-wan", "20ms@1gbit", "-wan-conns", "1", "-wan-duration", "300ms",
		"-stall", "8", "-stall-up", "8", "-stall-lines", "loopback", "-stall-wait", "5s",
		"-dir", t.TempDir(), "-json", jsonPath)
	t.Logf("ferry-bench ran for %s", time.Since(start).Round(time.Millisecond))
	if r.Code != 0 {
		t.Fatalf("ferry-bench exited %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "verified: every byte moved arrived intact") {
		t.Errorf("the table does not say the data was verified:\n%s", r.Stdout)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var res bench.Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("ferry-bench JSON: %v", err)
	}
	if res.Corrupt || len(res.Errors) > 0 {
		t.Errorf("ferry-bench JSON: corrupt=%v errors=%v", res.Corrupt, res.Errors)
	}
	if len(res.Paths) != len(bench.AllPaths) {
		t.Errorf("measured paths %v, want %v", res.Paths, bench.AllPaths)
	}
	if missing := bench.MissingFigures(&res, s); len(missing) > 0 {
		t.Errorf("figures missing from the JSON: %s", strings.Join(missing, ", "))
	}
	if len(res.WAN) != 1 {
		t.Errorf("WAN profiles in the JSON: %d, want 1", len(res.WAN))
	}
	if len(res.Stall) != 2 {
		t.Errorf("stall results in the JSON: %d, want 2 (8 stalled downloads, 8 stalled uploads)", len(res.Stall))
	}
	if len(res.Targets) == 0 {
		t.Error("no target was evaluated for the ferry column")
	}
	t.Logf("table:\n%s", r.Stdout)
}
