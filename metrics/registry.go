package metrics

import (
	"io"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ContentType is the media type of what Registry writes: the Prometheus
// text exposition format, version 0.0.4, which every Prometheus-compatible
// scraper reads.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Registry holds metric families and writes them in the Prometheus text
// format. It is safe for concurrent use. Ferry writes its own exposition
// rather than link client_golang: that library and the protobuf runtime it
// brings cost each process about 2 MiB of resident memory
// (docs/performance.md), for a format this small.
type Registry struct {
	mu      sync.Mutex
	entries []entry // sorted by name
}

type entry struct {
	name  string
	write func(s *scrape)
}

// NewRegistry returns a registry holding the Go runtime's (go_*) and the
// process's (process_*) metrics.
func NewRegistry() *Registry {
	r := &Registry{}
	addRuntime(r)
	addProcess(r, time.Now())
	return r
}

// add registers a family. A name registered twice is a programming error
// and panics.
func (r *Registry) add(name string, write func(*scrape)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, found := slices.BinarySearchFunc(r.entries, name, func(e entry, n string) int { return strings.Compare(e.name, n) })
	if found {
		panic("metrics: " + name + " registered twice")
	}
	r.entries = slices.Insert(r.entries, i, entry{name, write})
}

// Names are the names of the registered families, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, len(r.entries))
	for i, e := range r.entries {
		names[i] = e.name
	}
	return names
}

// WriteTo writes every family in the text format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	entries := slices.Clone(r.entries)
	r.mu.Unlock()
	s := &scrape{buf: make([]byte, 0, 8<<10)}
	for _, e := range entries {
		e.write(s)
	}
	n, err := w.Write(s.buf)
	return int64(n), err
}

// ServeHTTP answers a scrape.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", ContentType)
	r.WriteTo(w) // an error here is the scraper gone; nothing to tell it
}

// scrape is one write of the registry: the text so far, and what several
// families read once per scrape.
type scrape struct {
	buf []byte
	mem *runtime.MemStats
}

// memStats reads the runtime's memory statistics once per scrape.
func (s *scrape) memStats() *runtime.MemStats {
	if s.mem == nil {
		s.mem = new(runtime.MemStats)
		runtime.ReadMemStats(s.mem)
	}
	return s.mem
}

// header writes a family's HELP and TYPE lines.
func (s *scrape) header(name, help, typ string) {
	s.buf = append(s.buf, "# HELP "...)
	s.buf = append(s.buf, name...)
	s.buf = append(s.buf, ' ')
	for i := 0; i < len(help); i++ {
		switch c := help[i]; c {
		case '\\':
			s.buf = append(s.buf, `\\`...)
		case '\n':
			s.buf = append(s.buf, `\n`...)
		default:
			s.buf = append(s.buf, c)
		}
	}
	s.buf = append(s.buf, "\n# TYPE "...)
	s.buf = append(s.buf, name...)
	s.buf = append(s.buf, ' ')
	s.buf = append(s.buf, typ...)
	s.buf = append(s.buf, '\n')
}

// sample writes one line: name, the labels (names and values pairwise,
// then one extra pair when extra is not empty) and the value.
func (s *scrape) sample(name string, labels, values []string, extra, extraValue string, v float64) {
	s.buf = append(s.buf, name...)
	if len(labels) > 0 || extra != "" {
		s.buf = append(s.buf, '{')
		for i, l := range labels {
			if i > 0 {
				s.buf = append(s.buf, ',')
			}
			s.label(l, values[i])
		}
		if extra != "" {
			if len(labels) > 0 {
				s.buf = append(s.buf, ',')
			}
			s.label(extra, extraValue)
		}
		s.buf = append(s.buf, '}')
	}
	s.buf = append(s.buf, ' ')
	s.buf = appendFloat(s.buf, v)
	s.buf = append(s.buf, '\n')
}

