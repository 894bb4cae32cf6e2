package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sqlStore implements Store over database/sql for both drivers; dialect holds
// what differs between them.
type sqlStore struct {
	db *sql.DB
	d  dialect
}

// dialect is what differs between SQLite and PostgreSQL.
type dialect struct {
	name string
	// dollar: PostgreSQL wants $1, $2… where the queries below write ?.
	dollar bool
	// encodeTime turns a time into the value bound for a time column.
	encodeTime func(time.Time) any
	// classify maps a driver error to errExists, errForeignKey or nil.
	classify func(error) error
	// lockMigrations runs first in the migration transaction, so that
	// several gateway nodes starting at once migrate one after the other.
	lockMigrations string
	// migrationsTable creates schema_migrations if needed.
	migrationsTable string
	// schema picks this dialect's statements of a migration.
	schema func(migration) []string
}

// errForeignKey is what classify returns for a foreign key violation.
var errForeignKey = errors.New("foreign key violation")

// q rewrites the ? placeholders of query for the dialect.
func (d dialect) q(query string) string {
	if !d.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dbTime scans a time column of either driver: PostgreSQL returns time.Time,
// SQLite the fixed-width RFC 3339 text that sqliteTime writes.
type dbTime struct{ t time.Time }

// Scan implements sql.Scanner.
func (dt *dbTime) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		dt.t = v.UTC()
	case string:
		return dt.parse(v)
	case []byte:
		return dt.parse(string(v))
	case nil:
		dt.t = time.Time{}
	default:
		return fmt.Errorf("unexpected %T in a time column", src)
	}
	return nil
}

func (dt *dbTime) parse(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("bad time %q in database: %w", s, err)
	}
	dt.t = t.UTC()
	return nil
}

// sqliteTimeLayout has a fixed width so that stored times sort as text.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// normTime is how every time is stored: UTC, microseconds (PostgreSQL's
// precision), the current time for a zero value.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC().Truncate(time.Microsecond)
}

func (s *sqlStore) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.d.q(query), args...)
}

// inTx runs fn in a transaction and commits it when fn returns nil.
func (s *sqlStore) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

const agentColumns = "name, description, created_at, token_hash, token_rotated_at"

func scanAgent(row interface{ Scan(...any) error }) (Agent, error) {
	var a Agent
	var created, rotated dbTime
	if err := row.Scan(&a.Name, &a.Description, &created, &a.TokenHash, &rotated); err != nil {
		return Agent{}, err
	}
	a.CreatedAt, a.TokenRotatedAt = created.t, rotated.t
	return a, nil
}

func (s *sqlStore) CreateAgent(ctx context.Context, a Agent) error {
	created := normTime(a.CreatedAt)
	rotated := created
	if !a.TokenRotatedAt.IsZero() {
		rotated = normTime(a.TokenRotatedAt)
	}
	_, err := s.exec(ctx, "INSERT INTO agents ("+agentColumns+") VALUES (?, ?, ?, ?, ?)",
		a.Name, a.Description, s.d.encodeTime(created), nullBytes(a.TokenHash), s.d.encodeTime(rotated))
	if s.d.classify(err) == ErrExists {
		return fmt.Errorf("create agent %q: %w", a.Name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create agent %q: %w", a.Name, err)
	}
	return nil
}

// nullBytes stores an empty hash as NULL, which never equals anything.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func (s *sqlStore) GetAgent(ctx context.Context, name string) (Agent, error) {
	row := s.db.QueryRowContext(ctx, s.d.q("SELECT "+agentColumns+" FROM agents WHERE name = ?"), name)
	a, err := scanAgent(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Agent{}, fmt.Errorf("agent %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("get agent %q: %w", name, err)
	}
	return a, nil
}

func (s *sqlStore) ListAgents(ctx context.Context) ([]Agent, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+agentColumns+" FROM agents")
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	defer rows.Close()
	var out []Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	// Sorted here, not by ORDER BY: PostgreSQL collations differ by locale.
	slices.SortFunc(out, func(x, y Agent) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

func (s *sqlStore) AgentByTokenHash(ctx context.Context, hash []byte) (Agent, error) {
	if len(hash) == 0 {
		return Agent{}, fmt.Errorf("agent by token hash: %w", ErrNotFound)
	}
	row := s.db.QueryRowContext(ctx, s.d.q("SELECT "+agentColumns+" FROM agents WHERE token_hash = ?"), hash)
	a, err := scanAgent(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Agent{}, fmt.Errorf("agent by token hash: %w", ErrNotFound)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("agent by token hash: %w", err)
	}
	return a, nil
}

func (s *sqlStore) SetAgentToken(ctx context.Context, name string, hash []byte) error {
	res, err := s.exec(ctx, "UPDATE agents SET token_hash = ?, token_rotated_at = ? WHERE name = ?",
		nullBytes(hash), s.d.encodeTime(normTime(time.Time{})), name)
	if err != nil {
		return fmt.Errorf("set token of agent %q: %w", name, err)
	}
	return affectedOne(res, "agent", name)
}

// affectedOne turns "no row changed" into ErrNotFound.
func affectedOne(res sql.Result, kind, name string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s %q: %w", kind, name, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	return nil
}

func (s *sqlStore) DeleteAgent(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		// Explicit rather than trusting ON DELETE CASCADE alone: it also
		// holds on a SQLite connection opened without foreign_keys.
		if _, err := tx.ExecContext(ctx, s.d.q("DELETE FROM connections WHERE agent = ?"), name); err != nil {
			return fmt.Errorf("delete connections of agent %q: %w", name, err)
		}
		res, err := tx.ExecContext(ctx, s.d.q("DELETE FROM agents WHERE name = ?"), name)
		if err != nil {
			return fmt.Errorf("delete agent %q: %w", name, err)
		}
		return affectedOne(res, "agent", name)
	})
}

