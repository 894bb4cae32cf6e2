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

const healthcheckUsage = "  ferry-gateway healthcheck [--config FILE] [--url URL]   exit 0 when the admin listener's /readyz answers 200\n"

// healthcheck asks the running gateway's /readyz (on [listen] admin, or
// --url): exit 0 on 200, else 1 with a one-line reason (503 while the
// gateway drains). It is the container image's HEALTHCHECK, so it needs no
// shell and reads the same config and FERRY_GATEWAY_* environment as serve.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultGatewayPath(), "config file (for [listen] admin)")
	url := fs.String("url", "", "URL to probe instead of http://<[listen] admin>/readyz")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ferry-gateway healthcheck: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *url == "" {
		cfg, err := config.ReadGateway(*path)
		if err != nil {
			// One line: the health log keeps only the start of the output.
			fmt.Fprintf(stderr, "ferry-gateway healthcheck: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			return 1
		}
		if *url, err = metrics.ReadyURL("listen.admin", cfg.Listen.Admin); err != nil {
			fmt.Fprintf(stderr, "ferry-gateway healthcheck: %v\n", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	msg, err := metrics.ProbeReady(ctx, *url)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-gateway healthcheck: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", *url, msg)
	return 0
}
