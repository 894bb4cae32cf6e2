// Command ferry-agent runs inside a private network and opens outbound
// WebSocket-over-TLS tunnels to a Ferry gateway, through which the gateway
// reaches the targets this agent's allow-list permits.
//
// Usage:
//
//	ferry-agent [run] --config FILE   run in the foreground (the default)
//	ferry-agent check [--config FILE] [--target host:port]
//	ferry-agent status [--config FILE] [--json]
//	ferry-agent healthcheck [--config FILE] [--url URL]
//	ferry-agent service install|uninstall|start|stop   (systemd, Windows service)
//	ferry-agent version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/ferry-tunnel/ferry/access"
	"github.com/ferry-tunnel/ferry/agent"
	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/internal/idlemem"
	"github.com/ferry-tunnel/ferry/internal/logfile"
	"github.com/ferry-tunnel/ferry/internal/procs"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage:
  ferry-agent [run] --config FILE      run the agent in the foreground (default command)
  ferry-agent check [--config FILE] [--target host:port]
                                       test the config, firewall, proxy, TLS and token, and
                                       say which allow rule admits a target; exit 1 on failure
  ferry-agent status [--config FILE] [--json]
                                       show the running agent's tunnels and connections
  ferry-agent service install|uninstall|...
                                       run as a system service (systemd unit, Windows service);
                                       "ferry-agent service help" lists the options
  ferry-agent version                  print the version
` + healthcheckUsage

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
	case "check":
		return check(args, stdout, stderr)
	case "status":
		return status(args, stdout, stderr)
	case "service":
		return serviceMain(args, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, stdout, stderr)
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
	logw, closeLog, err := openLogOutput(stderr, cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	defer closeLog()
	log := newLogger(logw, cfg.Log)
	pc := procs.Apply(cfg.Agent.MaxProcs)
	log.Info("cpu limit", "max_procs", pc.Procs, "cpus_available", pc.Available, "set_by", pc.Source)
	lock, err := agent.AcquireLock(cfg.Agent.LockFile, "config "+*path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	defer lock.Release()
	sd := newSystemdNotifier(log)
	a, err := agent.New(cfg, agent.Options{Version: version, Logger: log, OnReady: sd.Ready})
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer idlemem.Start(ctx, idlemem.Interval, a.Idle)()
	context.AfterFunc(ctx, sd.Stopping)
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

// openLogOutput returns where the log goes: w, and also the rotating
// [log] file when one is set. close closes that file.
func openLogOutput(w io.Writer, l config.Log) (out io.Writer, close func(), err error) {
	if l.File == "" {
		return w, func() {}, nil
	}
	f, err := logfile.Open(logfile.Config{Path: l.File, MaxSize: int64(l.MaxSizeMB) << 20, MaxFiles: l.MaxFiles})
	if err != nil {
		return nil, nil, fmt.Errorf("[log] file: %w", err)
	}
	return logfile.Tee(w, f), func() { f.Close() }, nil
}

func newLogger(w io.Writer, l config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
