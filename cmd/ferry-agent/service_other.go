//go:build !linux && !windows

package main

import (
	"fmt"
	"io"
	"runtime"
)

const serviceUsage = "usage:\n  ferry-agent service: only on Linux (systemd) and Windows\n"

func serviceCommand(cmd string, args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "ferry-agent: service %s: not supported on %s; run \"ferry-agent run --config FILE\" under your service manager\n", cmd, runtime.GOOS)
	return 1
}
