// Package bench is the engine of ferry-bench (internal/cmd/ferry-bench): it
// measures throughput, connection rate, latency under load, memory and CPU
// of several paths to one sink on loopback (direct, reference TCP and TLS
// forwarder pairs, and Ferry's real binaries) and prints them side by side.
//
// The wan test puts a delay line (DelayLine, Ferry's own, run as a child
// process) in the direct path, between the TLS forwarders and between
// ferry-agent and ferry-gateway, and measures throughput through it for
// each Profile (a round trip, optionally a rate cap per TCP connection).
// The stall test runs a fast download and upload through Ferry's one
// tunnel beside connections whose clients or targets never read, then
// resets those and times how long the processes take to free them.
//
// Everything that moves data verifies it: the sink checks every uploaded
// byte against a deterministic pattern and the client checks every
// downloaded and echoed byte, so a lost, reordered or corrupted byte fails
// the run with ErrCorrupt instead of flattering a figure.
//
// The path processes (forwarders, gateway, agent), the delay lines and the
// sink are child processes, so that CPU time and RSS read from /proc are
// theirs alone. Nothing here is safe to run twice at once in one process.
package bench
