package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/metrics"
)

const healthcheckUsage = `  ferry-agent healthcheck [--config FILE] [--url URL]
                                       exit 0 when the running agent's /readyz answers 200
`

// healthcheck asks the running agent's /readyz (on [metrics] listen, or
// --url) whether a tunnel is up: exit 0 on 200, else 1 with a one-line
// reason. It is the container image's HEALTHCHECK, so it needs no shell and
// reads the same config and FERRY_AGENT_* environment as the agent.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath(), "config file (for [metrics] listen)")
	url := fs.String("url", "", "URL to probe instead of http://<[metrics] listen>/readyz")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ferry-agent healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *url == "" {
		cfg, err := config.ReadAgent(*path)
		if err != nil {
			// One line: the health log keeps only the start of the output.
			fmt.Fprintf(stderr, "ferry-agent healthcheck: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			return 1
		}
		if *url, err = metrics.ReadyURL("metrics.listen", cfg.Metrics.Listen); err != nil {
			fmt.Fprintf(stderr, "ferry-agent healthcheck: %v\n", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	msg, err := metrics.ProbeReady(ctx, *url)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent healthcheck: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", *url, msg)
	return 0
}
