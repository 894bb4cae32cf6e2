package mux

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestOpenRequestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, req := range []OpenRequest{
		{Target: "db.internal:5432", ConnID: "c-0123456789ab"},
		{Target: "[2001:db8::1]:443"},
		{Target: strings.Repeat("a", MaxTargetLen), ConnID: strings.Repeat("x", MaxConnIDLen)},
	} {
		b, err := req.Append(nil)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		rd := bytes.NewReader(append(b, "payload"...))
		got, err := ReadOpenRequest(rd)
		if err != nil || got != req {
			t.Fatalf("round trip %+v: got %+v, %v", req, got, err)
		}
		if rest, _ := io.ReadAll(rd); string(rest) != "payload" {
			t.Fatalf("decoder read past the request: rest %q", rest)
		}
	}
}

func TestOpenRequestRejects(t *testing.T) {
	t.Parallel()
	if _, err := (OpenRequest{}).Append(nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("empty target: %v", err)
	}
	if _, err := (OpenRequest{Target: strings.Repeat("a", 256)}).Append(nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("long target: %v", err)
	}
	for name, in := range map[string][]byte{
		"version":      {2, 1, 1, 'a', 0},
		"network":      {1, 2, 1, 'a', 0},
		"empty target": {1, 1, 0, 0},
		"long conn id": append([]byte{1, 1, 1, 'a', 65}, make([]byte, 65)...),
	} {
		if _, err := ReadOpenRequest(bytes.NewReader(in)); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: got %v, want ErrBadRequest", name, err)
		}
	}
	if _, err := ReadOpenRequest(bytes.NewReader([]byte{1, 1, 5, 'a'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: got %v, want ErrUnexpectedEOF", err)
	}
}

func TestReplyRoundTrip(t *testing.T) {
	t.Parallel()
	for c := CodeOK; c <= CodeBusy; c++ {
		r := Reply{Code: c, Message: "dial db.internal:5432: connection refused"}
		got, err := ReadReply(bytes.NewReader(r.Append(nil)))
		if err != nil || got != r {
			t.Fatalf("round trip %+v: got %+v, %v", r, got, err)
		}
	}
	long := Reply{Code: CodeDenied, Message: strings.Repeat("m", 5000)}
	got, err := ReadReply(bytes.NewReader(long.Append(nil)))
	if err != nil || len(got.Message) != MaxMessageLen {
		t.Fatalf("long message: %d bytes, %v", len(got.Message), err)
	}
	if _, err := ReadReply(bytes.NewReader([]byte{1, 99, 0, 0})); !errors.Is(err, ErrBadRequest) {
		t.Errorf("unknown code: %v", err)
	}
	if _, err := ReadReply(bytes.NewReader([]byte{1, 0, 0xff, 0xff})); !errors.Is(err, ErrBadRequest) {
		t.Errorf("oversized message: %v", err)
	}
}

func TestControlRoundTrip(t *testing.T) {
	t.Parallel()
	m := Message{Type: TypeInfo, Version: "1.0", Hostname: "h", OS: "linux", Arch: "amd64", Instance: "i"}
	b, err := AppendControl(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadControl(bytes.NewReader(b))
	if err != nil || got != m {
		t.Fatalf("got %+v, %v", got, err)
	}
	for name, in := range map[string][]byte{
		"zero length": {0, 0, 0, 0},
		"huge length": {0xff, 0xff, 0xff, 0xff},
		"not json":    {0, 0, 0, 3, 'a', 'b', 'c'},
		"no type":     {0, 0, 0, 2, '{', '}'},
	} {
		if _, err := ReadControl(bytes.NewReader(in)); !errors.Is(err, ErrBadControl) {
			t.Errorf("%s: got %v, want ErrBadControl", name, err)
		}
	}
}

func FuzzReadOpenRequest(f *testing.F) {
	b, _ := OpenRequest{Target: "db.internal:5432", ConnID: "c-1"}.Append(nil)
	f.Add(b)
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{1, 1, 255})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := ReadOpenRequest(bytes.NewReader(in))
		if err != nil {
			return
		}
		out, err := req.Append(nil)
		if err != nil {
			t.Fatalf("decoded request does not encode: %+v: %v", req, err)
		}
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("re-encoding differs: in %x out %x", in, out)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	f.Add(Reply{Code: CodeDialFailed, Message: "refused"}.Append(nil))
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{1, 5, 4, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ReadReply(bytes.NewReader(in))
		if err != nil {
			return
		}
		if !bytes.HasPrefix(in, r.Append(nil)) {
			t.Fatalf("re-encoding differs for %+v", r)
		}
	})
}

func FuzzReadControl(f *testing.F) {
	for _, m := range []Message{{Type: TypeHello, SessionID: "s-1", Node: "gw1"}, {Type: TypeReset, Stream: 7}, {Type: TypePing, Seq: 1}} {
		b, _ := AppendControl(nil, m)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 1, '{'})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ReadControl(bytes.NewReader(in))
		if err != nil {
			return
		}
		if m.Type == "" {
			t.Fatal("decoded a message without a type")
		}
	})
}
