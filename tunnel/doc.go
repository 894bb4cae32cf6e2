// Package tunnel is Ferry's transport: WebSocket over TLS carrying one
// tunnel's bytes. The agent side has Dialer (TLS with the system roots plus a
// CA file, an HTTP proxy, the gateway IP allow-list) and Reconnect (the
// retry loop with exponential backoff and jitter). The gateway side has
// Handler, which authenticates the handshake, rate-limits failures per source
// address and upgrades the request, then hands the byte stream to the
// gateway's session logic.
package tunnel
