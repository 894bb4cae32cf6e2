package ferry_test

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/ferry-tunnel/ferry/"

// TestDependencyDirection keeps data flowing one way: cmd → agent/gateway →
// shared packages. The agent binary must not contain gateway code (nor the
// gateway's store drivers), and the shared packages import neither side.
func TestDependencyDirection(t *testing.T) {
	t.Parallel()
	forbidden := map[string][]string{
		"cmd/ferry-agent": {mod + "gateway", mod + "store", "modernc.org/sqlite", "github.com/jackc/pgx"},
		"agent":           {mod + "gateway", mod + "store"},
		"gateway":         {mod + "agent"},
		"tunnel":          {mod + "agent", mod + "gateway"},
		"mux":             {mod + "agent", mod + "gateway", mod + "tunnel"},
		"metrics":         {mod + "agent", mod + "gateway"},
		"config":          {mod + "agent", mod + "gateway"},
		"access":          {mod + "agent", mod + "gateway"},
		"store":           {mod + "agent", mod + "gateway"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps ./%s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
