package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Open connects to the store and brings its schema up to date.
//
// driver is "sqlite" or "postgres". For "sqlite", dsn is a file path (or a
// "file:" URI, optionally with modernc.org/sqlite query parameters); the
// parent directory is created, and the database runs in WAL mode with a busy
// timeout and foreign keys on. ":memory:" gives a private in-memory database.
// For "postgres", dsn is a libpq-style URL or key=value string as
// github.com/jackc/pgx/v5 parses it.
//
// The caller closes the returned Store.
func Open(ctx context.Context, driver, dsn string) (Store, error) {
	var (
		s   *sqlStore
		err error
	)
	switch driver {
	case "sqlite":
		s, err = openSQLite(dsn)
	case "postgres":
		s, err = openPostgres(dsn)
	default:
		return nil, fmt.Errorf("open store: unknown driver %q: use \"sqlite\" or \"postgres\"", driver)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s store: %w", driver, err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("open %s store: %w", driver, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("open %s store: %w", driver, err)
	}
	return s, nil
}

func openSQLite(dsn string) (*sqlStore, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("empty dsn: set [store] dsn to a file path such as data/ferry.db")
	}
	base, query, _ := strings.Cut(dsn, "?")
	path := strings.TrimPrefix(base, "file:")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("invalid dsn query %q: %w", query, err)
	}
	memory := path == ":memory:" || q.Get("mode") == "memory"
	if !memory {
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("create database directory: %w", err)
			}
		}
	}
	params := []string{}
	if query != "" {
		params = append(params, query)
	}
	add := func(key, param string) {
		if !strings.Contains(query, key) {
			params = append(params, param)
		}
	}
	add("busy_timeout", "_pragma=busy_timeout(10000)")
	add("foreign_keys", "_pragma=foreign_keys(1)")
	if !memory {
		add("journal_mode", "_pragma=journal_mode(WAL)")
	}
	// Every transaction here writes: taking the write lock at BEGIN lets
	// busy_timeout work instead of failing with SQLITE_BUSY on the upgrade
	// from a read lock.
	add("_txlock", "_txlock=immediate")
	db, err := sql.Open("sqlite", base+"?"+strings.Join(params, "&"))
	if err != nil {
		return nil, err
	}
	if memory {
		// Each connection would otherwise get its own empty database.
		db.SetMaxOpenConns(1)
	}
	return &sqlStore{db: db, d: sqliteDialect()}, nil
}

func sqliteDialect() dialect {
	return dialect{
		name: "sqlite",
		encodeTime: func(t time.Time) any {
			return t.UTC().Format(sqliteTimeLayout)
		},
		classify: func(err error) error {
			var se *sqlite.Error
			if !errors.As(err, &se) {
				return nil
			}
			switch se.Code() {
			case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
				return ErrExists
			case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
				return errForeignKey
			}
			return nil
		},
		migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
		)`,
		schema: func(m migration) []string { return m.sqlite },
	}
}

func openPostgres(dsn string) (*sqlStore, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the DSN, password included.
		return nil, errors.New("invalid dsn: expected a postgres:// URL or key=value connection string")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &sqlStore{db: db, d: postgresDialect()}, nil
}

// migrationLockKey is the advisory lock key that serialises schema
// migrations across gateway nodes ("ferry" in ASCII).
const migrationLockKey = 0x6665727279

func postgresDialect() dialect {
	return dialect{
		name:   "postgres",
		dollar: true,
		encodeTime: func(t time.Time) any {
			return t.UTC()
		},
		classify: func(err error) error {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				return nil
			}
			switch pe.Code {
			case "23505": // unique_violation
				return ErrExists
			case "23503": // foreign_key_violation
				return errForeignKey
			}
			return nil
		},
		lockMigrations: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLockKey),
		migrationsTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			name TEXT NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
		)`,
		schema: func(m migration) []string { return m.postgres },
	}
}
