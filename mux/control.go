package mux

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxControlLen is the largest control message body in bytes.
const MaxControlLen = 16 << 10

// ErrBadControl marks a malformed control message.
var ErrBadControl = errors.New("malformed control message")

// Control message types.
const (
	TypeHello    = "hello"     // gateway → agent: session id, gateway node
	TypeInfo     = "info"      // agent → gateway: version, hostname, os/arch, instance
	TypeGoaway   = "goaway"    // gateway → agent: this node is shutting down
	TypeDrain    = "drain"     // agent → gateway: open no new streams here
	TypePing     = "ping"      // either way; answered by pong with the same seq
	TypePong     = "pong"      //
	TypeReset    = "reset"     // either way: abort stream Stream, reset your end
	TypeResetAck = "reset_ack" // the peer has reset its end of Stream
)

// Message is one control message. Which fields are set depends on Type.
type Message struct {
	Type      string `json:"type"`
	SessionID string `json:"session_id,omitempty"`
	Node      string `json:"node,omitempty"`
	Version   string `json:"version,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	OS        string `json:"os,omitempty"`
	Arch      string `json:"arch,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Stream    uint32 `json:"stream,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
}

// AppendControl encodes m after b: a 4-byte big-endian length, then JSON.
func AppendControl(b []byte, m Message) ([]byte, error) {
	if m.Type == "" {
		return b, fmt.Errorf("%w: empty type", ErrBadControl)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return b, fmt.Errorf("encode control message: %w", err)
	}
	if len(body) > MaxControlLen {
		return b, fmt.Errorf("%w: %d bytes exceeds %d", ErrBadControl, len(body), MaxControlLen)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

// ReadControl decodes one control message from rd. Unknown fields are
// ignored so that later versions can add them; unknown types are returned
// for the caller to ignore.
func ReadControl(rd io.Reader) (Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return Message{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxControlLen {
		return Message{}, fmt.Errorf("%w: length %d not in 1-%d", ErrBadControl, n, MaxControlLen)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		return Message{}, unexpected(err)
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrBadControl, err)
	}
	if m.Type == "" {
		return Message{}, fmt.Errorf("%w: missing type", ErrBadControl)
	}
	return m, nil
}
