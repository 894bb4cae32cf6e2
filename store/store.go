package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when the named agent or connection does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when an agent or connection with that name already
// exists.
var ErrExists = errors.New("already exists")

// Agent is a stored agent. The store holds no token material besides the
// SHA-256 hash of the current token.
type Agent struct {
	Name        string
	Description string
	CreatedAt   time.Time
	// TokenHash is the SHA-256 of the agent's current token. An empty hash
	// never matches in [Store.AgentByTokenHash].
	TokenHash []byte
	// TokenRotatedAt is when TokenHash was last set (CreatedAt for a new
	// agent).
	TokenRotatedAt time.Time
}

// Connection is a connection created through the admin API: the gateway
// listens on Listen and carries each accepted TCP connection through a tunnel
// of Agent to Target.
type Connection struct {
	Name      string
	Agent     string
	Target    string
	Listen    string
	CreatedAt time.Time
}

// AuditEvent is one entry of the audit log.
type AuditEvent struct {
	// ID is assigned by the store and increases with every event; it is
	// ignored by [Store.AppendAudit].
	ID int64
	// At is when it happened; AppendAudit uses the current time when it is
	// zero.
	At time.Time
	// Actor is who did it: "admin", "agent:acme-dc1", "node:gw1".
	Actor   string
	Action  string
	Subject string
	// Detail is free text for operators. It must never hold a secret.
	Detail string
}

// Store is the gateway's persistent state. It is safe for concurrent use,
// also by several gateway nodes sharing one PostgreSQL database. Times are
// stored with microsecond precision and returned in UTC.
type Store interface {
	// CreateAgent stores a new agent, or returns ErrExists. Zero times are set
	// to the current time.
	CreateAgent(ctx context.Context, a Agent) error
	// GetAgent returns the named agent, or ErrNotFound.
	GetAgent(ctx context.Context, name string) (Agent, error)
	// ListAgents returns all agents ordered by name.
	ListAgents(ctx context.Context) ([]Agent, error)
	// AgentByTokenHash returns the agent whose current token hash is hash,
	// or ErrNotFound.
	AgentByTokenHash(ctx context.Context, hash []byte) (Agent, error)
	// SetAgentToken replaces the agent's token hash, so the old token stops
	// matching at once, or returns ErrNotFound.
	SetAgentToken(ctx context.Context, name string, hash []byte) error
	// DeleteAgent deletes the agent and its connections, or returns
	// ErrNotFound.
	DeleteAgent(ctx context.Context, name string) error
	// CreateConnection stores a new connection. It returns ErrNotFound when
	// c.Agent does not exist and ErrExists when the name is taken. A zero
	// CreatedAt is set to the current time.
	CreateConnection(ctx context.Context, c Connection) error
	// ListConnections returns all stored connections ordered by name.
	ListConnections(ctx context.Context) ([]Connection, error)
	// DeleteConnection deletes the named connection, or returns ErrNotFound.
	DeleteConnection(ctx context.Context, name string) error
	// AppendAudit appends an event to the audit log.
	AppendAudit(ctx context.Context, e AuditEvent) error
	// ListAudit returns up to limit events, newest first. A limit below 1
	// returns none.
	ListAudit(ctx context.Context, limit int) ([]AuditEvent, error)
	// Close releases the database. Calls after Close fail.
	Close() error
}
