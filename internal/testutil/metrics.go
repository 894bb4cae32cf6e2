package testutil

import (
	"bufio"
	"math"
	"strconv"
	"strings"
)

// Metric returns the value of the sample name{labels} in a Prometheus text
// exposition body: the sum over every series of name whose labels include
// all of labels (nil matches every series). A metric that is absent is 0,
// which is what a counter that never moved reads as.
func Metric(body, name string, labels map[string]string) float64 {
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		n, ls, val, ok := parseSample(line)
		if !ok || n != name {
			continue
		}
		match := true
		for k, v := range labels {
			if ls[k] != v {
				match = false
				break
			}
		}
		if match {
			sum += val
		}
	}
	return sum
}

// parseSample splits `name{a="b",c="d"} value [timestamp]`.
func parseSample(line string) (name string, labels map[string]string, val float64, ok bool) {
	labels = map[string]string{}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return "", nil, 0, false
	}
	name, rest := line[:i], line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if rest == "" {
				return "", nil, 0, false
			}
			if rest[0] == '}' {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq < 0 || eq+1 >= len(rest) || rest[eq+1] != '"' {
				return "", nil, 0, false
			}
			key := strings.TrimSpace(rest[:eq])
			rest = rest[eq+2:]
			var b strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						b.WriteByte('\n')
					default:
						b.WriteByte(rest[j])
					}
					continue
				}
				b.WriteByte(rest[j])
			}
			if j >= len(rest) {
				return "", nil, 0, false
			}
			labels[key] = b.String()
			rest = rest[j+1:]
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	switch fields[0] {
	case "+Inf":
		val = math.Inf(1)
	case "-Inf":
		val = math.Inf(-1)
	default:
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return "", nil, 0, false
		}
		val = v
	}
	return name, labels, val, true
}
