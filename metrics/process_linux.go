package metrics

import (
	"bytes"
	"os"
	"strconv"
)

// fdDir lists the process's open descriptors.
const fdDir = "/proc/self/fd"

func addProcessMemory(r *Registry) {
	r.addSingle("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
		func() (float64, bool) { return statm(1) })
	r.addSingle("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
		func() (float64, bool) { return statm(0) })
	// As client_golang's: the counters of the process's network namespace
	// (the host's, outside a container), not of this process alone.
	r.addSingle("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", "counter",
		func() (float64, bool) { return ipExt("InOctets") })
	r.addSingle("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", "counter",
		func() (float64, bool) { return ipExt("OutOctets") })
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

// ipExt reads the field of the IpExt lines of /proc/self/net/netstat: a
// line of names, then one of values.
func ipExt(field string) (float64, bool) {
	b, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0, false
	}
	lines := bytes.Split(b, []byte{'\n'})
	for i := 0; i+1 < len(lines); i++ {
		names, values := bytes.Fields(lines[i]), bytes.Fields(lines[i+1])
		if len(names) == 0 || string(names[0]) != "IpExt:" || len(values) != len(names) || string(values[0]) != "IpExt:" {
			continue
		}
		for j, n := range names {
			if string(n) == field {
				v, err := strconv.ParseUint(string(values[j]), 10, 64)
				return float64(v), err == nil
			}
		}
		return 0, false
	}
	return 0, false
}
