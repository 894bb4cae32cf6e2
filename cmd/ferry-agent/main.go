// Command ferry-agent runs inside a private network and opens outbound
// WebSocket-over-TLS tunnels to a Ferry gateway, through which the gateway
// reaches the targets this agent's allow-list permits.
//
// Usage:
//
//	ferry-agent [run] --config FILE   run in the foreground (the default)
//	ferry-agent status [--config FILE] [--json]
//	ferry-agent version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ferry-tunnel/ferry/access"
	"github.com/ferry-tunnel/ferry/agent"
	"github.com/ferry-tunnel/ferry/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage:
  ferry-agent [run] --config FILE      run the agent in the foreground (default command)
  ferry-agent status [--config FILE] [--json]
                                       show the running agent's tunnels and connections
  ferry-agent version                  print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runAgent(args, stderr)
	case "status":
		return status(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "ferry-agent %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ferry-agent: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

func defaultConfigPath() string {
	if runtime.GOOS == "windows" {
		return os.ExpandEnv(`${ProgramData}\Ferry\agent.toml`)
	}
	return "/etc/ferry/agent.toml"
}

func runAgent(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath(), "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.LoadAgent(*path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	log := newLogger(stderr, cfg.Log)
	lock, err := agent.AcquireLock(cfg.Agent.LockFile, "config "+*path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	defer lock.Release()
	a, err := agent.New(cfg, agent.Options{Version: version, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload(*path, a, log)
			}
		}
	}()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	return 0
}

// reload applies a changed [access] section (SIGHUP). A config that no
// longer loads leaves the running allow-list in place.
func reload(path string, a *agent.Agent, log *slog.Logger) {
	cfg, err := config.LoadAgent(path)
	if err != nil {
		log.Error("reload failed; keeping the current allow-list", "err", err)
		return
	}
	p, err := access.Parse(cfg.Access.Allow)
	if err != nil {
		log.Error("reload failed; keeping the current allow-list", "err", err)
		return
	}
	a.SetPolicy(p)
	log.Info("allow-list reloaded", "rules", len(p.Rules()))
}

func newLogger(w io.Writer, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

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
