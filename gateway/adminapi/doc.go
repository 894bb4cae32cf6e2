// Package adminapi holds the admin API's wire types, shared by server and
// client: the request and response bodies of the routes under /api/v1/ (see
// package github.com/ferry-tunnel/ferry/gateway/admin), with their JSON
// names. Package admin encodes them and package adminclient decodes them, so
// the two cannot drift apart.
//
// Times are UTC and encode as RFC 3339. Lists encode as [] when empty, never
// null. The package holds data only: no behaviour, no dependencies beyond the
// standard library.
package adminapi
