package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrAlreadyRunning is returned when another agent holds the lock file.
var ErrAlreadyRunning = errors.New("another ferry-agent is already running")

// Lock is the single-instance lock: an exclusive OS lock on a file that
// names its holder. Release removes nothing a running agent relies on.
type Lock struct {
	f    *os.File
	path string
}

// AcquireLock takes the lock at path or fails at once with an error wrapping
// ErrAlreadyRunning that names the running agent. holder is written into the
// file for the next one to read.
func AcquireLock(path, holder string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w (set [agent] lock_file to a writable path)", path, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			owner, _ := os.ReadFile(path)
			who := strings.TrimSpace(string(owner))
			if who == "" {
				who = "unknown process"
			}
			return nil, fmt.Errorf("%w (%s; lock file %s): stop it first, or give this one another [agent] lock_file", ErrAlreadyRunning, who, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d, %s, since %s\n", os.Getpid(), holder, time.Now().UTC().Format(time.RFC3339))
	f.Sync()
	return &Lock{f: f, path: path}, nil
}

// Release frees the lock.
func (l *Lock) Release() error {
	l.f.Truncate(0)
	return l.f.Close()
}
