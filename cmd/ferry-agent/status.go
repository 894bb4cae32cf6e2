package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/ferry-tunnel/ferry/agent"
	"github.com/ferry-tunnel/ferry/config"
)

func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath(), "config file (for [metrics] listen)")
	asJSON := fs.Bool("json", false, "print the raw JSON status")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	data, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: read config: %v\n", err)
		return 1
	}
	cfg, err := config.ParseAgent(data, *path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	if cfg.Metrics.Listen == "" {
		fmt.Fprintln(stderr, "ferry-agent: [metrics] listen is empty in "+*path+": the running agent serves no status")
		return 1
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + cfg.Metrics.Listen + "/status")
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: no running agent answers on %s: %v\n", cfg.Metrics.Listen, errors.Unwrap(err))
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "ferry-agent: status from %s: HTTP %d %v\n", cfg.Metrics.Listen, resp.StatusCode, err)
		return 1
	}
	if *asJSON {
		stdout.Write(body)
		return 0
	}
	var st agent.Status
	if err := json.Unmarshal(body, &st); err != nil {
		fmt.Fprintf(stderr, "ferry-agent: status: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "agent %s (instance %s) on %s, up %s\n", st.Version, st.Instance, st.Hostname, time.Since(st.StartedAt).Round(time.Second))
	fmt.Fprintf(stdout, "gateway %s, active connections %d", st.Gateway, st.StreamsActive)
	if st.Draining {
		fmt.Fprint(stdout, ", DRAINING")
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNNEL\tSTATE\tGATEWAY IP\tSINCE\tRTT\tSTREAMS\tLAST ERROR")
	for _, t := range st.Tunnels {
		since, rtt := "-", "-"
		if t.ConnectedSince != nil {
			since = time.Since(*t.ConnectedSince).Round(time.Second).String()
		}
		if t.RTTSeconds > 0 {
			rtt = time.Duration(t.RTTSeconds * float64(time.Second)).Round(100 * time.Microsecond).String()
		}
		last := t.LastError
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", t.Index, t.State, orDash(t.GatewayIP), since, rtt, t.Streams, last)
	}
	tw.Flush()
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
