package testutil

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spawn runs bin with args and env (added to the test's environment, see
// Environ) like Start, but without a testing.TB: programs such as
// ferry-soak use it, and the caller stops the process (Stop, Terminate or
// Kill). Each line the process writes goes to the returned Log and, when tee
// is not nil, to tee as well (a log file). tee is written from one
// goroutine; the caller closes it after the process is gone.
func Spawn(name string, env []string, tee io.Writer, bin string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = Environ(env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Process{Name: name, Cmd: cmd, Log: NewLog(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	pw.Close() // the child holds its own copy
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.Log.Append(sc.Text())
			if tee != nil {
				fmt.Fprintln(tee, sc.Text())
			}
		}
		io.Copy(io.Discard, pr) // a line over 4 MiB: drain so the child never blocks
		pr.Close()
	}()
	go func() {
		err := cmd.Wait()
		<-read
		p.waitErr = err
		p.Log.close()
		close(p.done)
	}()
	return p, nil
}

// Terminate sends SIGTERM and waits up to timeout for the process to exit
// by itself. It returns the exit code (-1 when a signal ended it) or an
// error when the process still runs after timeout (it is left running:
// the caller decides whether to Kill it). Unlike Stop it can be called on a
// process that Stop will later clean up.
func (p *Process) Terminate(timeout time.Duration) (int, error) {
	if !p.Exited() {
		p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	return p.Wait(timeout)
}

// ProcStatus is what /proc/PID/status and /proc/PID/fd say about a process.
type ProcStatus struct {
	RSS     int64 // VmRSS, bytes
	PeakRSS int64 // VmHWM, bytes: the highest RSS since the process started
	Threads int
	FDs     int
}

// ReadProcStatus samples process pid (Linux /proc).
func ReadProcStatus(pid int) (ProcStatus, error) {
	var s ProcStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSS = n << 10
		case "VmHWM":
			s.PeakRSS = n << 10
		case "Threads":
			s.Threads = int(n)
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(ents)
	return s, nil
}
