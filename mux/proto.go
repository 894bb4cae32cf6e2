package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtocolVersion is the version byte of open requests and replies.
const ProtocolVersion = 1

// Limits of the open handshake, enforced by both encoders and decoders.
const (
	MaxTargetLen  = 255  // bytes of "host:port"
	MaxConnIDLen  = 64   // bytes of a connection id
	MaxMessageLen = 1024 // bytes of a reply message
)

// ErrBadRequest marks a malformed open request or reply.
var ErrBadRequest = errors.New("malformed stream request")

// NetworkTCP is the only network of protocol v1.
const NetworkTCP = 1

// OpenRequest is the first thing the gateway writes on a data stream.
//
// Wire format: version (1 byte), network (1 byte, 1 = tcp), target length
// (1 byte) and target, connection id length (1 byte) and connection id.
type OpenRequest struct {
	Target string // "host:port"
	ConnID string // for audit and the activity log
}

// Code is the outcome carried by an open reply.
type Code uint8

// Reply codes. Their String forms are the values of the result metric labels.
const (
	CodeOK Code = iota
	CodeDenied
	CodeDialFailed
	CodeTimeout
	CodeBadRequest
	CodeBusy
)

var codeNames = [...]string{"ok", "denied", "dial_failed", "timeout", "bad_request", "busy"}

// String returns the code's protocol name, such as "dial_failed".
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code_%d", uint8(c))
}

// Reply is what the agent writes back on a data stream after an OpenRequest.
//
// Wire format: version (1 byte), code (1 byte), message length (2 bytes, big
// endian) and message.
type Reply struct {
	Code    Code
	Message string
}

// Append encodes r after b.
func (r OpenRequest) Append(b []byte) ([]byte, error) {
	if r.Target == "" || len(r.Target) > MaxTargetLen {
		return b, fmt.Errorf("%w: target length %d not in 1-%d", ErrBadRequest, len(r.Target), MaxTargetLen)
	}
	if len(r.ConnID) > MaxConnIDLen {
		return b, fmt.Errorf("%w: connection id longer than %d", ErrBadRequest, MaxConnIDLen)
	}
	b = append(b, ProtocolVersion, NetworkTCP, byte(len(r.Target)))
	b = append(b, r.Target...)
	b = append(b, byte(len(r.ConnID)))
	return append(b, r.ConnID...), nil
}

// ReadOpenRequest decodes one open request from rd, reading no byte beyond it.
// A malformed request gives an error wrapping ErrBadRequest; an I/O error is
// returned as is.
func ReadOpenRequest(rd io.Reader) (OpenRequest, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return OpenRequest{}, err
	}
	if hdr[0] != ProtocolVersion {
		return OpenRequest{}, fmt.Errorf("%w: protocol version %d, want %d", ErrBadRequest, hdr[0], ProtocolVersion)
	}
	if hdr[1] != NetworkTCP {
		return OpenRequest{}, fmt.Errorf("%w: network %d, only tcp (1) is supported", ErrBadRequest, hdr[1])
	}
	if hdr[2] == 0 {
		return OpenRequest{}, fmt.Errorf("%w: empty target", ErrBadRequest)
	}
	buf := make([]byte, int(hdr[2])+1)
	if _, err := io.ReadFull(rd, buf); err != nil {
		return OpenRequest{}, unexpected(err)
	}
	req := OpenRequest{Target: string(buf[:hdr[2]])}
	if n := int(buf[hdr[2]]); n > 0 {
		if n > MaxConnIDLen {
			return OpenRequest{}, fmt.Errorf("%w: connection id longer than %d", ErrBadRequest, MaxConnIDLen)
		}
		id := make([]byte, n)
		if _, err := io.ReadFull(rd, id); err != nil {
			return OpenRequest{}, unexpected(err)
		}
		req.ConnID = string(id)
	}
	return req, nil
}

// Append encodes r after b. A message longer than MaxMessageLen is cut.
func (r Reply) Append(b []byte) []byte {
	msg := r.Message
	if len(msg) > MaxMessageLen {
		msg = msg[:MaxMessageLen]
	}
	b = append(b, ProtocolVersion, byte(r.Code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// ReadReply decodes one reply from rd, reading no byte beyond it.
func ReadReply(rd io.Reader) (Reply, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return Reply{}, err
	}
	if hdr[0] != ProtocolVersion {
		return Reply{}, fmt.Errorf("%w: reply version %d, want %d", ErrBadRequest, hdr[0], ProtocolVersion)
	}
	if int(hdr[1]) >= len(codeNames) {
		return Reply{}, fmt.Errorf("%w: unknown reply code %d", ErrBadRequest, hdr[1])
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if n > MaxMessageLen {
		return Reply{}, fmt.Errorf("%w: reply message of %d bytes exceeds %d", ErrBadRequest, n, MaxMessageLen)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(rd, msg); err != nil {
		return Reply{}, unexpected(err)
	}
	return Reply{Code: Code(hdr[1]), Message: string(msg)}, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
