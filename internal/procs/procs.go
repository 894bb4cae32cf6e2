// Package procs chooses how many CPUs a Ferry process runs goroutines on
// (GOMAXPROCS).
//
// A tunnel process hands every frame between goroutines (the copy loops,
// smux's shaper and send loop, the batch flusher). When the Go scheduler has
// an idle processor, each hand-off wakes a thread on another CPU to steal
// the work, and that thread sleeps again a few microseconds later. On a
// small machine that also runs the kernel's network stack and the services
// the tunnel serves, those wake-ups cost more than the parallelism gains:
// measured on 2 CPUs, Ferry's two processes spent a fifth to a third less
// CPU per GB with one processor each than with two, and moved more
// (docs/performance.md). So by default a Ferry process leaves one CPU to
// the kernel and its neighbours.
package procs

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Sources of a Choice.
const (
	// SourceEnv: the GOMAXPROCS environment variable holds a positive
	// number; the runtime's reading of it stands.
	SourceEnv = "environment"
	// SourceConfig: the max_procs setting was positive.
	SourceConfig = "config"
	// SourceAuto: max_procs was 0, so one fewer than the CPUs available.
	SourceAuto = "automatic"
)

// Choice is how many processors a process runs with, and why.
type Choice struct {
	// Procs is the GOMAXPROCS the process runs with.
	Procs int
	// Available is what the Go runtime found: the machine's CPUs, or the
	// container's CPU limit (or the GOMAXPROCS environment variable).
	Available int
	// Source says which of SourceEnv, SourceConfig, SourceAuto decided.
	Source string
}

// Choose decides from the max_procs setting configured (0: automatic),
// the GOMAXPROCS environment variable env and the processors available
// by the runtime's default. It has no effect; Apply sets the result.
func Choose(configured int, env string, available int) Choice {
	c := Choice{Procs: available, Available: available}
	switch {
	case envSet(env):
		c.Source = SourceEnv
	case configured > 0:
		c.Procs, c.Source = configured, SourceConfig
	default:
		c.Procs, c.Source = max(1, available-1), SourceAuto
	}
	return c
}

// envSet reports whether the runtime took GOMAXPROCS=env: it ignores
// anything but a positive number.
func envSet(env string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(env))
	return err == nil && n > 0
}

// Apply sets GOMAXPROCS from the max_procs setting configured and returns
// what it chose. Only a program's main calls it, once, before starting
// work: it changes the whole process. Once set, the runtime no longer
// follows changes of a container's CPU limit; a restart picks them up.
func Apply(configured int) Choice {
	c := Choose(configured, os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0))
	if c.Source != SourceEnv {
		runtime.GOMAXPROCS(c.Procs)
	}
	return c
}
