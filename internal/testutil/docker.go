package testutil

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Docker returns the path of the docker client when a Docker daemon
// answers, or skips the test saying why (fails instead when
// FERRY_REQUIRE_SERVICES=1).
func Docker(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("docker")
	if err != nil {
		missing(t, "docker not found in PATH: the container tests need the Docker engine")
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		missing(t, "the Docker daemon does not answer ("+strings.TrimSpace(string(out))+"): the container tests need it")
		return ""
	}
	t.Logf("Docker engine %s", strings.TrimSpace(string(out)))
	return path
}

// Tool returns the path of a command-line tool a test needs, or skips the
// test (fails instead when FERRY_REQUIRE_SERVICES=1).
func Tool(t testing.TB, name, why string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, name+" not found in PATH: "+why)
	}
	return path
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatal(msg + "; " + EnvRequireServices + "=1 makes this a failure")
	}
	t.Skip(msg)
}
