package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// ReadyURL returns the URL of /readyz on the listener at listen (a
// host:port from the config, named by key in errors) that a process on this
// host can reach: a wildcard host becomes loopback. An empty address or port
// 0 is an error: there is nothing fixed to probe, and the message tells the
// operator to pass --url (the flag of both programs' healthcheck command).
func ReadyURL(key, listen string) (string, error) {
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
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}

// ProbeReady GETs url (normally from ReadyURL) and returns the first line
// of the body of a 200 answer. Any other status is an error naming the
// status and the first line of the body, so that it fits the one line a
// container health log keeps. ctx bounds the whole request; the caller sets
// its timeout. It is safe to call concurrently.
func ProbeReady(ctx context.Context, url string) (string, error) {
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
