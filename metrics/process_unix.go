//go:build linux || darwin

package metrics

import (
	"os"
	"syscall"
	"time"
)

// addProcessOS registers what client_golang's process collector exports
// on Linux and macOS: CPU time, descriptors and limits here, memory and
// network where the system tells them (addProcessMemory).
func addProcessOS(r *Registry) {
	r.addSingle("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
		func() (float64, bool) {
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
				return 0, false
			}
			// Nano is int64 everywhere; Sec*1e6 in Timeval's own int32
			// (linux/386, arm, mips) wraps after 2147 s of CPU time.
			return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), true
		})
	r.addSingle("process_open_fds", "Number of open file descriptors.", "gauge", func() (float64, bool) {
		f, err := os.Open(fdDir)
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
	r.addSingle("process_max_fds", "Maximum number of open file descriptors.", "gauge",
		func() (float64, bool) { return softLimit(syscall.RLIMIT_NOFILE) })
	r.addSingle("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", "gauge",
		func() (float64, bool) { return softLimit(syscall.RLIMIT_AS) })
	addProcessMemory(r)
}

// softLimit is the process's soft limit on resource which.
func softLimit(which int) (float64, bool) {
	var l syscall.Rlimit
	if syscall.Getrlimit(which, &l) != nil {
		return 0, false
	}
	return float64(l.Cur), true
}