func (s *sqlStore) CreateConnection(ctx context.Context, c Connection) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, s.d.q("SELECT 1 FROM agents WHERE name = ?"), c.Agent).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("create connection %q: agent %q: %w", c.Name, c.Agent, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("create connection %q: %w", c.Name, err)
		}
		_, err = tx.ExecContext(ctx, s.d.q("INSERT INTO connections (name, agent, target, listen, created_at) VALUES (?, ?, ?, ?, ?)"),
			c.Name, c.Agent, c.Target, c.Listen, s.d.encodeTime(normTime(c.CreatedAt)))
		switch s.d.classify(err) {
		case ErrExists:
			return fmt.Errorf("create connection %q: %w", c.Name, ErrExists)
		case errForeignKey: // the agent was deleted meanwhile
			return fmt.Errorf("create connection %q: agent %q: %w", c.Name, c.Agent, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("create connection %q: %w", c.Name, err)
		}
		return nil
	})
}

func (s *sqlStore) ListConnections(ctx context.Context) ([]Connection, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, agent, target, listen, created_at FROM connections")
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	defer rows.Close()
	var out []Connection
	for rows.Next() {
		var c Connection
		var created dbTime
		if err := rows.Scan(&c.Name, &c.Agent, &c.Target, &c.Listen, &created); err != nil {
			return nil, fmt.Errorf("list connections: %w", err)
		}
		c.CreatedAt = created.t
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	slices.SortFunc(out, func(x, y Connection) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

func (s *sqlStore) DeleteConnection(ctx context.Context, name string) error {
	res, err := s.exec(ctx, "DELETE FROM connections WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete connection %q: %w", name, err)
	}
	return affectedOne(res, "connection", name)
}

func (s *sqlStore) AppendAudit(ctx context.Context, e AuditEvent) error {
	_, err := s.exec(ctx, "INSERT INTO audit_events (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
		s.d.encodeTime(normTime(e.At)), e.Actor, e.Action, e.Subject, e.Detail)
	if err != nil {
		return fmt.Errorf("append audit event %s: %w", e.Action, err)
	}
	return nil
}

func (s *sqlStore) ListAudit(ctx context.Context, limit int) ([]AuditEvent, error) {
	if limit < 1 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, s.d.q("SELECT id, at, actor, action, subject, detail FROM audit_events ORDER BY id DESC LIMIT ?"), limit)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var e AuditEvent
		var at dbTime
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Subject, &e.Detail); err != nil {
			return nil, fmt.Errorf("list audit events: %w", err)
		}
		e.At = at.t
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return out, nil
}

func (s *sqlStore) Close() error {
	return s.db.Close()
}
