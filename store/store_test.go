package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend opens fresh, empty stores of one kind; reopen opens the database
// behind the last store opened again.
type backend struct {
	name string
	// dsn returns a DSN for a fresh, empty database.
	dsn func(t *testing.T) string
}

func backends(t *testing.T) []backend {
	bs := []backend{{
		name: "sqlite",
		dsn: func(t *testing.T) string {
			// A directory that does not exist yet: Open creates it.
			return filepath.Join(t.TempDir(), "data", "ferry.db")
		},
	}}
	pgDSN := os.Getenv("FERRY_TEST_POSTGRES_DSN")
	if pgDSN == "" {
		if os.Getenv("FERRY_REQUIRE_SERVICES") == "1" {
			t.Fatal("FERRY_TEST_POSTGRES_DSN is not set and FERRY_REQUIRE_SERVICES=1: the PostgreSQL store tests must run")
		}
		t.Log("skipping the PostgreSQL variant: set FERRY_TEST_POSTGRES_DSN (e.g. postgres://ferry:ferry@127.0.0.1:5432/ferry_test) to run it")
		return bs
	}
	return append(bs, backend{name: "postgres", dsn: func(t *testing.T) string { return freshSchema(t, pgDSN) }})
}

// driver names the Open driver of a backend.
func (b backend) driver() string { return b.name }

// freshSchema creates a schema that the test owns and drops afterwards, and
// returns a DSN whose search_path points at it.
func freshSchema(t *testing.T, dsn string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to FERRY_TEST_POSTGRES_DSN: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	schema := "ferry_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	if strings.Contains(dsn, "://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "search_path=" + schema
	}
	return dsn + " search_path=" + schema
}

