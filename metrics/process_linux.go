package metrics

import (
	"bytes"
	"os"
	"syscall"
)

func addProcessOS(r *Registry) {
	processGauge(r, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
		func() (float64, bool) {
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
				return 0, false
			}
			us := ru.Utime.Sec*1e6 + ru.Utime.Usec + ru.Stime.Sec*1e6 + ru.Stime.Usec
			return float64(us) / 1e6, true
		})
	processGauge(r, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
		func() (float64, bool) { return statm(1) })
	processGauge(r, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
		func() (float64, bool) { return statm(0) })
	processGauge(r, "process_open_fds", "Number of open file descriptors.", "gauge", func() (float64, bool) {
		f, err := os.Open("/proc/self/fd")
		if err != nil {
			return 0, false
		}
		defer f.Close()
		names, err := f.Readdirnames(-1)
		if err != nil {
			return 0, false
		}
		return float64(len(names) - 1), true // less the descriptor reading the directory
	})
	processGauge(r, "process_max_fds", "Maximum number of open file descriptors.", "gauge", func() (float64, bool) {
		var l syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
			return 0, false
		}
		return float64(l.Cur), true
	})
}

// statm reads field i of /proc/self/statm (0: total program size, 1:
// resident set, both in pages) as bytes.
func statm(i int) (float64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	fields := bytes.Fields(b)
	if len(fields) <= i {
		return 0, false
	}
	var pages uint64
	for _, c := range fields[i] {
		if c < '0' || c > '9' {
			return 0, false
		}
		pages = pages*10 + uint64(c-'0')
	}
	return float64(pages) * float64(os.Getpagesize()), true
}
