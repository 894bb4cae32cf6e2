package metrics

import "time"

// addProcess registers the process's metrics under the names that
// Prometheus' Go client uses: its start time everywhere, and CPU time,
// memory and descriptors where the system tells them (process_linux.go,
// process_windows.go).
func addProcess(r *Registry, start time.Time) {
	t := float64(start.UnixNano()) / 1e9
	r.add("process_start_time_seconds", func(s *scrape) {
		s.header("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge")
		s.sample("process_start_time_seconds", nil, nil, "", "", t)
	})
	addProcessOS(r)
}

// processGauge registers a gauge of the process whose value is read at
// each scrape; a value that cannot be read leaves the family out of that
// scrape.
func processGauge(r *Registry, name, help, typ string, value func() (float64, bool)) {
	r.add(name, func(s *scrape) {
		if v, ok := value(); ok {
			s.header(name, help, typ)
			s.sample(name, nil, nil, "", "", v)
		}
	})
}
