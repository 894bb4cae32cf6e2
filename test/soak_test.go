package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// TestSoakShort runs `make soak`'s program (internal/cmd/ferry-soak) for a
// short while: churn with random sizes and verified checksums through a
// gateway pair and two agent replicas while they are restarted one at a
// time. It fails when a byte is lost or corrupted, a connection fails other
// than on a node that was deliberately down, or a process does not stop
// cleanly. SOAK_DURATION overrides the 30 s.
func TestSoakShort(t *testing.T) {
	t.Parallel()
	requireHostsRemap(t)
	duration := "30s"
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		duration = v
	}
	soakBin := filepath.Join(t.TempDir(), "ferry-soak")
	build := exec.Command("go", "build", "-o", soakBin, "./internal/cmd/ferry-soak")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ferry-soak: %v\n%s", err, out)
	}
	d, err := time.ParseDuration(duration)
	if err != nil {
		t.Fatalf("SOAK_DURATION: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	work := t.TempDir()
	cmd := exec.CommandContext(ctx, soakBin, "-duration", duration, "-agent-bin", agentBin, "-gateway-bin", gatewayBin, "-dir", work)
	cmd.Env = testutil.Environ()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	text := string(out)
	if i := strings.Index(text, "== ferry-soak totals =="); i >= 0 {
		t.Logf("soak finished in %s:\n%s", time.Since(start).Round(time.Second), text[i:])
	}
	if ctx.Err() != nil {
		t.Fatalf("ferry-soak still ran after %s:\n%s", d+2*time.Minute, text)
	}
	if err != nil {
		t.Errorf("ferry-soak failed (%v):\n%s", err, text)
		logNotable(t, filepath.Join(work, "logs"))
	}
}

// logNotable shows, from each process log of a failed soak, the lines that
// explain failures: resets, tunnels closing, warnings and errors.
func logNotable(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var keep []string
		for line := range strings.Lines(string(b)) {
			if strings.Contains(line, "reset=true") || strings.Contains(line, "tunnel closed") ||
				strings.Contains(line, "going away") || strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				keep = append(keep, strings.TrimRight(line, "\n"))
			}
		}
		if len(keep) > 60 {
			keep = keep[len(keep)-60:]
		}
		t.Logf("---- %s (notable lines) ----\n%s", filepath.Base(path), strings.Join(keep, "\n"))
	}
}
