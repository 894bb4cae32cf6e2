package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one numbered step of the schema, with a variant per dialect.
// Migrations are append-only: never edit one that has shipped.
type migration struct {
	version  int
	name     string
	sqlite   []string
	postgres []string
}

// migrations returns the schema history, oldest first.
func migrations() []migration {
	return []migration{
		{
			version: 1,
			name:    "agents, connections, audit log",
			sqlite: []string{
				`CREATE TABLE agents (
					name TEXT PRIMARY KEY,
					description TEXT NOT NULL DEFAULT '',
					created_at TEXT NOT NULL,
					token_hash BLOB,
					token_rotated_at TEXT NOT NULL
				)`,
				`CREATE INDEX agents_token_hash ON agents (token_hash)`,
				`CREATE TABLE connections (
					name TEXT PRIMARY KEY,
					agent TEXT NOT NULL REFERENCES agents (name) ON DELETE CASCADE,
					target TEXT NOT NULL,
					listen TEXT NOT NULL,
					created_at TEXT NOT NULL
				)`,
				`CREATE INDEX connections_agent ON connections (agent)`,
				`CREATE TABLE audit_events (
					id INTEGER PRIMARY KEY AUTOINCREMENT,
					at TEXT NOT NULL,
					actor TEXT NOT NULL,
					action TEXT NOT NULL,
					subject TEXT NOT NULL DEFAULT '',
					detail TEXT NOT NULL DEFAULT ''
				)`,
			},
			postgres: []string{
				`CREATE TABLE agents (
					name TEXT PRIMARY KEY,
					description TEXT NOT NULL DEFAULT '',
					created_at TIMESTAMPTZ NOT NULL,
					token_hash BYTEA,
					token_rotated_at TIMESTAMPTZ NOT NULL
				)`,
				`CREATE INDEX agents_token_hash ON agents (token_hash)`,
				`CREATE TABLE connections (
					name TEXT PRIMARY KEY,
					agent TEXT NOT NULL REFERENCES agents (name) ON DELETE CASCADE,
					target TEXT NOT NULL,
					listen TEXT NOT NULL,
					created_at TIMESTAMPTZ NOT NULL
				)`,
				`CREATE INDEX connections_agent ON connections (agent)`,
				`CREATE TABLE audit_events (
					id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
					at TIMESTAMPTZ NOT NULL,
					actor TEXT NOT NULL,
					action TEXT NOT NULL,
					subject TEXT NOT NULL DEFAULT '',
					detail TEXT NOT NULL DEFAULT ''
				)`,
			},
		},
	}
}

// migrate applies the pending migrations in one transaction: either the
// database reaches the latest schema or it is left as it was.
func (s *sqlStore) migrate(ctx context.Context) error {
	all := migrations()
	latest := all[len(all)-1].version
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.lockMigrations != "" {
			if _, err := tx.ExecContext(ctx, s.d.lockMigrations); err != nil {
				return fmt.Errorf("lock schema migrations: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.d.migrationsTable); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		applied := map[int]bool{}
		rows, err := tx.QueryContext(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("read schema_migrations: %w", err)
			}
			if v > latest {
				rows.Close()
				return fmt.Errorf("database schema version %d is newer than this ferry-gateway supports (%d): upgrade ferry-gateway", v, latest)
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, m := range all {
			if applied[m.version] {
				continue
			}
			for _, stmt := range s.d.schema(m) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("schema migration %d (%s): %w", m.version, m.name, err)
				}
			}
			if _, err := tx.ExecContext(ctx, s.d.q("INSERT INTO schema_migrations (version, name) VALUES (?, ?)"), m.version, m.name); err != nil {
				return fmt.Errorf("record schema migration %d: %w", m.version, err)
			}
		}
		return nil
	})
}
