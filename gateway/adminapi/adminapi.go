package adminapi

import "time"

// Agent is an agent as the API shows it. It never holds a token.
type Agent struct {
	Name           string    `json:"name"`
	Description    string    `json:"description"`
	CreatedAt      time.Time `json:"created_at"`
	TokenRotatedAt time.Time `json:"token_rotated_at"`
	// Online is true while at least one tunnel is up.
	Online  bool     `json:"online"`
	Tunnels []Tunnel `json:"tunnels"`
}

// CreatedAgent is the answer to POST /api/v1/agents: the agent and its
// token, which the API shows this one time only. It is the only record that
// carries a token.
type CreatedAgent struct {
	Agent
	Token string `json:"token"`
}

// AgentRequest is the body of POST /api/v1/agents.
type AgentRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// RotatedToken is the answer to POST /api/v1/agents/{name}/token: the
// agent's new token, shown this one time only.
type RotatedToken struct {
	Token string `json:"token"`
}

// Tunnel is one live tunnel of an agent.
type Tunnel struct {
	Node       string `json:"node"`
	RemoteAddr string `json:"remote_addr"`
	// Version is the agent's version.
	Version     string    `json:"agent_version"`
	Hostname    string    `json:"hostname"`
	Instance    string    `json:"instance"`
	OS          string    `json:"os"`
	ConnectedAt time.Time `json:"connected_at"`
	Draining    bool      `json:"draining"`
}

// ConnectionRequest is the body of POST /api/v1/connections.
type ConnectionRequest struct {
	Name   string `json:"name"`
	Agent  string `json:"agent"`
	Target string `json:"target"`
	Listen string `json:"listen"`
}

// Connection is a connection as the API shows it.
type Connection struct {
	Name   string `json:"name"`
	Agent  string `json:"agent"`
	Target string `json:"target"`
	Listen string `json:"listen"`
	// Source is SourceConfig or SourceAPI.
	Source string `json:"source"`
	// CreatedAt is zero, and left out of the JSON, for connections from the
	// config file.
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Connection sources.
const (
	// SourceConfig marks a connection from the gateway's config file; the
	// API cannot delete it.
	SourceConfig = "config"
	// SourceAPI marks a connection created through the API.
	SourceAPI = "api"
)

// AuditEvent is one entry of the audit log.
type AuditEvent struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	Detail  string    `json:"detail"`
}

// Audit actions: the values of AuditEvent.Action.
const (
	ActionAgentCreate      = "agent.create"
	ActionAgentRotateToken = "agent.token_rotate"
	ActionAgentDelete      = "agent.delete"
	ActionConnCreate       = "connection.create"
	ActionConnDelete       = "connection.delete"
)

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}
