// Package adminclient is a Go client of the gateway's admin HTTP API (see
// package github.com/ferry-tunnel/ferry/gateway/admin), used by the admin
// CLI and by programs that manage a gateway.
//
// Its record types mirror the API's JSON. Errors the API answers come back
// as *[APIError]; failures to reach the API at all as *[ConnError].
package adminclient
