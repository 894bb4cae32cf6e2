package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// ProcSample is what /proc says about a process at one moment.
type ProcSample struct {
	RSS int64         // VmRSS, bytes
	HWM int64         // VmHWM (peak RSS since start), bytes
	CPU time.Duration // utime + stime of all its threads
}

// CountSockets is the number of sockets process pid holds open. (Not all
// descriptors: Go caches splice pipes until a GC, so a relay that spliced
// keeps pipe descriptors after its connections are gone.)
func CountSockets(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n, nil
}

// ReadProc samples process pid.
func ReadProc(pid int) (ProcSample, error) {
	var s ProcSample
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(st)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &s.RSS
		case "VmHWM":
			dst = &s.HWM
		default:
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) >= 1 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			*dst = n << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Field 3 (state) is f[0]; utime (14) and stime (15).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+stime) * clockTick
	return s, nil
}

// Child is a process started by the bench, its output going to a log file.
type Child struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// StartChild runs bin with args; env replaces the environment. The child is
// killed if the bench dies.
func StartChild(name, logPath string, env []string, bin string, args ...string) (*Child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// PID is the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Exited reports whether the child has ended.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Sample reads the child's /proc figures.
func (c *Child) Sample() (ProcSample, error) {
	if c.Exited() {
		return ProcSample{}, fmt.Errorf("%s exited: %v", c.Name, c.err)
	}
	return ReadProc(c.PID())
}

// WaitLog waits up to timeout for a line of the child's log matching re and
// returns its submatches.
func (c *Child) WaitLog(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := c.findLog(re); m != nil {
			return m, nil
		}
		if c.Exited() {
			return nil, fmt.Errorf("%s exited (%v) before logging %q; its log:\n%s", c.Name, c.err, re, c.Tail(20))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s logged no line matching %q within %s; its log:\n%s", c.Name, re, timeout, c.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Child) findLog(re *regexp.Regexp) []string {
	f, err := os.Open(c.LogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			return m
		}
	}
	return nil
}

// Tail is the last n lines of the child's log.
func (c *Child) Tail(n int) string {
	b, _ := os.ReadFile(c.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Stop sends SIGTERM, waits up to grace, then kills. It reports an error if
// the child had died before (a crash during the bench is a failed path).
func (c *Child) Stop(grace time.Duration) error {
	if c.Exited() {
		return fmt.Errorf("%s had exited: %v", c.Name, c.err)
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s still ran %s after SIGTERM (killed)", c.Name, grace)
	}
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		return c.err
	}
	return nil
}

// ChildEnv is the bench's environment without the variables that would
// change what the children do behind the bench's back (Ferry's settings,
// proxies), plus env.
func ChildEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "FERRY_"), strings.EqualFold(k, "HTTPS_PROXY"), strings.EqualFold(k, "HTTP_PROXY"),
			strings.EqualFold(k, "ALL_PROXY"), strings.EqualFold(k, "NO_PROXY"):
			continue
		}
		out = append(out, kv)
	}
	return append(out, env...)
}
