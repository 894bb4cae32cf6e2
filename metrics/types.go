package metrics

import (
	"encoding/binary"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
)

// Counter is a value that only goes up. Its methods are safe for
// concurrent use.
type Counter struct{ bits atomic.Uint64 }

// Add adds v, which must not be negative: a negative v is ignored, so that
// the counter never goes down.
func (c *Counter) Add(v float64) {
	if !(v > 0) {
		return
	}
	addFloat(&c.bits, v)
}

// Inc adds 1.
func (c *Counter) Inc() { addFloat(&c.bits, 1) }

// Value is the counter's value now.
func (c *Counter) Value() float64 { return math.Float64frombits(c.bits.Load()) }

// Gauge is a value that goes up and down. Its methods are safe for
// concurrent use.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v, which may be negative.
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Inc adds 1.
func (g *Gauge) Inc() { addFloat(&g.bits, 1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { addFloat(&g.bits, -1) }

// Value is the gauge's value now.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

func addFloat(bits *atomic.Uint64, v float64) {
	for {
		old := bits.Load()
		if bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// Histogram counts observations in buckets with fixed upper bounds. Its
// methods are safe for concurrent use.
type Histogram struct {
	upper  []float64 // ascending; +Inf is implied
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
}

func newHistogram(upper []float64) *Histogram {
	return &Histogram{upper: upper, counts: make([]uint64, len(upper)+1)}
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.upper) && !(v <= h.upper[i]) { // NaN counts only in +Inf, as client_golang's
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.mu.Unlock()
}

// snapshot returns the cumulative bucket counts (the last is the total)
// and the sum, consistent with each other.
func (h *Histogram) snapshot() (cum []uint64, sum float64) {
	cum = make([]uint64, len(h.counts))
	h.mu.Lock()
	var n uint64
	for i, c := range h.counts {
		n += c
		cum[i] = n
	}
	sum = h.sum
	h.mu.Unlock()
	return cum, sum
}

// vec is a family's children by label values. Children are created on
// first use and live as long as the family.
type vec[T any] struct {
	labels   []string
	mu       sync.RWMutex
	children map[string]*child[T]
}

type child[T any] struct {
	values []string
	m      T
}

func newVec[T any](labels []string) vec[T] {
	return vec[T]{labels: labels, children: map[string]*child[T]{}}
}

// get returns the child for values, creating it. A wrong number of values
// is a programming error and panics, naming the labels.
func (v *vec[T]) get(values []string) *T {
	if len(values) != len(v.labels) {
		panic("metrics: " + strconv.Itoa(len(values)) + " label values for labels " + strconv.Quote(joinLabels(v.labels)))
	}
	var buf [128]byte
	key := buf[:0]
	for _, s := range values { // each value with its length: no two lists share a key
		key = append(binary.AppendUvarint(key, uint64(len(s))), s...)
	}
	v.mu.RLock()
	c := v.children[string(key)] // no allocation for the lookup
	v.mu.RUnlock()
	if c != nil {
		return &c.m
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c = v.children[string(key)]; c == nil {
		c = &child[T]{values: append([]string(nil), values...)}
		v.children[string(key)] = c
	}
	return &c.m
}

func joinLabels(labels []string) string {
	s := ""
	for i, l := range labels {
		if i > 0 {
			s += ","
		}
		s += l
	}
	return s
}

// CounterVec is a counter per combination of label values.
type CounterVec struct{ vec[Counter] }

// WithLabelValues returns the counter for the label values, in the order
// of the family's labels.
func (v *CounterVec) WithLabelValues(values ...string) *Counter { return v.get(values) }

// GaugeVec is a gauge per combination of label values.
type GaugeVec struct{ vec[Gauge] }

// WithLabelValues returns the gauge for the label values, in the order of
// the family's labels.
func (v *GaugeVec) WithLabelValues(values ...string) *Gauge { return v.get(values) }
