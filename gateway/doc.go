// Package gateway is the ferry-gateway runtime: it accepts agent tunnels
// (TLS, WebSocket, token authentication), keeps the registry of live
// sessions, opens a stream through an agent for every proxied connection
// (Dial for programs that embed the gateway, and connection listeners that
// turn a local port into a path to an on-prem target), and serves the admin
// API and metrics on a separate listener.
package gateway
