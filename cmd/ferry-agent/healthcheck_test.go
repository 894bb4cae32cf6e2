package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: no tunnel connected\n"))
			return
		}
		w.Write([]byte("ready\n"))
	}))
	defer srv.Close()
	var out, errb strings.Builder
	if code := run([]string{"healthcheck", "--url", srv.URL + "/readyz"}, &out, &errb); code != 0 {
		t.Errorf("healthcheck on 200: exit %d, %s", code, errb.String())
	}
	ready.Store(false)
	errb.Reset()
	if code := run([]string{"healthcheck", "--url", srv.URL + "/readyz"}, &out, &errb); code != 1 || strings.Count(errb.String(), "\n") != 1 || !strings.Contains(errb.String(), "HTTP 503: not ready") {
		t.Errorf("healthcheck on 503: exit %d, %q", code, errb.String())
	}
	// Through the config: [metrics] listen names the address.
	cfg := filepath.Join(t.TempDir(), "agent.toml")
	os.WriteFile(cfg, []byte("[gateway]\nurl = \"wss://gw.example.com\"\n[metrics]\nlisten = \"\"\n"), 0o600)
	errb.Reset()
	if code := run([]string{"healthcheck", "--config", cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "metrics.listen is empty") {
		t.Errorf("healthcheck with metrics disabled: exit %d, %q", code, errb.String())
	}
}
