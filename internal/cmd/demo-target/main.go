// Command demo-target is the small private service that `make run` puts
// behind the tunnel: an HTTP server that says hello and echoes POST bodies.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:18080", "address to serve on")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		if r.Method == http.MethodPost {
			io.Copy(w, io.LimitReader(r.Body, 64<<20))
			return
		}
		fmt.Fprintf(w, "hello from demo-target on %s (behind the firewall), %s\n", host, time.Now().UTC().Format(time.RFC3339))
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
