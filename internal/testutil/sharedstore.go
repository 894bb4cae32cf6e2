package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SharedStore is a gateway store that several gateway nodes open at once:
// a fresh PostgreSQL database, or a SQLite file (WAL) they share.
type SharedStore struct {
	Driver string // [store] driver
	DSN    string // [store] dsn
	admin  string // the DSN the database was created through; "" for SQLite
	dbName string
}

// NewSharedStore creates a fresh PostgreSQL database through pgDSN (a role
// allowed to create databases) when pgDSN is set, else names a SQLite file
// in dir. Close drops the database.
func NewSharedStore(ctx context.Context, dir, pgDSN string) (*SharedStore, error) {
	if pgDSN == "" {
		return &SharedStore{Driver: "sqlite", DSN: filepath.Join(dir, "shared.db")}, nil
	}
	var b [6]byte
	rand.Read(b[:])
	name := "ferry_ha_" + hex.EncodeToString(b[:])
	c, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL to create a test database: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	dsn, err := withDatabase(pgDSN, name)
	if err != nil {
		return nil, err
	}
	return &SharedStore{Driver: "postgres", DSN: dsn, admin: pgDSN, dbName: name}, nil
}

// String names the store for logs, without credentials.
func (s *SharedStore) String() string {
	if s.Driver == "sqlite" {
		return "sqlite " + s.DSN
	}
	return "postgres database " + s.dbName
}

// Close drops the PostgreSQL database (with any session still on it).
func (s *SharedStore) Close() error {
	if s.admin == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+s.dbName+" WITH (FORCE)")
	return err
}

// withDatabase returns dsn (URL or keyword/value form) pointing at database
// name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse PostgreSQL DSN: %w", err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil
}

// NewTestSharedStore is NewSharedStore for a test: PostgreSQL when
// FERRY_TEST_POSTGRES_DSN is set, else SQLite in a temporary directory;
// dropped at cleanup.
func NewTestSharedStore(t testing.TB) *SharedStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := NewSharedStore(ctx, t.TempDir(), os.Getenv(EnvPostgresDSN))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("drop the shared store: %v", err)
		}
	})
	return s
}
