// Package agent is the ferry-agent runtime: it keeps ha_connections tunnels
// to the gateway, answers each data stream by checking the target against the
// allow-list, dialling it and piping bytes both ways, serves /metrics,
// /healthz, /readyz and /status, and drains on shutdown. It holds a lock so
// that one agent runs per machine.
package agent
