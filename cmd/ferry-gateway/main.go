// Command ferry-gateway runs in the cloud: it accepts agent tunnels and
// proxies connections through them (serve), and administers agents and
// connections through the admin API (the other commands).
//
// Usage:
//
//	ferry-gateway serve --config FILE
//	ferry-gateway healthcheck [--config FILE] [--url URL]
//	ferry-gateway agents create NAME [--description TEXT]
//	ferry-gateway agents list|show NAME|token NAME|delete NAME
//	ferry-gateway connections create NAME --agent A --target host:port --listen addr
//	ferry-gateway connections list|delete NAME
//	ferry-gateway version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/gateway"
	"github.com/ferry-tunnel/ferry/gateway/cli"
	"github.com/ferry-tunnel/ferry/internal/idlemem"
	"github.com/ferry-tunnel/ferry/internal/logfile"
	"github.com/ferry-tunnel/ferry/internal/procs"
	"github.com/ferry-tunnel/ferry/internal/sdnotify"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage:\n  ferry-gateway serve --config FILE\n"+healthcheckUsage+cli.Usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "healthcheck":
		return healthcheck(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "ferry-gateway %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cli.Run(ctx, args, os.Getenv, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, cli.ErrUsage):
		fmt.Fprintf(stderr, "ferry-gateway: %v\nusage:\n  ferry-gateway serve --config FILE\n%s", err, cli.Usage)
		return 2
	default:
		fmt.Fprintf(stderr, "ferry-gateway: %v\n", err)
		return 1
	}
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/ferry/gateway.toml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.LoadGateway(*path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry-gateway: %v\n", err)
		return 1
	}
	// The log goes to stderr and, when [log] file is set, also to that
	// rotating file.
	logw := stderr
	if cfg.Log.File != "" {
		f, err := logfile.Open(logfile.Config{Path: cfg.Log.File, MaxSize: int64(cfg.Log.MaxSizeMB) << 20, MaxFiles: cfg.Log.MaxFiles})
		if err != nil {
			fmt.Fprintf(stderr, "ferry-gateway: [log] file: %v\n", err)
			return 1
		}
		defer f.Close()
		logw = logfile.Tee(stderr, f)
	}
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	var log *slog.Logger
	if cfg.Log.Format == "json" {
		log = slog.New(slog.NewJSONHandler(logw, opts))
	} else {
		log = slog.New(slog.NewTextHandler(logw, opts))
	}
	pc := procs.Apply(cfg.Limits.MaxProcs)
	log.Info("cpu limit", "max_procs", pc.Procs, "cpus_available", pc.Available, "set_by", pc.Source)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := gateway.New(ctx, cfg, gateway.Options{Version: version, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "ferry-gateway: %v\n", err)
		return 1
	}
	defer idlemem.Start(ctx, idlemem.Interval, g.Idle)()
	// systemd Type=notify: READY=1 once listening, STOPPING=1 as the drain
	// begins; nothing outside systemd.
	sd, err := sdnotify.FromEnv(os.Getenv)
	if err != nil {
		log.Warn("not telling systemd the gateway's state", "err", err)
	}
	context.AfterFunc(ctx, func() { sd.Notify(sdnotify.Stopping, sdnotify.Status("draining")) })
	go func() { // ends with ctx at the latest
		select {
		case <-g.Ready():
			sd.Notify(sdnotify.Ready, sdnotify.Status("serving"))
		case <-ctx.Done():
		}
	}()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "ferry-gateway: %v\n", err)
		return 1
	}
	return 0
}
