package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Agent is the agent's metric set. Its fields are safe for concurrent use.
type Agent struct {
	TunnelsConnected       prometheus.Gauge
	TunnelConnectedSeconds prometheus.Counter
	TunnelConnects         *prometheus.CounterVec // result: ok, auth_failed, error
	StreamsActive          prometheus.Gauge
	Streams                *prometheus.CounterVec // result: ok, denied, dial_failed, timeout, bad_request, busy
	Bytes                  *prometheus.CounterVec // direction: to_target, from_target
	DialDuration           prometheus.Histogram
	TunnelRTT              prometheus.Gauge
}

// NewAgent registers the agent's metrics on reg. version is the agent's
// build version; start is the process start time.
func NewAgent(reg prometheus.Registerer, version string, start time.Time) *Agent {
	f := factory{reg}
	m := &Agent{
		TunnelsConnected: f.gauge("ferry_agent_tunnels_connected", "Tunnels to the gateway that are up now."),
		TunnelConnectedSeconds: f.counter("ferry_agent_tunnel_connected_seconds_total",
			"Seconds during which at least one tunnel was up; rate() is the availability."),
		TunnelConnects: f.counterVec("ferry_agent_tunnel_connects_total",
			"Tunnel connection attempts by result (ok, auth_failed, error).", "result"),
		StreamsActive: f.gauge("ferry_agent_streams_active", "Proxied connections open now."),
		Streams: f.counterVec("ferry_agent_streams_total",
			"Proxied connection requests by result (ok, denied, dial_failed, timeout, bad_request, busy).", "result"),
		Bytes: f.counterVec("ferry_agent_bytes_total",
			"Bytes proxied, by direction (to_target, from_target).", "direction"),
		DialDuration: f.histogram("ferry_agent_dial_duration_seconds", "Time to dial targets."),
		TunnelRTT:    f.gauge("ferry_agent_tunnel_rtt_seconds", "Last measured round trip to the gateway."),
	}
	f.gaugeVec("ferry_agent_build_info", "Build information; always 1.", "version", "go_version").
		WithLabelValues(version, runtime.Version()).Set(1)
	f.gauge("ferry_agent_start_time_seconds", "Process start time, unix seconds.").Set(float64(start.UnixNano()) / 1e9)
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
