package tunnel

import (
	"bytes"
	"net"
	"testing"
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
