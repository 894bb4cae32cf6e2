package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// TestPostgresThroughTunnel runs real SQL on a real PostgreSQL reached only
// through the tunnel.
func TestPostgresThroughTunnel(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Fatalf("%s: want a postgres:// URL with host:port, got %q", testutil.EnvPostgresDSN, dsn)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	s := newStack(t, map[string]string{"pg": target}, []string{target})
	u.Host = s.GW.Conns["pg"] // the only way in is the tunnel

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connect to PostgreSQL through the tunnel: %v", err)
	}
	defer db.Close(context.Background())

	table := "ferry_e2e_" + randomHex(6)
	if _, err := db.Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, payload text NOT NULL)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Directly, not through the tunnel: the stack may be gone already.
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			c.Exec(ctx, "DROP TABLE IF EXISTS "+table)
			c.Close(ctx)
		}
	})
	const rows = 500
	want := map[int]string{}
	batch := &pgx.Batch{}
	for i := range rows {
		want[i] = "row " + strconv.Itoa(i) + " " + randomHex(64)
		batch.Queue("INSERT INTO "+table+" (id, payload) VALUES ($1, $2)", i, want[i])
	}
	if err := db.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatalf("insert %d rows: %v", rows, err)
	}
	res, err := db.Query(ctx, "SELECT id, payload FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	got := 0
	for res.Next() {
		var id int
		var payload string
		if err := res.Scan(&id, &payload); err != nil {
			t.Fatal(err)
		}
		if want[id] != payload {
			t.Errorf("row %d: payload %q, want %q", id, payload, want[id])
		}
		got++
	}
	if err := res.Err(); err != nil {
		t.Fatalf("read rows: %v", err)
	}
	if got != rows {
		t.Errorf("read back %d rows, inserted %d", got, rows)
	}
	if _, err := db.Exec(ctx, "DROP TABLE "+table); err != nil {
		t.Errorf("drop table: %v", err)
	}
}

// TestRedisThroughTunnel stores and reads a 1 MiB value on a real Redis
// reached only through the tunnel.
func TestRedisThroughTunnel(t *testing.T) {
	t.Parallel()
	addr := testutil.RedisAddr(t)
	s := newStack(t, map[string]string{"redis": addr}, []string{addr})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: s.GW.Conns["redis"], DisableIdentity: true})
	defer rdb.Close()
	key := "ferry-e2e-" + randomHex(8)
	val := make([]byte, 1<<20)
	rand.Read(val)
	if err := rdb.Set(ctx, key, val, time.Minute).Err(); err != nil {
		t.Fatalf("SET through the tunnel: %v", err)
	}
	defer rdb.Del(context.Background(), key)
	got, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatalf("GET through the tunnel: %v", err)
	}
	if !bytes.Equal(got, val) {
		t.Fatalf("GET returned %d bytes that differ from the %d stored", len(got), len(val))
	}
}

// TestHTTPLargeBody downloads a 50 MB body from an HTTP server behind the
// tunnel and checks every byte.
func TestHTTPLargeBody(t *testing.T) {
	t.Parallel()
	const size = 50_000_000
	body := make([]byte, size)
	rand.Read(body)
	sum := sha256.Sum256(body)
	addr := testutil.ServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	}))
	s := newStack(t, map[string]string{"web": addr}, []string{addr})

	hc := &http.Client{Timeout: 90 * time.Second}
	start := time.Now()
	resp, err := hc.Get("http://" + s.GW.Conns["web"] + "/big")
	if err != nil {
		t.Fatalf("GET through the tunnel: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through the tunnel: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("read body after %d bytes: %v", n, err)
	}
	t.Logf("%d MB in %s", n/1_000_000, time.Since(start).Round(time.Millisecond))
	if n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("body: %d bytes, sha256 %x; want %d bytes, sha256 %x", n, h.Sum(nil), size, sum)
	}
}