func open(t *testing.T, b backend, dsn string) Store {
	t.Helper()
	s, err := Open(context.Background(), b.driver(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))

// contract is the behaviour every Store keeps; each case gets a fresh store.
var contract = []struct {
	name string
	run  func(t *testing.T, s Store)
}{
	{"agent create get list", func(t *testing.T, s Store) {
		ctx := context.Background()
		for _, n := range []string{"b-agent", "a-agent", "c.agent"} {
			if err := s.CreateAgent(ctx, Agent{Name: n, Description: "desc " + n, CreatedAt: t0, TokenHash: hash(n)}); err != nil {
				t.Fatal(err)
			}
		}
		a, err := s.GetAgent(ctx, "a-agent")
		if err != nil {
			t.Fatal(err)
		}
		want := t0.UTC().Truncate(time.Microsecond)
		if a.Name != "a-agent" || a.Description != "desc a-agent" || !bytes.Equal(a.TokenHash, hash("a-agent")) {
			t.Errorf("GetAgent = %+v", a)
		}
		if !a.CreatedAt.Equal(want) || a.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt = %v, want %v in UTC", a.CreatedAt, want)
		}
		if !a.TokenRotatedAt.Equal(want) {
			t.Errorf("TokenRotatedAt = %v, want CreatedAt %v", a.TokenRotatedAt, want)
		}
		list, err := s.ListAgents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, a := range list {
			names = append(names, a.Name)
		}
		if got := strings.Join(names, ","); got != "a-agent,b-agent,c.agent" {
			t.Errorf("ListAgents names = %s", got)
		}
	}},
	{"agent create duplicate", func(t *testing.T, s Store) {
		ctx := context.Background()
		if err := s.CreateAgent(ctx, Agent{Name: "x", TokenHash: hash("1")}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAgent(ctx, Agent{Name: "x", TokenHash: hash("2")}); !errors.Is(err, ErrExists) {
			t.Errorf("second CreateAgent: %v, want ErrExists", err)
		}
	}},
	{"agent zero times default to now", func(t *testing.T, s Store) {
		ctx := context.Background()
		before := time.Now().Add(-time.Second)
		if err := s.CreateAgent(ctx, Agent{Name: "x"}); err != nil {
			t.Fatal(err)
		}
		a, err := s.GetAgent(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if a.CreatedAt.Before(before) || a.TokenRotatedAt.Before(before) {
			t.Errorf("times not set: %+v", a)
		}
	}},
	{"agent missing", func(t *testing.T, s Store) {
		ctx := context.Background()
		if _, err := s.GetAgent(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetAgent: %v, want ErrNotFound", err)
		}
		if err := s.SetAgentToken(ctx, "nope", hash("x")); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetAgentToken: %v, want ErrNotFound", err)
		}
		if err := s.DeleteAgent(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteAgent: %v, want ErrNotFound", err)
		}
		list, err := s.ListAgents(ctx)
		if err != nil || len(list) != 0 {
			t.Errorf("ListAgents = %v, %v; want empty", list, err)
		}
	}},
	{"token hash lookup and rotation", func(t *testing.T, s Store) {
		ctx := context.Background()
		if err := s.CreateAgent(ctx, Agent{Name: "a", CreatedAt: t0, TokenHash: hash("old")}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAgent(ctx, Agent{Name: "no-token", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		if a, err := s.AgentByTokenHash(ctx, hash("old")); err != nil || a.Name != "a" {
			t.Fatalf("AgentByTokenHash(old) = %v, %v", a.Name, err)
		}
		for _, h := range [][]byte{nil, {}, hash("other")} {
			if _, err := s.AgentByTokenHash(ctx, h); !errors.Is(err, ErrNotFound) {
				t.Errorf("AgentByTokenHash(%x): %v, want ErrNotFound", h, err)
			}
		}
		if err := s.SetAgentToken(ctx, "a", hash("new")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AgentByTokenHash(ctx, hash("old")); !errors.Is(err, ErrNotFound) {
			t.Errorf("old token still matches after rotation: %v", err)
		}
		a, err := s.AgentByTokenHash(ctx, hash("new"))
		if err != nil || a.Name != "a" {
			t.Fatalf("AgentByTokenHash(new) = %v, %v", a.Name, err)
		}
		if !a.TokenRotatedAt.After(a.CreatedAt) {
			t.Errorf("TokenRotatedAt %v not after CreatedAt %v", a.TokenRotatedAt, a.CreatedAt)
		}
	}},
	{"connections", func(t *testing.T, s Store) {
		ctx := context.Background()
		if err := s.CreateAgent(ctx, Agent{Name: "a", TokenHash: hash("a")}); err != nil {
			t.Fatal(err)
		}
		c := Connection{Name: "erp-db", Agent: "a", Target: "db.internal:5432", Listen: "127.0.0.1:15432", CreatedAt: t0}
		if err := s.CreateConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateConnection(ctx, Connection{Name: "api", Agent: "a", Target: "h:443", Listen: ":8443"}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateConnection(ctx, c); !errors.Is(err, ErrExists) {
			t.Errorf("duplicate CreateConnection: %v, want ErrExists", err)
		}
		if err := s.CreateConnection(ctx, Connection{Name: "z", Agent: "ghost", Target: "h:1", Listen: ":1"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("CreateConnection for a missing agent: %v, want ErrNotFound", err)
		}
		list, err := s.ListConnections(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Name != "api" || list[1].Name != "erp-db" {
			t.Fatalf("ListConnections = %+v", list)
		}
		got := list[1]
		c.CreatedAt = t0.UTC().Truncate(time.Microsecond)
		if got != c {
			t.Errorf("stored connection = %+v, want %+v", got, c)
		}
		if err := s.DeleteConnection(ctx, "api"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteConnection(ctx, "api"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second DeleteConnection: %v, want ErrNotFound", err)
		}
		if list, _ := s.ListConnections(ctx); len(list) != 1 {
			t.Errorf("after delete: %+v", list)
		}
	}},
	{"delete agent deletes its connections", func(t *testing.T, s Store) {
		ctx := context.Background()
		for _, n := range []string{"a", "b"} {
			if err := s.CreateAgent(ctx, Agent{Name: n, TokenHash: hash(n)}); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateConnection(ctx, Connection{Name: "conn-" + n, Agent: n, Target: "h:1", Listen: ":1"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteAgent(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetAgent(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetAgent after delete: %v", err)
		}
		if _, err := s.AgentByTokenHash(ctx, hash("a")); !errors.Is(err, ErrNotFound) {
			t.Errorf("token of a deleted agent still matches: %v", err)
		}
		list, err := s.ListConnections(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Name != "conn-b" {
			t.Errorf("ListConnections = %+v, want only conn-b", list)
		}
	}},
	{"audit", func(t *testing.T, s Store) {
		ctx := context.Background()
		if got, err := s.ListAudit(ctx, 10); err != nil || len(got) != 0 {
			t.Fatalf("empty ListAudit = %v, %v", got, err)
		}
		for i := range 5 {
			e := AuditEvent{At: t0.Add(time.Duration(i) * time.Second), Actor: "admin", Action: "agent.create", Subject: fmt.Sprint("a", i), Detail: "d"}
			if err := s.AppendAudit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AppendAudit(ctx, AuditEvent{Actor: "node:gw1", Action: "node.start"}); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListAudit(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("ListAudit(3) returned %d events", len(got))
		}
		if got[0].Action != "node.start" || got[0].At.IsZero() || got[1].Subject != "a4" || got[2].Subject != "a3" {
			t.Errorf("ListAudit(3) = %+v", got)
		}
		if !(got[0].ID > got[1].ID && got[1].ID > got[2].ID) {
			t.Errorf("IDs not decreasing: %d %d %d", got[0].ID, got[1].ID, got[2].ID)
		}
		want := AuditEvent{ID: got[1].ID, At: t0.Add(4 * time.Second).UTC().Truncate(time.Microsecond), Actor: "admin", Action: "agent.create", Subject: "a4", Detail: "d"}
		if got[1] != want {
			t.Errorf("event = %+v, want %+v", got[1], want)
		}
		if all, _ := s.ListAudit(ctx, 100); len(all) != 6 {
			t.Errorf("ListAudit(100) returned %d events, want 6", len(all))
		}
		if none, err := s.ListAudit(ctx, 0); err != nil || len(none) != 0 {
			t.Errorf("ListAudit(0) = %v, %v", none, err)
		}
	}},
	{"concurrent creates", func(t *testing.T, s Store) {
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			wg.Go(func() {
				errs[i] = s.CreateAgent(ctx, Agent{Name: "same", TokenHash: hash(fmt.Sprint(i))})
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrExists):
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d creates succeeded, want 1", ok)
		}
	}},
}

func TestContract(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range contract {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, open(t, b, b.dsn(t)))
				})
			}
		})
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := b.dsn(t)
			s := open(t, b, dsn)
			if err := s.CreateAgent(ctx, Agent{Name: "a", TokenHash: hash("a")}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s2 := open(t, b, dsn)
			if _, err := s2.AgentByTokenHash(ctx, hash("a")); err != nil {
				t.Fatalf("after reopen: %v", err)
			}
		})
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			dsn := b.dsn(t)
			s := open(t, b, dsn).(*sqlStore)
			if _, err := s.exec(context.Background(), "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", 9999, "future"); err != nil {
				t.Fatal(err)
			}
			s.Close()
			_, err := Open(context.Background(), b.driver(), dsn)
			if err == nil || !strings.Contains(err.Error(), "upgrade ferry-gateway") {
				t.Errorf("Open of a newer schema: %v", err)
			}
		})
	}
}

func TestClosedStoreFails(t *testing.T) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := open(t, b, b.dsn(t))
			s.Close()
			if _, err := s.ListAgents(context.Background()); err == nil {
				t.Error("ListAgents on a closed store succeeded")
			}
		})
	}
}

func TestSQLiteSettings(t *testing.T) {
	t.Parallel()
	s := open(t, backend{name: "sqlite"}, filepath.Join(t.TempDir(), "f.db")).(*sqlStore)
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000"} {
		var got string
		if err := s.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestSQLiteMemory(t *testing.T) {
	t.Parallel()
	s := open(t, backend{name: "sqlite"}, ":memory:")
	if err := s.CreateAgent(context.Background(), Agent{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAgent(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		driver, dsn, want string
	}{
		{"mysql", "x", `unknown driver "mysql"`},
		{"sqlite", "", "empty dsn"},
		{"sqlite", filepath.Join(file, "sub", "f.db"), "create database directory"},
		{"postgres", "postgres://u:secret@[::1", "invalid dsn"},
	}
	for _, tt := range tests {
		_, err := Open(context.Background(), tt.driver, tt.dsn)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q, %q) = %v, want an error containing %q", tt.driver, tt.dsn, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}
