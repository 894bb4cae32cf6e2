package mux

import (
	"context"
	"io"
	"testing"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// Micro-benchmarks of the hot paths. Names are stable for benchstat:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./mux/ > old.txt
//
// Each reports allocations for the whole pipeline (both sessions and both
// pipes run in this process), so allocs/op counts every allocation one
// chunk or one round trip causes.

const benchChunk = 32 << 10

// BenchmarkPipe is mux.Pipe on both sides: client TCP ⇄ [gateway Pipe] ⇄
// in-memory session (net.Pipe) ⇄ [agent Pipe] ⇄ target TCP. It isolates the
// copy loops and smux framing from TLS and WebSocket.
func BenchmarkPipe(b *testing.B) { benchPipes(b, "pipe") }

// The full in-process tunnel, with TLS, the WebSocket and the batching
// layers as the binaries build them, is tunnel.BenchmarkTunnel.

// BenchmarkOpen is the open handshake alone: Session.Open (request, the
// agent's ReadRequest and ok reply) and the stream's close, over an
// in-memory session.
func BenchmarkOpen(b *testing.B) { benchOpen(b, "pipe") }

func benchPipes(b *testing.B, transport string) {
	b.Run("upload", func(b *testing.B) {
		h := newPipeHarness(b, transport)
		testutil.BenchCopy(b, h.client, h.target, benchChunk)
	})
	b.Run("download", func(b *testing.B) {
		h := newPipeHarness(b, transport)
		testutil.BenchCopy(b, h.target, h.client, benchChunk)
	})
	b.Run("echo-1B", func(b *testing.B) {
		h := newPipeHarness(b, transport)
		go io.Copy(h.target, h.target) // ends when the harness closes target
		testutil.BenchEcho(b, h.client)
	})
}

func benchOpen(b *testing.B, transport string) {
	gw, ag := sessionPair(b, transport)
	serveAgent(b, ag, func(st *Stream) { st.Close() })
	req := OpenRequest{Target: "db.internal:5432", ConnID: "c-0123456789abcdef"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := gw.Open(ctx, req, nil)
		if err != nil {
			b.Fatal(err)
		}
		st.Close()
	}
}
