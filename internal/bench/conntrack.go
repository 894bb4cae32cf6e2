package bench

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"
)

// conntrackDrops is how many packets the kernel's connection tracking has
// dropped because its table was full, summed over CPUs; ok is false where
// the kernel tracks no connections. Loopback connections are tracked too
// wherever a firewall or Docker loaded conntrack, and a closed one stays in
// the table for two minutes: a rate test that opens more connections than
// the table holds then measures SYN retransmissions, not the path.
func conntrackDrops() (n uint64, ok bool) {
	f, err := os.Open("/proc/net/stat/nf_conntrack")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return parseConntrackDrops(f)
}

// parseConntrackDrops sums the "drop" column of /proc/net/stat/nf_conntrack
// (a header line, then one line of hexadecimal counters per CPU).
func parseConntrackDrops(r io.Reader) (n uint64, ok bool) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return 0, false
	}
	col := -1
	for i, name := range strings.Fields(sc.Text()) {
		if name == "drop" {
			col = i
		}
	}
	if col < 0 {
		return 0, false
	}
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if col >= len(fields) {
			return 0, false
		}
		v, err := strconv.ParseUint(fields[col], 16, 64)
		if err != nil {
			return 0, false
		}
		n += v
	}
	return n, true
}

// conntrackMax is net.netfilter.nf_conntrack_max, or "" when unknown.
func conntrackMax() string {
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_max")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
