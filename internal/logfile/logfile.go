package logfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Config says where to write and when to rotate.
type Config struct {
	// Path is the log file; its directory is created if missing.
	Path string
	// MaxSize is the size in bytes at which the file is rotated; a single
	// write is never split, so a file can exceed MaxSize by one write.
	// Required, at least 1.
	MaxSize int64
	// MaxFiles is how many files are kept, Path included; 1 means Path is
	// emptied instead of rotated. Required, at least 1.
	MaxFiles int
	// CheckInterval is how often Write checks that Path is still the open
	// file; default 1s.
	CheckInterval time.Duration
}

// File is a rotating log file. Write is safe for concurrent use and writes
// each call's bytes whole and in one piece, so whole log lines from
// concurrent writers never interleave. Close it when done.
type File struct {
	cfg Config

	mu        sync.Mutex
	f         *os.File // nil after Close, or when (re)opening failed
	size      int64
	lastCheck time.Time
	closed    bool
}

// Open opens (appending) or creates the log file.
func Open(cfg Config) (*File, error) {
	if cfg.Path == "" {
		return nil, errors.New("log file: no path")
	}
	if cfg.MaxSize < 1 || cfg.MaxFiles < 1 {
		return nil, fmt.Errorf("log file %s: max size %d and max files %d must be at least 1", cfg.Path, cfg.MaxSize, cfg.MaxFiles)
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Second
	}
	l := &File{cfg: cfg}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	l.f, l.size, l.lastCheck = f, fi.Size(), time.Now()
	return nil
}

// Write appends p, rotating first when p would take the file past MaxSize.
// A rotation that fails leaves the log in the current file rather than
// losing it.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	if time.Since(l.lastCheck) >= l.cfg.CheckInterval {
		l.lastCheck = time.Now()
		if l.f == nil || l.movedAway() {
			l.reopen()
		}
	}
	if l.f != nil && l.size > 0 && l.size+int64(len(p)) > l.cfg.MaxSize {
		l.rotate()
	}
	if l.f == nil {
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// movedAway reports whether Path no longer names the open file.
func (l *File) movedAway() bool {
	cur, err := l.f.Stat()
	if err != nil {
		return true
	}
	fi, err := os.Stat(l.cfg.Path)
	return err != nil || !os.SameFile(cur, fi)
}

func (l *File) reopen() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	l.open() // on failure Write tries again, and reports the error
}

// rotate shifts FILE.n to FILE.n+1 (dropping the oldest) and FILE to
// FILE.1, then opens a new FILE.
func (l *File) rotate() {
	l.f.Close()
	l.f = nil
	p := l.cfg.Path
	if l.cfg.MaxFiles == 1 {
		os.Remove(p)
	} else {
		os.Remove(p + "." + strconv.Itoa(l.cfg.MaxFiles-1))
		for i := l.cfg.MaxFiles - 2; i >= 1; i-- {
			os.Rename(p+"."+strconv.Itoa(i), p+"."+strconv.Itoa(i+1))
		}
		os.Rename(p, p+".1")
	}
	l.open()
}

// Reopen closes and reopens Path, for a caller that knows the file was
// moved (after logrotate without copytruncate, on SIGHUP).
func (l *File) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return os.ErrClosed
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	return l.open()
}

// Close closes the file; later writes fail with os.ErrClosed.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Tee returns a writer that writes each call to every one of ws, even when
// an earlier one fails (a service's stderr may be closed while the file
// works). It reports success when at least one writer took all of p.
func Tee(ws ...io.Writer) io.Writer { return tee(ws) }

type tee []io.Writer

func (t tee) Write(p []byte) (int, error) {
	var firstErr error
	ok := false
	for _, w := range t {
		n, err := w.Write(p)
		if err == nil && n == len(p) {
			ok = true
		} else if firstErr == nil {
			firstErr = err
			if firstErr == nil {
				firstErr = io.ErrShortWrite
			}
		}
	}
	if ok {
		return len(p), nil
	}
	return 0, firstErr
}
