package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferry-tunnel/ferry/configs/systemd"
)

const serviceUsage = `usage:
  ferry-agent service install [--config PATH] [--binary PATH] [--root DIR]
        write the systemd unit ferry-agent.service, create the config folder
        (mode 0750) and an example config if there is none, and print the next steps
  ferry-agent service uninstall [--root DIR]
        stop and disable the service and remove its unit (config and token stay)
`

const (
	unitName  = "ferry-agent.service"
	unitDir   = "/etc/systemd/system"
	svcUser   = "ferry"
	tokenName = "agent.token"
)

func serviceCommand(cmd string, args []string, stdout, stderr io.Writer) int {
	var err error
	switch cmd {
	case "install":
		err = installUnit(args, stdout, stderr)
	case "uninstall":
		err = uninstallUnit(args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "ferry-agent: unknown service command %q\n%s", cmd, serviceUsage)
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "ferry-agent: service %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n%s", fs.Arg(0), serviceUsage)
		return errUsage
	}
	return nil
}

// installUnit writes the unit and the config folder. With --root (tests,
// packagers) it changes files under that folder only and never runs
// systemctl or useradd; on the real root, as root, it creates the service
// user and gives it the config folder.
func installUnit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("service install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", systemd.AgentConfig, "config file the service runs with")
	binary := fs.String("binary", systemd.AgentBinary, "ferry-agent executable the service runs")
	root := fs.String("root", "/", "install below this folder instead of / (packaging, tests)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkPath("--config", *cfgPath, filepath.IsAbs); err != nil {
		return err
	}
	if err := checkPath("--binary", *binary, filepath.IsAbs); err != nil {
		return err
	}
	realRoot := filepath.Clean(*root) == "/"

	unitPath := filepath.Join(*root, unitDir, unitName)
	unit := []byte(systemd.Agent(*binary, *cfgPath))
	old, err := os.ReadFile(unitPath)
	verb := "wrote"
	switch {
	case err == nil && bytes.Equal(old, unit):
		verb = "unchanged:"
	case err == nil:
		verb = "updated"
	}
	if err := os.MkdirAll(filepath.Dir(unitPath), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(unitPath, unit, 0o644); err != nil {
		return fmt.Errorf("write unit: %w", err)
	}
	fmt.Fprintf(stdout, "%s %s\n", verb, unitPath)

	cfgDir := filepath.Join(*root, filepath.Dir(*cfgPath))
	if _, err := os.Stat(cfgDir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(cfgDir, 0o750); err != nil {
			return err
		}
		if err := os.Chmod(cfgDir, 0o750); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s (mode 0750)\n", cfgDir)
	} else if err != nil {
		return err
	}
	tokenPath := filepath.Join(filepath.Dir(*cfgPath), tokenName)
	cfgFile := filepath.Join(*root, *cfgPath)
	wrote, err := writeIfAbsent(cfgFile, []byte(exampleConfig(tokenPath)), 0o640)
	if err != nil {
		return fmt.Errorf("write example config: %w", err)
	}
	if wrote {
		fmt.Fprintf(stdout, "wrote an example config %s (mode 0640): set the gateway url and the allow-list\n", cfgFile)
	} else {
		fmt.Fprintf(stdout, "kept the existing config %s\n", cfgFile)
	}

	owned := false
	if realRoot && os.Geteuid() == 0 {
		if err := ensureUser(stdout); err != nil {
			fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		} else if err := giveGroup(filepath.Dir(*cfgPath), *cfgPath); err != nil {
			fmt.Fprintf(stderr, "ferry-agent: %v\n", err)
		} else {
			owned = true
			fmt.Fprintf(stdout, "%s and %s belong to root:%s now\n", filepath.Dir(*cfgPath), *cfgPath, svcUser)
		}
	}

	fmt.Fprintln(stdout, "\nnext steps:")
	n := 0
	step := func(format string, a ...any) {
		n++
		fmt.Fprintf(stdout, "  %d. "+format+"\n", append([]any{n}, a...)...)
	}
	if _, err := os.Stat(filepath.Join(*root, *binary)); err != nil {
		step("install the binary: install -m 0755 ./ferry-agent %s", *binary)
	}
	if !owned {
		step("create the service user and give it the config:\n"+
			"       useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s\n"+
			"       chgrp %s %s %s", svcUser, svcUser, filepath.Dir(*cfgPath), *cfgPath)
	}
	step("write the token (from \"ferry-gateway agents create\") readable by the service only:\n"+
		"       install -m 0600 -o %s -g %s /dev/stdin %s   # paste the token, then Ctrl-D", svcUser, svcUser, tokenPath)
	step("edit %s: the gateway url and [access] allow", *cfgPath)
	step("check it: ferry-agent check --config %s", *cfgPath)
	step("start it: systemctl daemon-reload && systemctl enable --now ferry-agent")
	step("watch it: systemctl status ferry-agent; journalctl -u ferry-agent -f")
	return nil
}

// ensureUser creates the system user the unit runs as, if it is missing.
func ensureUser(stdout io.Writer) error {
	if _, err := user.Lookup(svcUser); err == nil {
		return nil
	}
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", svcUser).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create user %s: %v: %s", svcUser, err, bytes.TrimSpace(out))
	}
	fmt.Fprintf(stdout, "created the system user %s\n", svcUser)
	return nil
}

// giveGroup makes paths root:ferry so the service can read them (their
// modes, 0750 and 0640, keep everyone else out).
func giveGroup(paths ...string) error {
	g, err := user.LookupGroup(svcUser)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := os.Chown(p, 0, gid); err != nil {
			return err
		}
	}
	return nil
}

// uninstallUnit stops and disables the service (on the real root) and
// removes the unit. The config folder, config and token stay.
func uninstallUnit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("service uninstall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", "/", "uninstall below this folder instead of / (packaging, tests)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	realRoot := filepath.Clean(*root) == "/"
	systemctl := func(args ...string) {
		if _, err := exec.LookPath("systemctl"); err != nil || !realRoot {
			return
		}
		if out, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(stderr, "ferry-agent: systemctl %v: %v: %s\n", args, err, bytes.TrimSpace(out))
		}
	}
	unitPath := filepath.Join(*root, unitDir, unitName)
	unit, err := os.ReadFile(unitPath)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stdout, "%s is not installed; nothing to do\n", unitPath)
		return nil
	}
	if err != nil {
		return err
	}
	systemctl("disable", "--now", unitName)
	// What "systemctl enable" made, in case systemctl could not run.
	wants := filepath.Join(*root, unitDir, "multi-user.target.wants", unitName)
	if fi, err := os.Lstat(wants); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		os.Remove(wants)
	}
	if err := os.Remove(unitPath); err != nil {
		return err
	}
	systemctl("daemon-reload")
	fmt.Fprintf(stdout, "removed %s\n", unitPath)
	fmt.Fprintf(stdout, "kept the config and token in %s: delete them yourself if they are no longer needed\n",
		filepath.Join(*root, filepath.Dir(unitConfig(string(unit)))))
	return nil
}

// unitConfig is the --config path in a unit's ExecStart.
func unitConfig(unit string) string {
	for line := range strings.Lines(unit) {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			if _, p, ok := strings.Cut(strings.TrimSpace(rest), " --config "); ok {
				return strings.Trim(p, `"`)
			}
		}
	}
	return systemd.AgentConfig
}
