// Package testutil holds helpers that only tests use: running the built
// binaries as child processes with a searchable log, reading Prometheus text,
// real-socket targets (echo, counting, endless writer), a TCP forwarder that
// can cut its connections, the optional PostgreSQL and Redis services, and
// the copy and echo loops of the micro-benchmarks and a loopback TCP pair.
//
// Everything here listens on 127.0.0.1:0 and reports the address it got;
// nothing picks a port by listening and closing. Every helper that starts
// something registers its teardown with t.Cleanup.
package testutil
