// Package cli is ferry-gateway's admin command line: agents, connections and
// the audit log, through the admin API of a running gateway (package
// github.com/ferry-tunnel/ferry/gateway/adminclient).
//
// cmd/ferry-gateway handles "serve" and "version" itself and passes every
// other command to [Run]. Run never exits the process: on bad usage it
// returns an error matching [ErrUsage] (cmd prints it and [Usage] and exits
// 2); any other error is one line for the operator (exit 1).
package cli
