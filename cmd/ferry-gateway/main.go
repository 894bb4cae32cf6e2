// Command ferry-gateway runs in the cloud: it accepts agent tunnels and
// proxies connections through them (serve), and administers agents and
// connections through the admin API (the other commands).
//
// Usage:
//
//	ferry-gateway serve --config FILE
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
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage:\n  ferry-gateway serve --config FILE\n"+cli.Usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
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
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	var log *slog.Logger
	if cfg.Log.Format == "json" {
		log = slog.New(slog.NewJSONHandler(stderr, opts))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, opts))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := gateway.New(ctx, cfg, gateway.Options{Version: version, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "ferry-gateway: %v\n", err)
		return 1
	}
	if err := g.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "ferry-gateway: %v\n", err)
		return 1
	}
	return 0
}
