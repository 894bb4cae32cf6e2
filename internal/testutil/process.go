package testutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Log is the lines a process wrote, safe for concurrent use. Lines are
// appended as they arrive; waiters are woken on each one.
type Log struct {
	mu     sync.Mutex
	lines  []string
	closed bool          // the writer has finished (process exited)
	change chan struct{} // closed and replaced on each append or close
}

// NewLog returns an empty log.
func NewLog() *Log { return &Log{change: make(chan struct{})} }

// Append adds one line.
func (l *Log) Append(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	close(l.change)
	l.change = make(chan struct{})
	l.mu.Unlock()
}

// close marks the log complete: no more lines will come.
func (l *Log) close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.change)
		l.change = make(chan struct{})
	}
	l.mu.Unlock()
}

// Lines returns a copy of every line so far.
func (l *Log) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// Len is the number of lines so far; pass it to WaitForFrom to wait only for
// lines written after this moment.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// String is the whole log, one line each.
func (l *Log) String() string { return strings.Join(l.Lines(), "\n") }

// Count is how many lines match re.
func (l *Log) Count(re *regexp.Regexp) int {
	n := 0
	for _, s := range l.Lines() {
		if re.MatchString(s) {
			n++
		}
	}
	return n
}

// WaitFor waits up to timeout for a line matching re (one already written
// counts) and returns its submatches. It fails early when the process has
// exited without writing one.
func (l *Log) WaitFor(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	return l.WaitForFrom(0, re, timeout)
}

// WaitForFrom is WaitFor considering only lines from index from on.
func (l *Log) WaitForFrom(from int, re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := from
	for {
		l.mu.Lock()
		lines, closed, change := l.lines[min(next, len(l.lines)):], l.closed, l.change
		next = len(l.lines)
		l.mu.Unlock()
		for _, s := range lines {
			if m := re.FindStringSubmatch(s); m != nil {
				return m, nil
			}
		}
		if closed {
			return nil, fmt.Errorf("no log line matching %q: the process exited", re)
		}
		select {
		case <-change:
		case <-deadline.C:
			return nil, fmt.Errorf("no log line matching %q within %s", re, timeout)
		}
	}
}

// Process is a child process whose stdout and stderr go, line by line, to
// Log.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	Log  *Log

	done         chan struct{} // closed when the process has exited and its output is read
	waitErr      error
	stopOnce     sync.Once
	killed       bool // Kill was called
	termTimedOut bool // Stop had to SIGKILL
}

// Start runs bin with args and env (added to the test's environment) and
// registers a cleanup that stops it (SIGTERM, then SIGKILL after 10 s) and,
// if the test failed, logs everything it wrote.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Process {
	t.Helper()
	p, err := Spawn(name, env, nil, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exitedBefore := p.Exited()
		start := time.Now()
		code := p.Stop()
		if !exitedBefore && !p.killed {
			// Users stop both programs with SIGTERM: it must end them cleanly.
			switch {
			case p.termTimedOut:
				t.Errorf("%s still ran 10s after SIGTERM (killed)", name)
			case code != 0:
				t.Errorf("%s exited with %d after SIGTERM, want 0", name, code)
			default:
				t.Logf("%s exited 0, %s after SIGTERM", name, time.Since(start).Round(time.Millisecond))
			}
		}
		if t.Failed() {
			p.Dump(t)
		}
	})
	return p
}

// Dump logs everything the process wrote.
func (p *Process) Dump(t testing.TB) {
	t.Helper()
	t.Logf("---- %s (pid %d) log ----\n%s\n---- end of %s log ----", p.Name, p.PID(), p.Log.String(), p.Name)
}

// PID is the process id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to exit by itself and returns
// its exit code (-1 if a signal ended it).
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// Stop sends SIGTERM, waits up to 10 s, then SIGKILLs. It returns the exit
// code (-1 when killed by a signal). Safe to call more than once.
func (p *Process) Stop() int {
	p.stopOnce.Do(func() {
		if p.Exited() {
			return
		}
		p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.termTimedOut = true
			p.Cmd.Process.Kill()
			<-p.done
		}
	})
	<-p.done
	return p.Cmd.ProcessState.ExitCode()
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		p.killed = true
		p.Cmd.Process.Kill()
	})
	<-p.done
}

// OpenFDs counts the process's open file descriptors (Linux /proc).
func (p *Process) OpenFDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.PID()))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// Environ is the test's environment without the variables that would
// change what the binaries do behind the test's back (Ferry's own settings,
// proxies), plus env.
func Environ(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "FERRY_") && !strings.HasPrefix(k, "FERRY_TEST_") && k != EnvRequireServices,
			strings.EqualFold(k, "HTTPS_PROXY"), strings.EqualFold(k, "HTTP_PROXY"),
			strings.EqualFold(k, "ALL_PROXY"), strings.EqualFold(k, "NO_PROXY"):
			continue
		}
		out = append(out, kv)
	}
	return append(out, env...)
}

// Result is the outcome of a short command run with Run.
type Result struct {
	Code   int
	Stdout string
	Stderr string
}

// Run runs bin to completion (at most timeout) with env added to the test's
// environment, and returns its exit code and output.
func Run(t testing.TB, timeout time.Duration, env []string, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = Environ(env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s %q: %v", bin, args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("run %s %q: still running after %s\nstdout:\n%s\nstderr:\n%s", bin, args, timeout, out.String(), errb.String())
	}
	return Result{Code: cmd.ProcessState.ExitCode(), Stdout: out.String(), Stderr: errb.String()}
}
