package metrics

import (
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parse reads what reg writes with Prometheus' own text parser, which
// rejects anything a scraper would.
func parse(t *testing.T, reg *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	var b strings.Builder
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("Prometheus' parser rejects the exposition: %v\n%s", err, b.String())
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	ls := map[string]string{}
	for _, l := range m.GetLabel() {
		ls[l.GetName()] = l.GetValue()
	}
	return ls
}

func TestExpositionReadsBackExactly(t *testing.T) {
	reg := &Registry{}
	c := NewCounter(reg, "t_requests_total", "Requests.\nSecond line with a \\ backslash.")
	c.Add(2.5)
	c.Inc()
	c.Add(-7) // ignored: a counter never goes down
	g := NewGauge(reg, "t_open", "Open now.")
	g.Set(10)
	g.Dec()
	g.Add(-0.5)
	cv := NewCounterVec(reg, "t_bytes_total", "Bytes.", "agent", "direction")
	odd := "a \"quoted\" name\\with\nnewline"
	cv.WithLabelValues(odd, "to_agent").Add(1 << 40)
	cv.WithLabelValues("b", "from_agent").Add(3)
	cv.WithLabelValues("b", "from_agent").Add(4)
	NewCounterVec(reg, "t_unused_total", "Never used.", "result") // no child: left out
	NewGaugeVec(reg, "t_build_info", "Build.", "version").WithLabelValues("1.2.3").Set(1)
	h := NewHistogram(reg, "t_duration_seconds", "Durations.", []float64{0.01, 0.1, 1})
	for _, v := range []float64{0.001, 0.01, 0.05, 0.5, 2, 3} {
		h.Observe(v)
	}

	fams := parse(t, reg)
	if _, ok := fams["t_unused_total"]; ok {
		t.Error("a vector with no child is written")
	}
	if f := fams["t_requests_total"]; f.GetType() != dto.MetricType_COUNTER || f.GetMetric()[0].GetCounter().GetValue() != 3.5 ||
		f.GetHelp() != "Requests.\nSecond line with a \\ backslash." {
		t.Errorf("counter: %v", f)
	}
	if f := fams["t_open"]; f.GetType() != dto.MetricType_GAUGE || f.GetMetric()[0].GetGauge().GetValue() != 8.5 {
		t.Errorf("gauge: %v", f)
	}
	got := map[string]float64{}
	for _, m := range fams["t_bytes_total"].GetMetric() {
		ls := labelsOf(m)
		got[ls["agent"]+"|"+ls["direction"]] = m.GetCounter().GetValue()
	}
	if len(got) != 2 || got[odd+"|to_agent"] != 1<<40 || got["b|from_agent"] != 7 {
		t.Errorf("counter vector: %v", got)
	}
	if m := fams["t_build_info"].GetMetric(); len(m) != 1 || labelsOf(m[0])["version"] != "1.2.3" || m[0].GetGauge().GetValue() != 1 {
		t.Errorf("gauge vector: %v", m)
	}
	hist := fams["t_duration_seconds"].GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 6 || math.Abs(hist.GetSampleSum()-5.561) > 1e-9 {
		t.Errorf("histogram count %d sum %v, want 6 and 5.561", hist.GetSampleCount(), hist.GetSampleSum())
	}
	wantCum := []uint64{2, 3, 4} // cumulative: ≤0.01, ≤0.1, ≤1
	for i, b := range hist.GetBucket() {
		if i < len(wantCum) && b.GetCumulativeCount() != wantCum[i] {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), wantCum[i])
		}
	}
}

