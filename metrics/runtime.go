package metrics

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// addRuntime registers the Go runtime's metrics under the names that
// Prometheus' Go client uses, so that existing dashboards read them.
func addRuntime(r *Registry) {
	gauge := func(name, help string, value func() float64) {
		r.addSingle(name, help, "gauge", func() (float64, bool) { return value(), true })
	}
	gauge("go_goroutines", "Number of goroutines that currently exist.",
		func() float64 { return float64(runtime.NumGoroutine()) })
	gauge("go_threads", "Number of OS threads created.", func() float64 {
		n, _ := runtime.ThreadCreateProfile(nil)
		return float64(n)
	})
	gauge("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting: OS threads that can run Go code at once.",
		func() float64 { return float64(runtime.GOMAXPROCS(0)) })
	gauge("go_gc_gogc_percent", "Heap size target percentage (GOGC).", func() float64 {
		return readUint64("/gc/gogc:percent")
	})
	gauge("go_gc_gomemlimit_bytes", "Go runtime memory limit (GOMEMLIMIT).", func() float64 {
		return readUint64("/gc/gomemlimit:bytes")
	})
	r.add("go_info", func(s *scrape) {
		s.header("go_info", "Information about the Go environment.", "gauge")
		s.sample("go_info", nil, nil, "version", runtime.Version(), 1)
	})
	r.add("go_gc_duration_seconds", func(s *scrape) {
		st := debug.GCStats{PauseQuantiles: make([]time.Duration, 5)}
		debug.ReadGCStats(&st)
		const name = "go_gc_duration_seconds"
		s.header(name, "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", "summary")
		for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
			s.sample(name, nil, nil, "quantile", q, st.PauseQuantiles[i].Seconds())
		}
		s.sample(name+"_sum", nil, nil, "", "", st.PauseTotal.Seconds())
		s.sample(name+"_count", nil, nil, "", "", float64(st.NumGC))
	})
	for _, m := range memStatsMetrics {
		r.add(m.name, func(s *scrape) {
			s.header(m.name, m.help, m.typ)
			s.sample(m.name, nil, nil, "", "", m.value(s.memStats()))
		})
	}
}

// readUint64 reads one runtime/metrics value that is a uint64.
func readUint64(name string) float64 {
	sample := []rtmetrics.Sample{{Name: name}}
	rtmetrics.Read(sample)
	if sample[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return float64(sample[0].Value.Uint64())
}

var memStatsMetrics = []struct {
	name, help, typ string
	value           func(*runtime.MemStats) float64
}{
	{"go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.Alloc) }},
	{"go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already.", "counter",
		func(m *runtime.MemStats) float64 { return float64(m.TotalAlloc) }},
	{"go_memstats_sys_bytes", "Number of bytes obtained from system.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.Sys) }},
	{"go_memstats_mallocs_total", "Total number of heap objects allocated.", "counter",
		func(m *runtime.MemStats) float64 { return float64(m.Mallocs) }},
	{"go_memstats_frees_total", "Total number of heap objects frees.", "counter",
		func(m *runtime.MemStats) float64 { return float64(m.Frees) }},
	{"go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.HeapAlloc) }},
	{"go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.HeapSys) }},
	{"go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.HeapIdle) }},
	{"go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.HeapInuse) }},
	{"go_memstats_heap_released_bytes", "Number of heap bytes released to OS.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.HeapReleased) }},
	{"go_memstats_heap_objects", "Number of currently allocated objects.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.HeapObjects) }},
	{"go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.StackInuse) }},
	{"go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.StackSys) }},
	{"go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.MSpanInuse) }},
	{"go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.MSpanSys) }},
	{"go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.MCacheInuse) }},
	{"go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.MCacheSys) }},
	{"go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.BuckHashSys) }},
	{"go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.GCSys) }},
	{"go_memstats_other_sys_bytes", "Number of bytes used for other system allocations.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.OtherSys) }},
	{"go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.NextGC) }},
	{"go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", "gauge",
		func(m *runtime.MemStats) float64 { return float64(m.LastGC) / 1e9 }},
}
