package metrics

import (
	"runtime"
)

// Gateway is the gateway's metric set. Its fields are safe for concurrent
// use. The agent label takes agent names, which operators create and which
// are few; never a target address.
type Gateway struct {
	AgentsOnline       *Gauge
	TunnelsConnected   *Gauge
	Handshakes         *CounterVec // result: ok, unauthorized, disabled, rate_limited, draining, error
	StreamsActive      *Gauge
	Streams            *CounterVec // agent, result: ok, offline, denied, dial_failed, timeout, bad_request, busy, error
	Bytes              *CounterVec // agent, direction: to_agent, from_agent
	StreamOpenDuration *Histogram
}

// NewGateway registers the gateway's metrics on reg.
func NewGateway(reg *Registry, version string) *Gateway {
	m := &Gateway{
		AgentsOnline:     NewGauge(reg, "ferry_gateway_agents_online", "Agents with at least one tunnel up on this node."),
		TunnelsConnected: NewGauge(reg, "ferry_gateway_tunnels_connected", "Agent tunnels connected to this node."),
		Handshakes: NewCounterVec(reg, "ferry_gateway_handshakes_total",
			"Tunnel handshakes by result (ok, unauthorized, disabled, rate_limited, draining, error).", "result"),
		StreamsActive: NewGauge(reg, "ferry_gateway_streams_active", "Proxied connections open now."),
		Streams: NewCounterVec(reg, "ferry_gateway_streams_total",
			"Proxied connection attempts by agent and result.", "agent", "result"),
		Bytes: NewCounterVec(reg, "ferry_gateway_bytes_total",
			"Bytes proxied by agent and direction (to_agent, from_agent).", "agent", "direction"),
		StreamOpenDuration: NewHistogram(reg, "ferry_gateway_stream_open_duration_seconds",
			"Time from a client connection to the agent's open reply.", latencyBuckets),
	}
	NewGaugeVec(reg, "ferry_gateway_build_info", "Build information; always 1.", "version", "go_version").
		WithLabelValues(version, runtime.Version()).Set(1)
	for _, r := range []string{"ok", "unauthorized", "disabled", "rate_limited", "draining", "error"} {
		m.Handshakes.WithLabelValues(r)
	}
	return m
}