func (s *scrape) label(name, value string) {
	s.buf = append(s.buf, name...)
	s.buf = append(s.buf, `="`...)
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\\':
			s.buf = append(s.buf, `\\`...)
		case '"':
			s.buf = append(s.buf, `\"`...)
		case '\n':
			s.buf = append(s.buf, `\n`...)
		default:
			s.buf = append(s.buf, c)
		}
	}
	s.buf = append(s.buf, '"')
}

func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// histogram writes a histogram's buckets, sum and count.
func (s *scrape) histogram(name string, labels, values []string, h *Histogram) {
	cum, sum := h.snapshot()
	bucket := name + "_bucket"
	for i, up := range h.upper {
		s.sample(bucket, labels, values, "le", string(appendFloat(nil, up)), float64(cum[i]))
	}
	total := float64(cum[len(cum)-1])
	s.sample(bucket, labels, values, "le", "+Inf", total)
	s.sample(name+"_sum", labels, values, "", "", sum)
	s.sample(name+"_count", labels, values, "", "", total)
}

// sortedChildren are a vector's children in the order of their label
// values, so that a scrape reads the same way every time.
func sortedChildren[T any](v *vec[T]) []*child[T] {
	v.mu.RLock()
	cs := make([]*child[T], 0, len(v.children))
	for _, c := range v.children {
		cs = append(cs, c)
	}
	v.mu.RUnlock()
	slices.SortFunc(cs, func(a, b *child[T]) int { return slices.Compare(a.values, b.values) })
	return cs
}

// NewCounter registers a counter. reg may be nil: the metric then works
// but is not exported.
func NewCounter(reg *Registry, name, help string) *Counter {
	c := new(Counter)
	reg.addSingle(name, help, "counter", func() (float64, bool) { return c.Value(), true })
	return c
}

// NewGauge registers a gauge; reg may be nil as for NewCounter.
func NewGauge(reg *Registry, name, help string) *Gauge {
	g := new(Gauge)
	reg.addSingle(name, help, "gauge", func() (float64, bool) { return g.Value(), true })
	return g
}

// NewCounterVec registers a counter per combination of values of labels;
// reg may be nil as for NewCounter. A family is written once it has a
// child.
func NewCounterVec(reg *Registry, name, help string, labels ...string) *CounterVec {
	v := &CounterVec{newVec[Counter](labels)}
	addVec(reg, name, help, "counter", &v.vec, (*Counter).Value)
	return v
}

// NewGaugeVec registers a gauge per combination of values of labels; reg
// may be nil as for NewCounter.
func NewGaugeVec(reg *Registry, name, help string, labels ...string) *GaugeVec {
	v := &GaugeVec{newVec[Gauge](labels)}
	addVec(reg, name, help, "gauge", &v.vec, (*Gauge).Value)
	return v
}

// addVec registers a vector's family: nothing until it has a child, then
// one sample per child.
func addVec[T any](reg *Registry, name, help, typ string, v *vec[T], value func(*T) float64) {
	reg.addFamily(name, func(s *scrape) {
		cs := sortedChildren(v)
		if len(cs) == 0 {
			return
		}
		s.header(name, help, typ)
		for _, c := range cs {
			s.sample(name, v.labels, c.values, "", "", value(&c.m))
		}
	})
}

// NewHistogram registers a histogram with the given bucket upper bounds,
// ascending (+Inf is implied); reg may be nil as for NewCounter.
func NewHistogram(reg *Registry, name, help string, buckets []float64) *Histogram {
	h := newHistogram(buckets)
	reg.addFamily(name, func(s *scrape) {
		s.header(name, help, "histogram")
		s.histogram(name, nil, nil, h)
	})
	return h
}

func (r *Registry) addFamily(name string, write func(*scrape)) {
	if r != nil {
		r.add(name, write)
	}
}

// addSingle registers a family of one sample without labels, its value
// read at each scrape; a value that cannot be read (ok false) leaves the
// family out of that scrape. r may be nil, as for addFamily.
func (r *Registry) addSingle(name, help, typ string, value func() (v float64, ok bool)) {
	r.addFamily(name, func(s *scrape) {
		if v, ok := value(); ok {
			s.header(name, help, typ)
			s.sample(name, nil, nil, "", "", v)
		}
	})
}
