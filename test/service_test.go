package test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/configs/systemd"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// requireTool returns the path of a program the test needs, or skips the
// test when it is missing (fails instead when FERRY_REQUIRE_SERVICES=1).
// scripts/test-services.sh start installs them.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: install Debian's %s package (scripts/test-services.sh start does)", name, pkg)
	if os.Getenv(testutil.EnvRequireServices) == "1" {
		t.Fatal(msg + "; " + testutil.EnvRequireServices + "=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}

// moduleRoot is the repository root (the tests run in test/).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestSystemdUnitsVerify runs systemd-analyze verify on both units, with
// ExecStart pointing at the binaries this test run built (verify wants them
// to exist), and fails on anything it says about them. It also keeps the
// units' exposure score (systemd-analyze security) low.
func TestSystemdUnitsVerify(t *testing.T) {
	t.Parallel()
	sa := requireTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	bins := filepath.Join(dir, "bin dir") // a space: ExecStart quoting is exercised
	if err := os.Mkdir(bins, 0o755); err != nil {
		t.Fatal(err)
	}
	units := map[string]string{}
	for name, src := range map[string]string{"ferry-agent": agentBin, "ferry-gateway": gatewayBin} {
		bin := filepath.Join(bins, name)
		copyFile(t, src, bin, 0o755)
		unit := systemd.Agent(bin, "")
		if name == "ferry-gateway" {
			unit = systemd.Gateway(bin, "")
		}
		path := filepath.Join(dir, name+".service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		units[name] = path
	}
	out, err := exec.Command(sa, "verify", units["ferry-agent"], units["ferry-gateway"]).CombinedOutput()
	var about []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "ferry-") {
			about = append(about, line)
		}
	}
	if err != nil || len(about) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for name, path := range units {
		// 0 is locked down, 10 is root with everything; these score under 2.
		out, err := exec.Command(sa, "security", "--offline=yes", "--threshold=25", "--no-pager", path).CombinedOutput()
		score := regexp.MustCompile(`Overall exposure level for \S+: (\S+)`).FindSubmatch(out)
		if err != nil || score == nil {
			t.Errorf("systemd-analyze security %s (threshold 2.5): %v\n%s", name, err, out)
		} else {
			t.Logf("%s exposure level %s", name, score[1])
		}
	}
}

// TestSystemdUnitsAgreeWithConfig checks what the units assume of the
// programs: a stop timeout longer than the default drain, the agent's lock
// inside its runtime directory, READY/STOPPING notifications.
func TestSystemdUnitsAgreeWithConfig(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	for _, name := range []string{"ferry-agent", "ferry-gateway"} {
		b, err := os.ReadFile(filepath.Join(root, "configs", "systemd", name+".service"))
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		key := func(k string) []string {
			var vs []string
			for _, m := range regexp.MustCompile(`(?m)^`+k+`=(.*)$`).FindAllStringSubmatch(unit, -1) {
				vs = append(vs, m[1])
			}
			return vs
		}
		for k, want := range map[string]string{
			"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed", "Restart": "on-failure",
			"ProtectSystem": "strict", "NoNewPrivileges": "yes", "SystemCallFilter": "@system-service",
			"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "UMask": "0077",
		} {
			if got := key(k); len(got) != 1 || got[0] != want {
				t.Errorf("%s: %s=%q, want %q", name, k, got, want)
			}
		}
		stop, err := time.ParseDuration(strings.Join(key("TimeoutStopSec"), ""))
		grace := config.DefaultAgent().Agent.ShutdownGrace
		if err != nil || stop < grace+5*time.Second {
			t.Errorf("%s: TimeoutStopSec=%v (%v): must exceed the default shutdown_grace %v by a margin", name, stop, err, grace)
		}
		caps := strings.Join(key("CapabilityBoundingSet"), ",")
		if name == "ferry-agent" && caps != "" || name == "ferry-gateway" && caps != "CAP_NET_BIND_SERVICE" {
			t.Errorf("%s: CapabilityBoundingSet=%q", name, caps)
		}
		if name == "ferry-agent" {
			rd := key("RuntimeDirectory")
			env := strings.Join(key("Environment"), " ")
			if len(rd) != 1 || !strings.Contains(env, "FERRY_AGENT_AGENT_LOCK_FILE=/run/"+rd[0]+"/") {
				t.Errorf("agent unit: the lock file (%q) must be inside RuntimeDirectory %q", env, rd)
			}
			if got := key("ExecStart"); len(got) != 1 || got[0] != systemd.AgentBinary+" run --config "+systemd.AgentConfig {
				t.Errorf("agent unit: ExecStart=%q", got)
			}
		}
	}
}

// TestServiceInstallUninstall installs the unit into a temporary root,
// as `ferry-agent service install --root DIR` does for packagers.
func TestServiceInstallUninstall(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("systemd install is Linux only")
	}
	root := t.TempDir()
	r := testutil.Run(t, 20*time.Second, nil, agentBin, "service", "install", "--root", root)
	if r.Code != 0 {
		t.Fatalf("service install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"systemctl daemon-reload && systemctl enable --now ferry-agent", "/etc/ferry/agent.token", "-m 0600", "useradd"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("install output lacks %q:\n%s", want, r.Stdout)
		}
	}
	unitPath := filepath.Join(root, "etc/systemd/system/ferry-agent.service")
	got, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(moduleRoot(t), "configs/systemd/ferry-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("installed unit differs from configs/systemd/ferry-agent.service")
	}
	checkMode(t, filepath.Join(root, "etc/ferry"), 0o750|os.ModeDir)
	checkMode(t, filepath.Join(root, "etc/ferry/agent.toml"), 0o640)
	checkMode(t, unitPath, 0o644)
	example, err := os.ReadFile(filepath.Join(root, "etc/ferry/agent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.ParseAgent(example, "example")
	if err != nil {
		t.Fatalf("the example config does not load: %v\n%s", err, example)
	}
	if cfg.Gateway.TokenFile != "/etc/ferry/agent.token" || len(cfg.Access.Allow) != 0 {
		t.Errorf("example config: token_file %q, allow %q", cfg.Gateway.TokenFile, cfg.Access.Allow)
	}

	// Again: the unit is unchanged and an edited config is kept.
	edited := append(example, []byte("\n# edited\n")...)
	os.WriteFile(filepath.Join(root, "etc/ferry/agent.toml"), edited, 0o640)
	r = testutil.Run(t, 20*time.Second, nil, agentBin, "service", "install", "--root", root)
	if r.Code != 0 || !strings.Contains(r.Stdout, "unchanged") || !strings.Contains(r.Stdout, "kept the existing config") {
		t.Errorf("second install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/ferry/agent.toml")); !bytes.Equal(b, edited) {
		t.Error("second install overwrote the config")
	}

	// Enabled (as systemctl enable would), then uninstalled.
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	os.MkdirAll(wants, 0o755)
	os.Symlink("/etc/systemd/system/ferry-agent.service", filepath.Join(wants, "ferry-agent.service"))
	os.WriteFile(filepath.Join(root, "etc/ferry/agent.token"), []byte("tok\n"), 0o600)
	r = testutil.Run(t, 20*time.Second, nil, agentBin, "service", "uninstall", "--root", root)
	if r.Code != 0 || !strings.Contains(r.Stdout, "removed") || !strings.Contains(r.Stdout, "kept the config and token") {
		t.Errorf("uninstall: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, gone := range []string{unitPath, filepath.Join(wants, "ferry-agent.service")} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("%s still exists after uninstall", gone)
		}
	}
	for _, kept := range []string{"etc/ferry/agent.toml", "etc/ferry/agent.token"} {
		if _, err := os.Stat(filepath.Join(root, kept)); err != nil {
			t.Errorf("uninstall removed %s: %v", kept, err)
		}
	}
	r = testutil.Run(t, 20*time.Second, nil, agentBin, "service", "uninstall", "--root", root)
	if r.Code != 0 || !strings.Contains(r.Stdout, "not installed") {
		t.Errorf("second uninstall: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestServiceInstallCustomPaths: --binary and --config land in ExecStart,
// quoted so that systemd reads them back.
func TestServiceInstallCustomPaths(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("systemd install is Linux only")
	}
	root := t.TempDir()
	bin := filepath.Join(t.TempDir(), "my bin", "ferry-agent")
	os.MkdirAll(filepath.Dir(bin), 0o755)
	copyFile(t, agentBin, bin, 0o755)
	r := testutil.Run(t, 20*time.Second, nil, agentBin, "service", "install", "--root", root,
		"--binary", bin, "--config", "/srv/ferry 100%/agent.toml")
	if r.Code != 0 {
		t.Fatalf("service install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	unitPath := filepath.Join(root, "etc/systemd/system/ferry-agent.service")
	unit, _ := os.ReadFile(unitPath)
	wantLine := fmt.Sprintf("ExecStart=%q run --config \"/srv/ferry 100%%%%/agent.toml\"\n", bin)
	if !strings.Contains(string(unit), wantLine) {
		t.Errorf("unit lacks %q", wantLine)
	}
	if _, err := os.Stat(filepath.Join(root, "srv/ferry 100%/agent.toml")); err != nil {
		t.Errorf("no example config at the --config path: %v", err)
	}
	if !strings.Contains(r.Stdout, "/srv/ferry 100%/agent.token") {
		t.Errorf("the steps do not name the token next to the config:\n%s", r.Stdout)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(sa, "verify", unitPath).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify on the installed unit: %v\n%s", err, out)
		}
	}
	r = testutil.Run(t, 20*time.Second, nil, agentBin, "service", "uninstall", "--root", root)
	if !strings.Contains(r.Stdout, filepath.Join(root, "srv/ferry 100%")) {
		t.Errorf("uninstall does not name the kept config folder:\n%s", r.Stdout)
	}

	for _, bad := range [][]string{
		{"install", "--root", root, "--config", "relative/agent.toml"},
		{"install", "--root", root, "--binary", "ferry-agent"},
		{"install", "--root", root, "--config", "/etc/fer\nry/agent.toml"},
	} {
		r := testutil.Run(t, 20*time.Second, nil, agentBin, append([]string{"service"}, bad...)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "ferry-agent: service install:") {
			t.Errorf("service %q: exit %d, stderr %q; want 1 and a clear error", bad, r.Code, r.Stderr)
		}
	}
	if r := testutil.Run(t, 20*time.Second, nil, agentBin, "service", "frobnicate"); r.Code != 2 {
		t.Errorf("unknown service command: exit %d", r.Code)
	}
}

// TestSystemdNotify runs both programs as systemd would, with
// NOTIFY_SOCKET: each says READY=1 once it serves and STOPPING=1 when
// SIGTERM starts the drain.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	for _, abstract := range []bool{false, true} {
		addr := filepath.Join(t.TempDir(), "notify.sock")
		if abstract {
			addr = fmt.Sprintf("@ferry-e2e-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
		}
		sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sock.Close() })
		notes := make(chan string, 16)
		go func() {
			buf := make([]byte, 4096)
			for {
				n, _, err := sock.ReadFromUnix(buf)
				if err != nil {
					close(notes)
					return
				}
				notes <- string(buf[:n])
			}
		}()
		expect := func(who, want string) {
			t.Helper()
			select {
			case got, ok := <-notes:
				if !ok || !strings.Contains(got, want+"\n") {
					t.Fatalf("%s: notification %q, want %s", who, got, want)
				}
			case <-time.After(startTimeout):
				t.Fatalf("%s: no %s within %s", who, want, startTimeout)
			}
		}
		env := []string{"NOTIFY_SOCKET=" + addr}

		// The gateway, READY once it listens.
		dataDir := t.TempDir()
		gwCfg := filepath.Join(dataDir, "gateway.toml")
		os.WriteFile(gwCfg, []byte(fmt.Sprintf("data_dir = %q\n[listen]\ntunnel = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n", dataDir)), 0o600)
		gw := testutil.Start(t, "ferry-gateway", append(env, "FERRY_ADMIN_TOKEN=adm-"+randomHex(16)), gatewayBin, "serve", "--config", gwCfg)
		expect("gateway", "READY=1")
		if _, err := gw.Log.WaitFor(reGatewayStarted, time.Second); err != nil {
			t.Errorf("gateway said READY=1 before it logged that it started")
		}
		if code := gw.Stop(); code != 0 {
			t.Errorf("gateway exit %d", code)
		}
		expect("gateway", "STOPPING=1")

		// The agent, READY once it serves, though no gateway answers: a
		// service must not fail to start while the network is down.
		lockDir := t.TempDir()
		a := writeAgentConfig(t, nil, agentOpts{URL: "wss://127.0.0.1:1/v1/tunnel", Token: "tok-" + randomHex(16)})
		a.Proc = testutil.Start(t, "ferry-agent", append(env, "FERRY_AGENT_AGENT_LOCK_FILE="+filepath.Join(lockDir, "agent.lock")), agentBin, "run", "--config", a.ConfigPath)
		expect("agent", "READY=1")
		if _, err := a.Proc.Log.WaitFor(reAgentMetrics, time.Second); err != nil {
			t.Errorf("agent said READY=1 before its metrics endpoint listened")
		}
		// FERRY_AGENT_AGENT_LOCK_FILE (set by the unit) wins over lock_file.
		if _, err := os.Stat(filepath.Join(lockDir, "agent.lock")); err != nil {
			t.Errorf("lock file from FERRY_AGENT_AGENT_LOCK_FILE: %v", err)
		}
		if _, err := os.Stat(a.LockFile); err == nil {
			t.Errorf("the agent also locked %s", a.LockFile)
		}
		if code := a.Proc.Stop(); code != 0 {
			t.Errorf("agent exit %d", code)
		}
		expect("agent", "STOPPING=1")
	}
}

// TestWindowsBuild proves the Windows service code compiles and passes vet
// (nothing here can run it).
func TestWindowsBuild(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "vet", "./cmd/ferry-agent/", "./internal/winsvc/", "./internal/sdnotify/")
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows go vet: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}
