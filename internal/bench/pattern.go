package bench

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
)

// patternPeriod is the length after which the pattern repeats. It is not a
// multiple of any power of two, so a chunk delivered at the wrong offset
// (lost, duplicated or reordered frames) never matches.
const patternPeriod = 1<<20 + 4093

// Pattern is the deterministic pseudo-random byte stream every bulk transfer
// carries: byte i of a stream that starts at offset off is pattern[(off+i) mod
// period]. Read-only after NewPattern; safe for concurrent use.
type Pattern struct {
	buf []byte // two periods, so any window of up to one period is contiguous
}

// NewPattern builds the pattern (the same on every run and in every process).
func NewPattern() *Pattern {
	r := rand.New(rand.NewPCG(0x5eed, 0xfe77))
	buf := make([]byte, 2*patternPeriod+8)
	for i := 0; i < patternPeriod; i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
	}
	copy(buf[patternPeriod:2*patternPeriod], buf[:patternPeriod])
	return &Pattern{buf: buf[:2*patternPeriod]}
}

// At is the n bytes (n at most one period) at stream offset off. The slice
// aliases the pattern: never write to it.
func (p *Pattern) At(off int64, n int) []byte {
	i := int(uint64(off) % patternPeriod)
	return p.buf[i : i+n]
}

// Match reports whether b is the pattern at offset off.
func (p *Pattern) Match(off int64, b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), patternPeriod)
		if !bytes.Equal(b[:n], p.At(off, n)) {
			return false
		}
		off += int64(n)
		b = b[n:]
	}
	return true
}
