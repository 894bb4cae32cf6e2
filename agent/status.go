package agent

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/ferry-tunnel/ferry/metrics"
)

// Status is the agent's state as served on /status. It never holds the
// token.
type Status struct {
	Version       string         `json:"version"`
	Instance      string         `json:"instance"`
	Hostname      string         `json:"hostname"`
	Gateway       string         `json:"gateway"`
	StartedAt     time.Time      `json:"started_at"`
	Draining      bool           `json:"draining"`
	StreamsActive int64          `json:"streams_active"`
	Tunnels       []TunnelStatus `json:"tunnels"`
}

// TunnelStatus is one tunnel slot.
type TunnelStatus struct {
	Index          int        `json:"index"`
	State          string     `json:"state"` // connected, connecting
	GatewayIP      string     `json:"gateway_ip,omitempty"`
	Node           string     `json:"node,omitempty"`
	ConnectedSince *time.Time `json:"connected_since,omitempty"`
	RTTSeconds     float64    `json:"rtt_seconds,omitempty"`
	Streams        int        `json:"streams"`
	LastError      string     `json:"last_error,omitempty"`
	LastErrorAt    *time.Time `json:"last_error_at,omitempty"`
}

// Status reports the agent's tunnels and connections.
func (a *Agent) Status() Status {
	st := Status{
		Version: a.version, Instance: a.instance, Hostname: a.hostname, Gateway: a.cfg.Gateway.URL,
		StartedAt: a.started.UTC(), Draining: a.draining.Load(), StreamsActive: a.active.Load(),
		Tunnels: []TunnelStatus{},
	}
	for _, s := range a.slots {
		s.mu.Lock()
		ts := TunnelStatus{Index: s.index, State: "connecting", LastError: s.lastErr}
		if !s.lastErrAt.IsZero() {
			t := s.lastErrAt.UTC()
			ts.LastErrorAt = &t
		}
		if s.sess != nil {
			since := s.since.UTC()
			ts.State, ts.GatewayIP, ts.Node, ts.ConnectedSince = "connected", s.gateway.String(), s.node, &since
			ts.RTTSeconds = s.sess.RTT().Seconds()
			ts.Streams = s.sess.NumStreams()
		}
		s.mu.Unlock()
		st.Tunnels = append(st.Tunnels, ts)
	}
	return st
}

func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	metrics.Mount(mux, a.reg, a.Ready)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(a.Status())
	})
	return mux
}
