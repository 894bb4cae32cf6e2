package tunnel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsPair connects a client stream to the server's *websocket.Conn, which
// the test drives directly. life bounds the client stream.
func wsPair(t *testing.T, life context.Context) (*stream, *websocket.Conn) {
	t.Helper()
	srvConn := make(chan *websocket.Conn, 1)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		srvConn <- c
		<-done // the connection lives until the test ends
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newStream(life, c, nil)
	sc := <-srvConn
	t.Cleanup(func() { sc.CloseNow(); s.Close() })
	return s, sc
}

func TestStreamReadsAcrossMessages(t *testing.T) {
	t.Parallel()
	s, sc := wsPair(t, context.Background())
	ctx := context.Background()
	for _, m := range []string{"hello ", "", "tunnel", " bytes"} { // an empty message is no end
		if err := sc.Write(ctx, websocket.MessageBinary, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, len("hello tunnel bytes"))
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "hello tunnel bytes" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := s.Write([]byte("one message")); err != nil {
		t.Fatal(err)
	}
	typ, b, err := sc.Read(ctx)
	if err != nil || typ != websocket.MessageBinary || string(b) != "one message" {
		t.Fatalf("server read %v %q %v", typ, b, err)
	}
	if err := s.SetDeadline(time.Now()); !errors.Is(err, errDeadline) {
		t.Errorf("SetDeadline: %v, want it refused", err)
	}
}

func TestStreamEnds(t *testing.T) {
	t.Parallel()
	t.Run("peer closes normally", func(t *testing.T) {
		t.Parallel()
		s, sc := wsPair(t, context.Background())
		go sc.Close(websocket.StatusNormalClosure, "")
		if _, err := s.Read(make([]byte, 8)); err != io.EOF {
			t.Fatalf("read after the peer's normal closure: %v, want EOF", err)
		}
	})
	t.Run("text message", func(t *testing.T) {
		t.Parallel()
		s, sc := wsPair(t, context.Background())
		sc.Write(context.Background(), websocket.MessageText, []byte("hi"))
		go sc.Read(context.Background()) // answers the stream's close
		if _, err := s.Read(make([]byte, 8)); err == nil || !strings.Contains(err.Error(), "unexpected") {
			t.Fatalf("read of a text message: %v, want an error", err)
		}
	})
	t.Run("life ends", func(t *testing.T) {
		t.Parallel()
		life, cancel := context.WithCancel(context.Background())
		s, _ := wsPair(t, life)
		errc := make(chan error, 1)
		go func() {
			_, err := s.Read(make([]byte, 8))
			errc <- err
		}()
		cancel()
		select {
		case err := <-errc:
			if err == nil || err == io.EOF {
				t.Fatalf("read when life ended: %v, want an error that is not a clean end", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a read outlived the stream's life")
		}
	})
}
