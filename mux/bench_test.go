package mux

import (
	"context"
	"io"
	"net"
	"testing"
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

// BenchmarkTunnel is the full in-process tunnel: the same two pipes over a
// gateway session and an agent session on a real TLS WebSocket, as
// production runs them (minus the processes and the allow-list dial).
func BenchmarkTunnel(b *testing.B) {
	benchPipes(b, "wss")
	b.Run("open", func(b *testing.B) { benchOpen(b, "wss") })
}

// BenchmarkOpen is the open handshake alone: Session.Open (request, the
// agent's ReadRequest and ok reply) and the stream's close, over an
// in-memory session.
func BenchmarkOpen(b *testing.B) { benchOpen(b, "pipe") }

func benchPipes(b *testing.B, transport string) {
	b.Run("upload", func(b *testing.B) {
		h := newPipeHarness(b, transport)
		benchCopy(b, h.client, h.target)
	})
	b.Run("download", func(b *testing.B) {
		h := newPipeHarness(b, transport)
		benchCopy(b, h.target, h.client)
	})
	b.Run("echo-1B", func(b *testing.B) {
		h := newPipeHarness(b, transport)
		go io.Copy(h.target, h.target) // ends when the harness closes target
		one := make([]byte, 1)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			one[0] = byte(i)
			if _, err := h.client.Write(one); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(h.client, one); err != nil {
				b.Fatal(err)
			}
			if one[0] != byte(i) {
				b.Fatalf("echo of %#x came back as %#x", byte(i), one[0])
			}
		}
	})
}

// benchCopy writes b.N chunks to w and reads them all from r.
func benchCopy(b *testing.B, w, r net.Conn) {
	buf := make([]byte, benchChunk)
	want := int64(b.N) * benchChunk
	done := make(chan error, 1)
	go func() {
		rb := make([]byte, 64<<10)
		var got int64
		for got < want {
			n, err := r.Read(rb)
			got += int64(n)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
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
