package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferry-tunnel/ferry/internal/sdnotify"
)

// serviceMain runs `ferry-agent service SUBCOMMAND …`; the subcommands
// depend on the OS (service_linux.go, service_windows.go).
func serviceMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, serviceUsage)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, serviceUsage)
		return 0
	}
	return serviceCommand(args[0], args[1:], stdout, stderr)
}

// systemdNotifier speaks systemd's Type=notify protocol for the agent:
// Ready (for agent.Options.OnReady) says READY=1 once the agent serves, and
// Stopping says STOPPING=1 as the drain begins. Outside systemd both do
// nothing. A failed notification is logged, never fatal.
type systemdNotifier struct {
	sd  *sdnotify.Notifier
	log *slog.Logger
}

func newSystemdNotifier(log *slog.Logger) systemdNotifier {
	sd, err := sdnotify.FromEnv(os.Getenv)
	if err != nil {
		log.Warn("not telling systemd the agent's state", "err", err)
	}
	return systemdNotifier{sd: sd, log: log}
}

// Ready says READY=1.
func (n systemdNotifier) Ready() { n.send(sdnotify.Ready, sdnotify.Status("serving")) }

// Stopping says STOPPING=1.
func (n systemdNotifier) Stopping() { n.send(sdnotify.Stopping, sdnotify.Status("draining")) }

func (n systemdNotifier) send(state ...string) {
	if err := n.sd.Notify(state...); err != nil {
		n.log.Warn("systemd notification failed", "err", err)
	}
}

// exampleConfig is the agent.toml that `service install` writes when there
// is none: the keys an operator must fill in, with the token in its own
// file next to the config.
func exampleConfig(tokenFile string) string {
	return `# ferry-agent configuration, written by "ferry-agent service install".
# configs/agent.toml in the Ferry repository shows every key with its default.
# Test this file with: ferry-agent check --config <this file>

[gateway]
# The gateway's tunnel address (required): replace with yours.
url = "wss://gateway.example.com/v1/tunnel"
# A file holding only the agent token from "ferry-gateway agents create".
# It is read again on each reconnect: a rotated token needs no restart.
token_file = ` + strconv.Quote(tokenFile) + `

[access]
# What the gateway may reach through this agent, for example
# ["db.internal:5432", "10.20.0.0/16:5432-5439"]. Empty: nothing.
allow = []

[metrics]
# /metrics, /healthz, /readyz and /status for "ferry-agent status".
listen = "127.0.0.1:9464"

[log]
level = "info"
format = "text"
`
}

// checkPath refuses a path a service definition cannot carry.
func checkPath(what, p string, abs func(string) bool) error {
	if !abs(p) {
		return fmt.Errorf("%s %q: must be an absolute path", what, p)
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%s %q: contains control characters", what, p)
	}
	return nil
}

// writeIfAbsent creates path with data and mode unless it exists; it
// reports whether it wrote.
func writeIfAbsent(path string, data []byte, mode os.FileMode) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return false, err
	}
	return true, os.Chmod(path, mode) // the umask may have taken bits off
}

// writeFileAtomic replaces path with data through a temporary file in the
// same folder, so a reader never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
