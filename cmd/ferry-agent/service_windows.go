//go:build windows

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferry-tunnel/ferry/agent"
	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/internal/idlemem"
	"github.com/ferry-tunnel/ferry/internal/logfile"
	"github.com/ferry-tunnel/ferry/internal/winsvc"
)

const serviceUsage = `usage:
  ferry-agent service install [--config PATH] [--binary PATH]
        register the Windows service FerryAgent (automatic start, restart on
        failure), create the config folder (SYSTEM and Administrators only) and
        an example config if there is none, and print the next steps
  ferry-agent service uninstall     stop (drain) and remove the service; config and token stay
  ferry-agent service start         start the service
  ferry-agent service stop          stop the service (it drains for up to shutdown_grace)
  ferry-agent service run [--config PATH]
        what the Service Control Manager starts; not for a console
`

const (
	svcName        = "FerryAgent"
	svcDisplayName = "Ferry agent"
	svcDescription = "Egress-only tunnel to a Ferry gateway: outbound TLS on port 443, dials only the targets its allow-list permits."
	// svcStopTimeout bounds waiting for the drain (shutdown_grace, 30s by
	// default) in stop and uninstall.
	svcStopTimeout  = 2 * time.Minute
	svcStartTimeout = 30 * time.Second
)

func serviceCommand(cmd string, args []string, stdout, stderr io.Writer) int {
	var err error
	switch cmd {
	case "install":
		err = installService(args, stdout, stderr)
	case "uninstall", "start", "stop":
		fs := flag.NewFlagSet("service "+cmd, flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
			return 2
		}
		switch cmd {
		case "uninstall":
			if err = winsvc.Uninstall(svcName, svcStopTimeout); err == nil {
				fmt.Fprintf(stdout, "removed the service %s; kept the config, token and logs in %s\n", svcName, ferryDir())
			}
		case "start":
			if err = winsvc.Start(svcName, svcStartTimeout); err == nil {
				fmt.Fprintf(stdout, "%s is running; log: %s\n", svcName, serviceLogPath())
			}
		case "stop":
			if err = winsvc.Stop(svcName, svcStopTimeout); err == nil {
				fmt.Fprintf(stdout, "%s stopped\n", svcName)
			}
		}
	case "run":
		return runService(args, stderr)
	default:
		fmt.Fprintf(stderr, "ferry-agent: unknown service command %q\n%s", cmd, serviceUsage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry-agent: service %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// ferryDir is %ProgramData%\Ferry: config, token, lock and logs.
func ferryDir() string { return filepath.Dir(defaultConfigPath()) }

func serviceLogPath() string { return filepath.Join(ferryDir(), "logs", "agent.log") }

func installService(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("service install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", defaultConfigPath(), "config file the service runs with")
	self, _ := os.Executable()
	binary := fs.String("binary", self, "ferry-agent.exe the service runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := checkPath("--config", *cfgPath, filepath.IsAbs); err != nil {
		return err
	}
	if err := checkPath("--binary", *binary, filepath.IsAbs); err != nil {
		return err
	}
	dir := filepath.Dir(*cfgPath)
	for _, d := range []string{ferryDir(), dir} {
		if err := winsvc.SecureDir(d); err != nil {
			return fmt.Errorf("config folder %s: %w", d, err)
		}
	}
	tokenPath := filepath.Join(dir, "agent.token")
	wrote, err := writeIfAbsent(*cfgPath, []byte(exampleConfig(tokenPath)), 0o640)
	if err != nil {
		return fmt.Errorf("write example config: %w", err)
	}
	err = winsvc.Install(winsvc.Spec{
		Name: svcName, DisplayName: svcDisplayName, Description: svcDescription,
		Exe: *binary, Args: []string{"service", "run", "--config", *cfgPath},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "installed the service %s (%q): automatic start, restarts on failure\n", svcName, svcDisplayName)
	fmt.Fprintf(stdout, "%s is readable by SYSTEM and Administrators only\n", dir)
	if wrote {
		fmt.Fprintf(stdout, "wrote an example config %s: set the gateway url and the allow-list\n", *cfgPath)
	} else {
		fmt.Fprintf(stdout, "kept the existing config %s\n", *cfgPath)
	}
	if pf := os.Getenv("ProgramFiles"); pf != "" && !strings.HasPrefix(strings.ToLower(*binary), strings.ToLower(pf)+`\`) {
		fmt.Fprintf(stdout, "note: the service runs %s; if that file moves or is deleted the service cannot start\n"+
			"      (keep it in %s, then \"ferry-agent service uninstall\" and install again from there)\n", *binary, filepath.Join(pf, "Ferry"))
	}
	fmt.Fprintf(stdout, `
next steps (PowerShell as Administrator):
  1. write the token from "ferry-gateway agents create":
       Set-Content -NoNewline -Path '%s' -Value '<token>'
  2. edit %s: the gateway url and [access] allow
  3. check it: & '%s' check --config '%s'
  4. start it: & '%s' service start     (or Start-Service %s)
  5. log: %s (or [log] file; rotated by [log] max_size_mb and max_files); errors also in
     Event Viewer > Windows Logs > Application, source %s
`, tokenPath, *cfgPath, *binary, *cfgPath, *binary, svcName, serviceLogPath(), svcName)
	return nil
}

// running is the agent the service runs, for reloads.
type running struct {
	a    *agent.Agent
	log  *slog.Logger
	path string
}

// runService is what the SCM starts: the agent, logging to a rotating file
// and errors to the event log, stopped by the SCM with a drain.
func runService(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("service run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath(), "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if is, err := winsvc.IsService(); err != nil || !is {
		fmt.Fprintln(stderr, `ferry-agent: "service run" is started by the Service Control Manager; in a console use "ferry-agent run" or "ferry-agent service start"`)
		return 2
	}
	var ev winsvc.EventLog = discardEvents{}
	if el, err := winsvc.OpenEventLog(svcName); err == nil {
		defer el.Close()
		ev = el
	}
	var cur atomic.Pointer[running]
	err := winsvc.Run(svcName, winsvc.Program{
		Run: func(ctx context.Context, ready func()) error {
			return serveService(ctx, *path, ev, ready, &cur)
		},
		Reload: func() {
			if r := cur.Load(); r != nil {
				reload(r.path, r.a, r.log)
			}
		},
	})
	if err != nil {
		ev.Error(winsvc.EventLogged, fmt.Sprintf("ferry-agent: service: %v", err))
		return 1
	}
	return 0
}

// serveService runs the agent until ctx ends (Stop or Shutdown), then
// drains as on SIGTERM. The log goes to [log] file, by default
// %ProgramData%\Ferry\logs\agent.log, rotated by [log] max_size_mb and
// max_files; errors, start and stop also go to the event log. A service has
// no console, so what goes wrong before the log file is open goes to the
// event log only.
func serveService(ctx context.Context, path string, ev winsvc.EventLog, ready func(), cur *atomic.Pointer[running]) error {
	fail := func(err error) error {
		ev.Error(winsvc.EventLogged, fmt.Sprintf("ferry-agent did not start: %v", err))
		return err
	}
	cfg, err := config.LoadAgent(path)
	if err != nil {
		return fail(err)
	}
	if cfg.Log.File == "" {
		cfg.Log.File = serviceLogPath()
	}
	w, err := logfile.Open(logfile.Config{Path: cfg.Log.File, MaxSize: int64(cfg.Log.MaxSizeMB) << 20, MaxFiles: cfg.Log.MaxFiles})
	if err != nil {
		return fail(fmt.Errorf("[log] file: %w", err))
	}
	defer w.Close()
	log := slog.New(winsvc.NewEventHandler(newLogger(w, cfg.Log).Handler(), ev, slog.LevelError))
	fail = func(err error) error {
		log.Error("ferry-agent did not start", "err", err) // to the file and the event log
		return err
	}
	lock, err := agent.AcquireLock(cfg.Agent.LockFile, "Windows service "+svcName+", config "+path)
	if err != nil {
		return fail(err)
	}
	defer lock.Release()
	a, err := agent.New(cfg, agent.Options{Version: version, Logger: log, OnReady: ready})
	if err != nil {
		return fail(err)
	}
	defer idlemem.Start(ctx, idlemem.Interval, a.Idle)()
	cur.Store(&running{a: a, log: log, path: path})
	ev.Info(winsvc.EventStarted, fmt.Sprintf("Ferry agent %s started with %s; log: %s", version, path, cfg.Log.File))
	if err := a.Run(ctx); err != nil {
		return fail(err)
	}
	ev.Info(winsvc.EventStopped, "Ferry agent stopped")
	return nil
}

// discardEvents stands in when the event log source cannot be opened.
type discardEvents struct{}

func (discardEvents) Info(uint32, string) error    { return nil }
func (discardEvents) Warning(uint32, string) error { return nil }
func (discardEvents) Error(uint32, string) error   { return nil }
