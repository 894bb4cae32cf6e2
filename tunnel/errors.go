package tunnel

import (
	"errors"
	"fmt"
)

// Handshake outcomes the agent tells apart. Match them with errors.Is.
var (
	// ErrTokenRejected: the gateway answered 401, the token is unknown, rotated
	// or revoked. Retrying will not help until an operator gives a new token.
	ErrTokenRejected = errors.New("token rejected by gateway (401)")
	// ErrAgentDisabled: the gateway answered 403.
	ErrAgentDisabled = errors.New("agent disabled on gateway (403)")
	// ErrRateLimited: the gateway answered 429, too many failed attempts
	// from this address.
	ErrRateLimited = errors.New("gateway rate-limited this address (429)")
	// ErrGatewayDraining: the gateway answered 503 while shutting down.
	ErrGatewayDraining = errors.New("gateway is draining (503)")
	// ErrNoGatewayIP: the gateway name resolved to no address within
	// allowed_ips.
	ErrNoGatewayIP = errors.New("no permitted gateway address")
	// ErrReplace ends an Attempt whose tunnel is being replaced (its gateway
	// node is going away): Reconnect starts the next attempt at once.
	ErrReplace = errors.New("tunnel replaced")
)

// NeedsOperator reports whether err can only be fixed by a person (a new
// token, re-enabling the agent); the reconnect loop then retries slowly.
func NeedsOperator(err error) bool {
	return errors.Is(err, ErrTokenRejected) || errors.Is(err, ErrAgentDisabled)
}

// StatusError is an unexpected HTTP status in answer to the handshake.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("gateway answered HTTP %d to the tunnel handshake", e.Code)
	}
	return fmt.Sprintf("gateway answered HTTP %d to the tunnel handshake: %s", e.Code, e.Body)
}
