package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Gateway is the gateway's metric set. Its fields are safe for concurrent
// use. The agent label takes agent names, which operators create and which
// are few; never a target address.
type Gateway struct {
	AgentsOnline       prometheus.Gauge
	TunnelsConnected   prometheus.Gauge
	Handshakes         *prometheus.CounterVec // result: ok, unauthorized, disabled, rate_limited, draining, error
	StreamsActive      prometheus.Gauge
	Streams            *prometheus.CounterVec // agent, result: ok, offline, denied, dial_failed, timeout, bad_request, busy, error
	Bytes              *prometheus.CounterVec // agent, direction: to_agent, from_agent
	StreamOpenDuration prometheus.Histogram
}

// NewGateway registers the gateway's metrics on reg.
func NewGateway(reg prometheus.Registerer, version string) *Gateway {
	f := factory{reg}
	m := &Gateway{
		AgentsOnline:     f.gauge("ferry_gateway_agents_online", "Agents with at least one tunnel up on this node."),
		TunnelsConnected: f.gauge("ferry_gateway_tunnels_connected", "Agent tunnels connected to this node."),
		Handshakes: f.counterVec("ferry_gateway_handshakes_total",
			"Tunnel handshakes by result (ok, unauthorized, disabled, rate_limited, draining, error).", "result"),
		StreamsActive: f.gauge("ferry_gateway_streams_active", "Proxied connections open now."),
		Streams: f.counterVec("ferry_gateway_streams_total",
			"Proxied connection attempts by agent and result.", "agent", "result"),
		Bytes: f.counterVec("ferry_gateway_bytes_total",
			"Bytes proxied by agent and direction (to_agent, from_agent).", "agent", "direction"),
		StreamOpenDuration: f.histogram("ferry_gateway_stream_open_duration_seconds",
			"Time from a client connection to the agent's open reply."),
	}
	f.gaugeVec("ferry_gateway_build_info", "Build information; always 1.", "version", "go_version").
		WithLabelValues(version, runtime.Version()).Set(1)
	for _, r := range []string{"ok", "unauthorized", "disabled", "rate_limited", "draining", "error"} {
		m.Handshakes.WithLabelValues(r)
	}
	return m
}
