package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// listen opens a unixgram socket like systemd's at addr.
func listen(t *testing.T, addr string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify.sock") }},
		{"abstract", func(t *testing.T) string {
			return fmt.Sprintf("@ferry-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := tc.addr(t)
			srv := listen(t, addr)
			n, err := FromEnv(func(k string) string {
				if k == EnvSocket {
					return addr
				}
				return ""
			})
			if err != nil || !n.Enabled() {
				t.Fatalf("FromEnv: %v, %v", n, err)
			}
			if err := n.Notify(Ready, Status("serving\n2 tunnels")); err != nil {
				t.Fatal(err)
			}
			if got, want := recv(t, srv), "READY=1\nSTATUS=serving 2 tunnels\n"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if err := n.Notify(Stopping); err != nil {
				t.Fatal(err)
			}
			if got, want := recv(t, srv), "STOPPING=1\n"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestNoSocket(t *testing.T) {
	t.Parallel()
	n, err := New("")
	if err != nil || n != nil || n.Enabled() {
		t.Fatalf("New(\"\") = %v, %v; want a nil no-op notifier", n, err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Errorf("nil notifier: %v", err)
	}
}

func TestBadSocket(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"relative/path", "@", "vsock:2:1234"} {
		if _, err := New(s); !errors.Is(err, ErrBadSocket) {
			t.Errorf("New(%q) = %v, want ErrBadSocket", s, err)
		}
	}
}

func TestSocketGone(t *testing.T) {
	t.Parallel()
	n, err := New(filepath.Join(t.TempDir(), "nobody-listens.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil {
		t.Error("Notify to a missing socket succeeded")
	}
}
