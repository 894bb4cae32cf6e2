package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
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
	cfg, err := config.ReadAgent(*path) // no token needed; the environment applies as for run
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
	printStatus(stdout, st, time.Now())
	return 0
}

// printStatus writes st for a person: who and since when, the tunnels with
// their gateway IPs, and the recent errors, newest first.
func printStatus(w io.Writer, st agent.Status, now time.Time) {
	up := 0
	for _, t := range st.Tunnels {
		if t.State == "connected" {
			up++
		}
	}
	fmt.Fprintf(w, "ferry-agent %s on %s (instance %s)\n", st.Version, st.Hostname, st.Instance)
	fmt.Fprintf(w, "uptime:             %s (since %s)\n", ago(now, st.StartedAt), st.StartedAt.UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "gateway:            %s\n", st.Gateway)
	fmt.Fprintf(w, "tunnels:            %d of %d up\n", up, len(st.Tunnels))
	fmt.Fprintf(w, "active connections: %d\n", st.StreamsActive)
	if st.Draining {
		fmt.Fprintln(w, "state:              DRAINING (shutting down; no new connections)")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TUNNEL\tSTATE\tGATEWAY IP\tNODE\tUP FOR\tRTT\tCONNECTIONS")
	for _, t := range st.Tunnels {
		since, rtt := "-", "-"
		if t.ConnectedSince != nil {
			since = ago(now, *t.ConnectedSince)
		}
		if t.RTTSeconds > 0 {
			rtt = time.Duration(t.RTTSeconds * float64(time.Second)).Round(100 * time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", t.Index, t.State, orDash(t.GatewayIP), orDash(t.Node), since, rtt, t.Streams)
	}
	tw.Flush()

	errs := make([]agent.TunnelStatus, 0, len(st.Tunnels))
	for _, t := range st.Tunnels {
		if t.LastError != "" {
			errs = append(errs, t)
		}
	}
	if len(errs) == 0 {
		fmt.Fprintln(w, "\nrecent errors: none")
		return
	}
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].LastErrorAt == nil || errs[j].LastErrorAt == nil {
			return errs[j].LastErrorAt == nil && errs[i].LastErrorAt != nil
		}
		return errs[i].LastErrorAt.After(*errs[j].LastErrorAt)
	})
	fmt.Fprintln(w, "\nrecent errors (last per tunnel, newest first):")
	for _, t := range errs {
		when := "at an unknown time"
		if t.LastErrorAt != nil {
			when = ago(now, *t.LastErrorAt) + " ago"
		}
		fmt.Fprintf(w, "  tunnel %d, %s: %s\n", t.Index, when, t.LastError)
	}
}

// ago is the time from t to now, rounded for reading: seconds under an
// hour, minutes under a day, then days and hours.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%dd%dh", days, int((d%(24*time.Hour))/time.Hour))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
