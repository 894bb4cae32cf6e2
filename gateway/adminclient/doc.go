// Package adminclient is a Go client of the gateway's admin HTTP API (see
// package github.com/ferry-tunnel/ferry/gateway/admin), used by the admin
// CLI and by programs that manage a gateway.
//
// It sends and returns the wire types of package
// github.com/ferry-tunnel/ferry/gateway/adminapi, the same ones the server
// encodes. Errors the API answers come back as *[APIError]; failures to
// reach the API at all as *[ConnError].
package adminclient
