package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// EnvSocket is the environment variable in which systemd passes the
// notification socket.
const EnvSocket = "NOTIFY_SOCKET"

// State lines understood by systemd (see sd_notify(3)).
const (
	// Ready says start-up is finished: systemd marks the unit active and
	// starts the units ordered after it.
	Ready = "READY=1"
	// Stopping says shutdown has begun (the drain); systemd shows the unit
	// as deactivating.
	Stopping = "STOPPING=1"
	// Reloading says a configuration reload has begun; send Ready when it is
	// done.
	Reloading = "RELOADING=1"
)

// ErrBadSocket is wrapped by New when the socket address is neither an
// absolute path nor an abstract name.
var ErrBadSocket = errors.New("unsupported notification socket")

// Status is a free-form line shown by `systemctl status`.
func Status(s string) string {
	// One datagram holds several newline-separated assignments: a newline
	// in the text would start a bogus one.
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// Notifier sends state to one notification socket. A nil *Notifier is valid
// and does nothing, so callers need no "under systemd?" checks. Safe for
// concurrent use; it holds no open descriptor between calls.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier for socket, the value of $NOTIFY_SOCKET: an
// absolute path, or "@name" for Linux's abstract namespace. An empty socket
// gives a nil Notifier (a no-op).
func New(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return nil, nil
	case strings.HasPrefix(socket, "/"), strings.HasPrefix(socket, "@") && len(socket) > 1:
		// Go's runtime turns a leading '@' into the NUL byte that selects
		// the abstract namespace.
		return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
	default:
		return nil, fmt.Errorf("%s=%q: %w (want an absolute path or @name)", EnvSocket, socket, ErrBadSocket)
	}
}

// FromEnv is New(getenv(EnvSocket)).
func FromEnv(getenv func(string) string) (*Notifier, error) {
	return New(getenv(EnvSocket))
}

// Notify sends the state lines (Ready, Stopping, Status("…") …) in one
// datagram. It does nothing on a nil Notifier or without lines.
func (n *Notifier) Notify(state ...string) error {
	if n == nil || len(state) == 0 {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(state, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr.Name, err)
	}
	return nil
}

// Enabled reports whether n sends anything (systemd is listening).
func (n *Notifier) Enabled() bool { return n != nil }
