// Package mux is Ferry's multiplexing layer, shared by the agent and the
// gateway: the smux settings, the stream protocol (open request and reply on
// data streams, length-prefixed control messages on the control stream), a
// session wrapper whose blocking calls take a context, and Start, which copies a
// proxied connection both ways with half-close and abort carried through.
//
// Roles are fixed: the gateway is the smux client and the only side that opens
// streams; the agent is the smux server. The first stream of a session is the
// control stream; every later one is a data stream carrying one proxied
// connection. See docs/protocol.md for the wire format.
package mux
