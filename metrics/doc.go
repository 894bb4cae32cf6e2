// Package metrics defines Ferry's metric sets, one struct per program, on a
// Registry the caller passes in (never a global one); writes them, with the
// Go runtime's and the process's metrics, in the Prometheus text format;
// and serves /metrics, /healthz and /readyz.
package metrics
