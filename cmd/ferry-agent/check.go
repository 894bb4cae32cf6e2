package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferry-tunnel/ferry/agent"
	"github.com/ferry-tunnel/ferry/config"
)

// check runs the diagnostics of agent.Check: exit 0 when every check
// passes, 1 when one fails, 2 for bad usage.
func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath(), "config file")
	target := fs.String("target", "", "host:port to explain against [access] allow and try to reach")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ferry-agent check: unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	cfg, err := config.LoadAgent(*path)
	if err != nil {
		agent.CheckConfigFailed(stdout, *path, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = agent.Check(ctx, cfg, agent.CheckOptions{ConfigPath: *path, Target: *target, Version: version}, stdout)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, agent.ErrCheckFailed):
		return 1
	default:
		fmt.Fprintf(stderr, "ferry-agent check: %v\n", err)
		return 1
	}
}
