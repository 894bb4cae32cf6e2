// Package metrics defines Ferry's Prometheus metric sets, one struct per
// program, built on a registry the caller passes in (never the global one),
// and the HTTP handlers for /metrics, /healthz and /readyz.
package metrics
