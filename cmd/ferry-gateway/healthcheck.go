package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ferry-tunnel/ferry/config"
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
		if *url, err = probeURL("listen.admin", cfg.Listen.Admin, "/readyz"); err != nil {
			fmt.Fprintf(stderr, "ferry-gateway healthcheck: %v\n", err)
			return 1
		}
	}
	msg, err := probe(*url, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-gateway healthcheck: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", *url, msg)
	return 0
}

// probeURL turns a listen address into a URL on the same port that a
// process on this host can reach: a wildcard host becomes loopback.
func probeURL(key, listen, path string) (string, error) {
	if listen == "" {
		return "", fmt.Errorf("%s is empty: nothing to probe (set it, or give --url)", key)
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%s %q: %v", key, listen, err)
	}
	if port == "0" {
		return "", fmt.Errorf("%s %q: port 0 is chosen at start; give --url", key, listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// probe GETs url and returns the first line of a 200 answer; any other
// status is an error holding the first line of the body.
func probe(url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("--url %q: %v", url, err)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap() // drop the repeated `Get "url":`
		}
		return "", fmt.Errorf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, line)
	}
	return line, nil
}
