// Package sdnotify tells systemd how a Type=notify service is doing
// (sd_notify(3)) without cgo or libsystemd: it writes state lines such as
// READY=1 and STOPPING=1 as one datagram to the unix socket systemd names in
// $NOTIFY_SOCKET. A filesystem path and an abstract-namespace name ("@…")
// are both understood. Without $NOTIFY_SOCKET (not started by systemd, or
// not Type=notify) every call is a no-op.
package sdnotify
