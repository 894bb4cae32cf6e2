package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

func TestReadyURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ listen, want, err string }{
		{"127.0.0.1:9464", "http://127.0.0.1:9464/readyz", ""},
		{"0.0.0.0:9464", "http://127.0.0.1:9464/readyz", ""},
		{":9464", "http://127.0.0.1:9464/readyz", ""},
		{"[::]:9464", "http://[::1]:9464/readyz", ""},
		{"[::1]:9464", "http://[::1]:9464/readyz", ""},
		{"agent.local:1", "http://agent.local:1/readyz", ""},
		{"", "", "metrics.listen is empty"},
		{"127.0.0.1:0", "", "port 0 is chosen at start; give --url"},
		{":0", "", "give --url"},
		{"no-port", "", `metrics.listen "no-port"`},
	} {
		got, err := ReadyURL("metrics.listen", tt.listen)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ReadyURL(%q) = %q, %v; want %q, %q", tt.listen, got, err, tt.want, tt.err)
		}
	}
}

func TestProbeReady(t *testing.T) {
	t.Parallel()
	// The real handlers: what the programs serve is what the probe reads.
	var ready atomic.Bool
	mux := http.NewServeMux()
	Mount(mux, NewRegistry(), ready.Load)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	refused := "http://" + testutil.ClosedAddr(t) + "/readyz"

	for _, tt := range []struct {
		name, url string
		ready     bool
		want, err string
	}{
		{name: "200", url: srv.URL + "/readyz", ready: true, want: "ready"},
		{name: "503", url: srv.URL + "/readyz", err: "/readyz: HTTP 503: not ready: no tunnel connected"},
		{name: "404", url: srv.URL + "/nope", ready: true, err: "HTTP 404: 404 page not found"},
		{name: "refused", url: refused, err: refused + ": dial tcp"},
		{name: "bad URL", url: "::", err: `--url "::"`},
	} {
		ready.Store(tt.ready) // subtests run in order, not in parallel
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			got, err := ProbeReady(ctx, tt.url)
			if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ProbeReady(%q) = %q, %v; want %q, %q", tt.url, got, err, tt.want, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestProbeReadyTimeout(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := ProbeReady(ctx, srv.URL+"/readyz"); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("ProbeReady past its deadline = %v; want deadline exceeded", err)
	}
}
