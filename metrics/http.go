package metrics

import "net/http"

// Mount adds /metrics (from reg), /healthz (always 200 while the process
// serves) and /readyz (200 when ready returns true, else 503) to mux.
func Mount(mux *http.ServeMux, reg *Registry, ready func() bool) {
	mux.Handle("GET /metrics", reg)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: no tunnel connected\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
}
