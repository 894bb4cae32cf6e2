package metrics

import (
	"runtime"
	"time"
)

// Agent is the agent's metric set. Its fields are safe for concurrent use.
type Agent struct {
	TunnelsConnected       *Gauge
	TunnelConnectedSeconds *Counter
	TunnelConnects         *CounterVec // result: ok, auth_failed, error
	StreamsActive          *Gauge
	Streams                *CounterVec // result: ok, denied, dial_failed, timeout, bad_request, busy
	Bytes                  *CounterVec // direction: to_target, from_target
	DialDuration           *Histogram
	TunnelRTT              *Gauge
}

// NewAgent registers the agent's metrics on reg. version is the agent's
// build version; start is the process start time.
func NewAgent(reg *Registry, version string, start time.Time) *Agent {
	m := &Agent{
		TunnelsConnected: NewGauge(reg, "ferry_agent_tunnels_connected", "Tunnels to the gateway that are up now."),
		TunnelConnectedSeconds: NewCounter(reg, "ferry_agent_tunnel_connected_seconds_total",
			"Seconds during which at least one tunnel was up; rate() is the availability."),
		TunnelConnects: NewCounterVec(reg, "ferry_agent_tunnel_connects_total",
			"Tunnel connection attempts by result (ok, auth_failed, error).", "result"),
		StreamsActive: NewGauge(reg, "ferry_agent_streams_active", "Proxied connections open now."),
		Streams: NewCounterVec(reg, "ferry_agent_streams_total",
			"Proxied connection requests by result (ok, denied, dial_failed, timeout, bad_request, busy).", "result"),
		Bytes: NewCounterVec(reg, "ferry_agent_bytes_total",
			"Bytes proxied, by direction (to_target, from_target).", "direction"),
		DialDuration: NewHistogram(reg, "ferry_agent_dial_duration_seconds", "Time to dial targets.", latencyBuckets),
		TunnelRTT:    NewGauge(reg, "ferry_agent_tunnel_rtt_seconds", "Last measured round trip to the gateway."),
	}
	NewGaugeVec(reg, "ferry_agent_build_info", "Build information; always 1.", "version", "go_version").
		WithLabelValues(version, runtime.Version()).Set(1)
	NewGauge(reg, "ferry_agent_start_time_seconds", "Process start time, unix seconds.").Set(float64(start.UnixNano()) / 1e9)
	for _, r := range []string{"ok", "auth_failed", "error"} {
		m.TunnelConnects.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "denied", "dial_failed", "timeout", "bad_request", "busy"} {
		m.Streams.WithLabelValues(r)
	}
	for _, d := range []string{"to_target", "from_target"} {
		m.Bytes.WithLabelValues(d)
	}
	return m
}
