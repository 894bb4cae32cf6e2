package metrics

import (
	"unsafe"

	"golang.org/x/sys/windows"
)

// processMemoryCountersEx is PROCESS_MEMORY_COUNTERS_EX.
type processMemoryCountersEx struct {
	cb                         uint32
	pageFaultCount             uint32
	peakWorkingSetSize         uintptr
	workingSetSize             uintptr
	quotaPeakPagedPoolUsage    uintptr
	quotaPagedPoolUsage        uintptr
	quotaPeakNonPagedPoolUsage uintptr
	quotaNonPagedPoolUsage     uintptr
	pagefileUsage              uintptr
	peakPagefileUsage          uintptr
	privateUsage               uintptr
}

func addProcessOS(r *Registry) {
	memoryInfo := windows.NewLazySystemDLL("psapi.dll").NewProc("GetProcessMemoryInfo")
	handleCount := windows.NewLazySystemDLL("kernel32.dll").NewProc("GetProcessHandleCount")
	r.addSingle("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter",
		func() (float64, bool) {
			var created, exited, kernel, user windows.Filetime
			if windows.GetProcessTimes(windows.CurrentProcess(), &created, &exited, &kernel, &user) != nil {
				return 0, false
			}
			ticks := func(f windows.Filetime) float64 { return float64(uint64(f.HighDateTime)<<32 | uint64(f.LowDateTime)) }
			return (ticks(kernel) + ticks(user)) / 1e7, true // 100 ns ticks
		})
	r.addSingle("process_resident_memory_bytes", "Resident memory size (working set) in bytes.", "gauge",
		func() (float64, bool) {
			m, ok := memoryCounters(memoryInfo)
			return float64(m.workingSetSize), ok
		})
	r.addSingle("process_virtual_memory_bytes", "Virtual memory size (private bytes) in bytes.", "gauge",
		func() (float64, bool) {
			m, ok := memoryCounters(memoryInfo)
			return float64(m.privateUsage), ok
		})
	// client_golang's names: dashboards and alerts on descriptor use read
	// the handles, and the system-wide handle limit, there.
	r.addSingle("process_open_fds", "Number of open file descriptors.", "gauge", func() (float64, bool) {
		var n uint32
		ret, _, _ := handleCount.Call(uintptr(windows.CurrentProcess()), uintptr(unsafe.Pointer(&n)))
		return float64(n), ret != 0
	})
	r.addSingle("process_max_fds", "Maximum number of open file descriptors.", "gauge",
		func() (float64, bool) { return 16 << 20, true }) // a fixed per-process limit on Windows
}

// memoryCounters calls GetProcessMemoryInfo (proc) for this process.
func memoryCounters(proc *windows.LazyProc) (processMemoryCountersEx, bool) {
	m := processMemoryCountersEx{}
	m.cb = uint32(unsafe.Sizeof(m))
	ret, _, _ := proc.Call(uintptr(windows.CurrentProcess()), uintptr(unsafe.Pointer(&m)), uintptr(m.cb))
	return m, ret != 0
}
