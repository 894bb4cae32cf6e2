//go:build linux

package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NetnsPrefix starts the name of every network namespace the tests create:
// ferrye2e-PID-N-ROLE. Leftovers of a dead PID are removed by NewTopology.
const NetnsPrefix = "ferrye2e-"

// Addresses of a Topology. The same addresses serve every topology: each
// lives in its own namespaces, and the host's own namespace is never linked.
const (
	TopoAgentIP   = "10.231.1.2"
	TopoGatewayIP = "10.231.2.2"
	TopoTargetIP  = "10.231.3.2"
	// TopoRange holds every address of a topology; it must not be in use on
	// the host (checked), so that nothing is mistaken for it.
	TopoRange = "10.231."
)

// NetNS is a network namespace created by a test, named in /run/netns.
// Its methods are safe for concurrent use.
type NetNS struct {
	Name string
}

// Topology is four namespaces: an agent host, a gateway host and a target
// host, each on its own /24 behind a router namespace that forwards between
// them. Every host reaches the others through the router; nothing reaches
// the host's own network. Removed at cleanup.
//
//	agent 10.231.1.2 ── .1.1 router .2.1 ── 10.231.2.2 gateway
//	                          .3.1
//	                           │
//	                    10.231.3.2 target
type Topology struct {
	Agent, Gateway, Target, Router *NetNS
}

var (
	netnsSeq       atomic.Int64
	netnsSweepOnce sync.Once
)

// NeedNetns skips the test unless it can build network namespaces: root,
// the ip and nft commands. With FERRY_REQUIRE_SERVICES=1 it fails instead.
func NeedNetns(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case runtime.GOOS != "linux":
		why = "network namespaces need Linux"
	case os.Geteuid() != 0:
		why = "network namespaces need root (run the end-to-end tests as root, or in CI)"
	default:
		for _, cmd := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(cmd); err != nil {
				why = "no " + cmd + " command (install Debian's iproute2 and nftables: scripts/test-services.sh start)"
				break
			}
		}
	}
	if why != "" {
		netnsUnavailable(t, why)
	}
}

func netnsUnavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatal(why + "; " + EnvRequireServices + "=1 makes this a failure")
	}
	t.Skip(why)
}

// NewTopology builds a Topology (see NeedNetns for when it skips) and
// removes it at cleanup, even when the test fails.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	NeedNetns(t)
	netnsSweepOnce.Do(sweepNetns)
	if out, err := exec.Command("ip", "-4", "-o", "addr").CombinedOutput(); err == nil && bytes.Contains(out, []byte(" "+TopoRange)) {
		netnsUnavailable(t, "the test range "+TopoRange+"0.0/16 is in use on this host: "+string(out))
	}
	base := fmt.Sprintf("%s%d-%d-", NetnsPrefix, os.Getpid(), netnsSeq.Add(1))
	topo := &Topology{}
	for _, p := range []struct {
		ns   **NetNS
		role string
	}{{&topo.Router, "router"}, {&topo.Agent, "agent"}, {&topo.Gateway, "gateway"}, {&topo.Target, "target"}} {
		n := &NetNS{Name: base + p.role}
		if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
			netnsUnavailable(t, fmt.Sprintf("cannot create network namespace %s: %v: %s", n.Name, err, out))
		}
		t.Cleanup(func() { n.remove(t) })
		*p.ns = n
	}
	for _, ns := range []*NetNS{topo.Router, topo.Agent, topo.Gateway, topo.Target} {
		ns.IP(t, "link", "set", "lo", "up")
	}
	topo.Router.Exec(t, "sh", "-c", "echo 1 >/proc/sys/net/ipv4/ip_forward")
	for i, host := range []*NetNS{topo.Agent, topo.Gateway, topo.Target} {
		subnet := i + 1
		peer := fmt.Sprintf("to-%d", subnet)
		// Both ends are created inside their namespaces: no name can clash
		// with the host's or another run's, and removing the namespaces
		// removes the pair.
		run(t, "ip", "link", "add", "eth0", "netns", host.Name, "type", "veth", "peer", "name", peer, "netns", topo.Router.Name)
		topo.Router.IP(t, "addr", "add", fmt.Sprintf("10.231.%d.1/24", subnet), "dev", peer)
		topo.Router.IP(t, "link", "set", peer, "up")
		host.IP(t, "addr", "add", fmt.Sprintf("10.231.%d.2/24", subnet), "dev", "eth0")
		host.IP(t, "link", "set", "eth0", "up")
		host.IP(t, "route", "add", "default", "via", fmt.Sprintf("10.231.%d.1", subnet))
	}
	return topo
}

// sweepNetns removes namespaces (and their /etc/netns files) left by test
// runs whose process is gone; those of live runs are left alone.
func sweepNetns() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], NetnsPrefix) {
			names[f[0]] = true
		}
	}
	if ents, err := os.ReadDir("/etc/netns"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), NetnsPrefix) {
				names[e.Name()] = true
			}
		}
	}
	for name := range names {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, NetnsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		exec.Command("ip", "netns", "delete", name).Run()
		os.RemoveAll(filepath.Join("/etc/netns", name))
	}
}

func (n *NetNS) remove(t testing.TB) {
	if out, err := exec.Command("ip", "netns", "delete", n.Name).CombinedOutput(); err != nil {
		t.Errorf("remove network namespace %s: %v: %s", n.Name, err, out)
	}
	if err := os.RemoveAll(filepath.Join("/etc/netns", n.Name)); err != nil {
		t.Errorf("remove /etc/netns/%s: %v", n.Name, err)
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// IP runs `ip -n NS args...` and fails the test on error.
func (n *NetNS) IP(t testing.TB, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a command inside the namespace to completion and fails the
// test on error.
func (n *NetNS) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Start is testutil.Start with the program run inside the namespace (`ip
// netns exec` replaces itself with bin, so the process is bin itself).
func (n *NetNS) Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	return Start(t, name, env, "ip", append([]string{"netns", "exec", n.Name, bin}, args...)...)
}

// SetHosts gives processes started in the namespace this /etc/hosts (`ip
// netns exec` mounts /etc/netns/NS/hosts over it). Removed with the
// namespace.
func (n *NetNS) SetHosts(t testing.TB, content string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Nft loads an nftables script (`nft -f -`) inside the namespace.
func (n *NetNS) Nft(t testing.TB, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s\nscript:\n%s", n.Name, err, out, script)
	}
}

var reNftPackets = regexp.MustCompile(`packets (\d+) bytes \d+`)

// NftCounter is the packet count of the named counter in table (family
// inet) inside the namespace.
func (n *NetNS) NftCounter(t testing.TB, table, counter string) uint64 {
	t.Helper()
	out := n.Exec(t, "nft", "list", "counter", "inet", table, counter)
	m := reNftPackets.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("nft counter %s %s: no packet count in %q", table, counter, out)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn
// creates stay in the namespace for their whole life, whichever thread
// later uses them. The thread is never handed back to the Go scheduler: it
// ends with fn, so no other goroutine ever runs in the namespace.
func (n *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no Unlock: the thread exits with this goroutine
		fd, err := unix.Open(filepath.Join("/run/netns", n.Name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", n.Name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// DialContext dials from inside the namespace.
func (n *NetNS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// DialTimeout dials from inside the namespace.
func (n *NetNS) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.DialContext(ctx, network, addr)
}

// Listen opens a listener inside the namespace, closed at cleanup.
func (n *NetNS) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// HTTPClient is an HTTP client whose connections start inside the
// namespace.
func (n *NetNS) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true},
	}
}