func TestConcurrentUpdatesAllCounted(t *testing.T) {
	reg := &Registry{}
	c := NewCounter(reg, "t_total", "T.")
	cv := NewCounterVec(reg, "t_by_total", "T.", "k")
	g := NewGauge(reg, "t_gauge", "T.")
	h := NewHistogram(reg, "t_hist", "T.", []float64{1})
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() { // scrapes while the values move
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			default:
				parse(t, reg)
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := string(rune('a' + w%3))
			for range each {
				c.Inc()
				cv.WithLabelValues(key).Add(2)
				g.Inc()
				h.Observe(0.5)
				g.Dec()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-scraped
	fams := parse(t, reg)
	if v := fams["t_total"].GetMetric()[0].GetCounter().GetValue(); v != workers*each {
		t.Errorf("counter %v, want %d", v, workers*each)
	}
	sum := 0.0
	for _, m := range fams["t_by_total"].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	if sum != 2*workers*each {
		t.Errorf("counter vector sums to %v, want %d", sum, 2*workers*each)
	}
	if v := fams["t_gauge"].GetMetric()[0].GetGauge().GetValue(); v != 0 {
		t.Errorf("gauge %v, want 0", v)
	}
	if n := fams["t_hist"].GetMetric()[0].GetHistogram().GetSampleCount(); n != workers*each {
		t.Errorf("histogram count %d, want %d", n, workers*each)
	}
}

func TestRuntimeAndProcessMetrics(t *testing.T) {
	before := time.Now()
	reg := NewRegistry()
	srv := httptest.NewServer(reg)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q, want %q", ct, ContentType)
	}
	fams := parse(t, reg)
	value := func(name string) float64 {
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s missing", name)
			return 0
		}
		m := f.GetMetric()[0]
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		}
		return m.GetUntyped().GetValue()
	}
	if v := value("go_goroutines"); v < 1 {
		t.Errorf("go_goroutines %v", v)
	}
	if v := value("go_memstats_heap_alloc_bytes"); v <= 0 {
		t.Errorf("go_memstats_heap_alloc_bytes %v", v)
	}
	if v := value("go_sched_gomaxprocs_threads"); v != float64(runtime.GOMAXPROCS(0)) {
		t.Errorf("go_sched_gomaxprocs_threads %v, want %d", v, runtime.GOMAXPROCS(0))
	}
	if m := fams["go_info"].GetMetric(); len(m) != 1 || labelsOf(m[0])["version"] != runtime.Version() {
		t.Errorf("go_info %v", m)
	}
	if f := fams["go_gc_duration_seconds"]; f.GetType() != dto.MetricType_SUMMARY || len(f.GetMetric()[0].GetSummary().GetQuantile()) != 5 {
		t.Errorf("go_gc_duration_seconds %v", f)
	}
	if v := value("process_start_time_seconds"); math.Abs(v-float64(before.Unix())) > 5 {
		t.Errorf("process_start_time_seconds %v, want about %d", v, before.Unix())
	}
	if runtime.GOOS == "linux" || runtime.GOOS == "darwin" {
		for _, name := range []string{"process_cpu_seconds_total", "process_open_fds", "process_max_fds", "process_virtual_memory_max_bytes"} {
			if v := value(name); v <= 0 {
				t.Errorf("%s %v, want > 0", name, v)
			}
		}
	}
	if runtime.GOOS == "linux" {
		for _, name := range []string{"process_network_receive_bytes_total", "process_network_transmit_bytes_total"} {
			if v := value(name); v <= 0 { // the request above crossed loopback
				t.Errorf("%s %v, want > 0", name, v)
			}
		}
		for _, name := range []string{"process_resident_memory_bytes", "process_virtual_memory_bytes"} {
			if v := value(name); v <= 0 {
				t.Errorf("%s %v, want > 0", name, v)
			}
		}
		if rss, virt := value("process_resident_memory_bytes"), value("process_virtual_memory_bytes"); rss > virt {
			t.Errorf("resident %v above virtual %v", rss, virt)
		}
	}
}

func TestProgrammingErrorsPanicWithTheName(t *testing.T) {
	for what, f := range map[string]func(){
		"t_twice": func() {
			reg := &Registry{}
			NewGauge(reg, "t_twice", "T.")
			NewCounter(reg, "t_twice", "T.")
		},
		"labels": func() { NewCounterVec(nil, "t_v", "T.", "agent", "result").WithLabelValues("a") },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), what) {
					t.Errorf("%s: panic %v, want one naming %q", what, r, what)
				}
			}()
			f()
		}()
	}
}

// BenchmarkCounterVec is the per-connection path: a counter of a vector
// found by its label values, then added to.
func BenchmarkCounterVec(b *testing.B) {
	cv := NewCounterVec(nil, "t_total", "T.", "agent", "direction")
	cv.WithLabelValues("acme", "to_agent")
	b.ReportAllocs()
	for b.Loop() {
		cv.WithLabelValues("acme", "to_agent").Add(4096)
	}
}

func TestHistogramNaNOnlyInInf(t *testing.T) {
	reg := &Registry{}
	h := NewHistogram(reg, "t_nan_seconds", "T.", []float64{1})
	h.Observe(math.NaN())
	b := parse(t, reg)["t_nan_seconds"].GetMetric()[0].GetHistogram().GetBucket()
	if b[0].GetCumulativeCount() != 0 {
		t.Errorf("bucket le=1 holds %d after a NaN, want 0: NaN is not <= 1", b[0].GetCumulativeCount())
	}
}
