package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// countingConn records each write that reaches the socket.
type countingConn struct {
	net.Conn
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestBatchConnGathersOneMessage(t *testing.T) {
	t.Parallel()
	under := &countingConn{}
	bc := &batchConn{Conn: under}

	bc.Write([]byte("direct")) // outside a message: straight through
	bc.begin()
	for _, p := range []string{"hdr", "payload-1", "payload-2"} {
		if n, err := bc.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("write %q: %d, %v", p, n, err)
		}
	}
	if len(under.writes) != 1 {
		t.Fatalf("%d writes reached the socket before the message ended", len(under.writes))
	}
	if err := bc.end(); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 2 || string(under.writes[1]) != "hdrpayload-1payload-2" {
		t.Fatalf("writes %q, want the message in one write", under.writes)
	}

	// A message larger than a batch goes out in pieces, in order.
	big := bytes.Repeat([]byte("x"), maxBatch+10)
	bc.begin()
	bc.Write([]byte("head"))
	bc.Write(big)
	bc.Write([]byte("tail"))
	bc.end()
	got := bytes.Join(under.writes[2:], nil)
	if want := append(append([]byte("head"), big...), "tail"...); !bytes.Equal(got, want) {
		t.Fatalf("large message reassembled wrong: %d bytes, want %d", len(got), len(want))
	}
}

// recordRelay forwards TCP between the agent and addr and notes the length
// of every TLS application-data record the agent sends.
type recordRelay struct {
	ln   net.Listener
	mu   sync.Mutex
	lens []int
	wg   sync.WaitGroup
}

func startRecordRelay(t *testing.T, addr string) *recordRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recordRelay{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		in, err := ln.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer out.Close()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			io.Copy(in, out)
			in.Close()
		}()
		hdr := make([]byte, 5)
		for {
			if _, err := io.ReadFull(in, hdr); err != nil {
				out.Close()
				return
			}
			n := int(binary.BigEndian.Uint16(hdr[3:]))
			if hdr[0] == 23 { // application data
				r.mu.Lock()
				r.lens = append(r.lens, n)
				r.mu.Unlock()
			}
			if _, err := out.Write(hdr); err != nil {
				return
			}
			if _, err := io.CopyN(out, in, int64(n)); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

func (r *recordRelay) records() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lens)
}

// TestAgentSendsFullRecords checks that a message from the agent, which
// coder/websocket masks and writes on in 4 KiB pieces, still leaves in TLS
// records of the full 16 KiB: four times fewer records to seal and open.
func TestAgentSendsFullRecords(t *testing.T) {
	g := startGateway(t)
	relay := startRecordRelay(t, g.addr)
	_, port, _ := net.SplitHostPort(relay.ln.Addr().String())
	d := g.dialer(t, goodToken, func(c *DialConfig) { c.URL = "wss://localhost:" + port + "/v1/tunnel" })
	conn, err := d.Dial(context.Background(), context.Background(), loopback)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 128 << 10
	var got []int
	// crypto/tls starts a connection with small records and grows them
	// over its first 128 KiB: send that much first.
	for range 2 {
		before := len(relay.records())
		if n, err := conn.Write(make([]byte, size)); n != size || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
		testutil.Poll(t, 10*time.Second, "the message through the relay", func() (bool, string) {
			got = relay.records()[before:]
			sum := 0
			for _, n := range got {
				sum += n
			}
			return sum >= size, fmt.Sprintf("%d bytes in %d records", sum, len(got))
		})
	}
	// 128 KiB and the frame header: 9 records of at most 16 KiB of
	// plaintext each (with 4 KiB records, 33).
	if len(got) > 9 {
		t.Errorf("a 128 KiB message left in %d records %v, want 9", len(got), got)
	}
}
