// Package test holds Ferry's end-to-end tests: they build ferry-agent and
// ferry-gateway, run them as users do, and check what users see: bytes
// through the tunnel, exit codes, log lines, metrics and API answers.
package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Paths of the binaries TestMain builds.
var (
	agentBin   string
	gatewayBin string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	agentBin = filepath.Join(dir, "ferry-agent")
	gatewayBin = filepath.Join(dir, "ferry-gateway")
	start := time.Now()
	for bin, pkg := range map[string]string{agentBin: "./cmd/ferry-agent", gatewayBin: "./cmd/ferry-gateway"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = ".." // the module root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: built ferry-agent and ferry-gateway in %s\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}
