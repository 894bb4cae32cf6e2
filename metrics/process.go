package metrics

import "time"

// addProcess registers the process's metrics under the names that
// Prometheus' Go client uses: its start time everywhere, and CPU time,
// memory and descriptors where the system tells them (process_unix.go,
// process_linux.go, process_darwin.go, process_windows.go).
func addProcess(r *Registry, start time.Time) {
	t := float64(start.UnixNano()) / 1e9
	r.addSingle("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge",
		func() (float64, bool) { return t, true })
	addProcessOS(r)
}
