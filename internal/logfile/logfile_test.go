package logfile

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, cfg Config) *File {
	t.Helper()
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// files lists the log files in dir, sorted by name.
func files(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range ents {
		fi, _ := e.Info()
		out[e.Name()] = fi.Size()
	}
	return out
}

func TestRotatesAtSizeAndKeepsMaxFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "ferry.log") // the directory is created
	f := open(t, Config{Path: path, MaxSize: 100, MaxFiles: 3})
	line := strings.Repeat("x", 39) + "\n" // 40 bytes: two fit in 100, a third rotates
	for i := range 2 {
		if n, err := f.Write([]byte(line)); n != 40 || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if got := files(t, filepath.Dir(path)); len(got) != 1 || got["ferry.log"] != 80 {
		t.Fatalf("before the limit: %v", got)
	}
	f.Write([]byte(line))
	if got := files(t, filepath.Dir(path)); len(got) != 2 || got["ferry.log"] != 40 || got["ferry.log.1"] != 80 {
		t.Fatalf("after the first rotation: %v", got)
	}
	for range 20 {
		f.Write([]byte(line))
	}
	got := files(t, filepath.Dir(path))
	if len(got) != 3 {
		t.Fatalf("kept %d files, want max_files = 3: %v", len(got), got)
	}
	for name, size := range got {
		if size > 100 {
			t.Errorf("%s has %d bytes, over the limit", name, size)
		}
	}
	if _, ok := got["ferry.log.3"]; ok {
		t.Error("ferry.log.3 exists beyond max_files")
	}
}

func TestOneWriteBiggerThanMaxSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "big.log")
	f := open(t, Config{Path: path, MaxSize: 10, MaxFiles: 2})
	big := strings.Repeat("y", 25) + "\n"
	f.Write([]byte(big))
	f.Write([]byte(big))
	got := files(t, dir)
	if got["big.log"] != 26 || got["big.log.1"] != 26 {
		t.Fatalf("a write is never split: %v", got)
	}
}

func TestMaxFilesOneTruncates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "one.log")
	f := open(t, Config{Path: path, MaxSize: 50, MaxFiles: 1})
	for range 10 {
		f.Write([]byte("0123456789abcdefghi\n"))
	}
	got := files(t, dir)
	if len(got) != 1 || got["one.log"] > 50 {
		t.Fatalf("got %v", got)
	}
}

func TestAppendsAcrossRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "a.log")
	f := open(t, Config{Path: path, MaxSize: 1 << 20, MaxFiles: 2})
	f.Write([]byte("first\n"))
	f.Close()
	if _, err := f.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	g := open(t, Config{Path: path, MaxSize: 1 << 20, MaxFiles: 2})
	g.Write([]byte("second\n"))
	b, _ := os.ReadFile(path)
	if string(b) != "first\nsecond\n" {
		t.Fatalf("file holds %q", b)
	}
}

// TestConcurrentWritersDoNotInterleave: many goroutines logging through
// one slog handler over a small, often rotating file; every line must come
// out whole, exactly once across the kept files, none lost while
// max_files is large enough to keep them all.
func TestConcurrentWritersDoNotInterleave(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	f := open(t, Config{Path: path, MaxSize: 4 << 10, MaxFiles: 1000})
	const writers, each = 16, 200
	// Writers straight on the File, and through slog as the programs do.
	log := slog.New(slog.NewTextHandler(f, nil))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if w%2 == 0 {
					fmt.Fprintf(f, "raw w=%d i=%d pad=%s end\n", w, i, strings.Repeat("p", w*3))
				} else {
					log.Info("connection", "w", w, "i", i, "pad", strings.Repeat("q", w*3))
				}
			}
		}()
	}
	wg.Wait()
	f.Close()
	rawRe := regexp.MustCompile(`^raw w=(\d+) i=(\d+) pad=p* end$`)
	slogRe := regexp.MustCompile(`^time=\S+ level=INFO msg=connection w=(\d+) i=(\d+) pad=q*$`)
	seen := map[string]bool{}
	names := []string{}
	for name := range files(t, dir) {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) < 3 {
		t.Errorf("only %d files: the test did not rotate", len(names))
	}
	for _, name := range names {
		fh, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			l := sc.Text()
			m := rawRe.FindStringSubmatch(l)
			if m == nil {
				m = slogRe.FindStringSubmatch(l)
			}
			if m == nil {
				t.Fatalf("%s: mangled line %q", name, l)
			}
			k := m[1] + "/" + m[2]
			if seen[k] {
				t.Errorf("line %s twice", k)
			}
			seen[k] = true
		}
		fh.Close()
	}
	if len(seen) != writers*each {
		t.Errorf("found %d lines, want %d", len(seen), writers*each)
	}
}

func TestReopensFileMovedAway(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "r.log")
	f := open(t, Config{Path: path, MaxSize: 1 << 20, MaxFiles: 2, CheckInterval: time.Millisecond})
	f.Write([]byte("before\n"))
	// logrotate without copytruncate: the file is renamed under us.
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	f.Write([]byte("after move\n"))
	if b, _ := os.ReadFile(path); string(b) != "after move\n" {
		t.Fatalf("after a move the file holds %q", b)
	}
	// An operator deletes it.
	os.Remove(path)
	time.Sleep(5 * time.Millisecond)
	f.Write([]byte("after delete\n"))
	if b, _ := os.ReadFile(path); string(b) != "after delete\n" {
		t.Fatalf("after a delete the file holds %q", b)
	}
	// Reopen on request.
	os.Rename(path, path+".2")
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("reopened\n"))
	if b, _ := os.ReadFile(path); string(b) != "reopened\n" {
		t.Fatalf("after Reopen the file holds %q", b)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{},
		{Path: filepath.Join(t.TempDir(), "x.log"), MaxSize: 0, MaxFiles: 1},
		{Path: filepath.Join(t.TempDir(), "x.log"), MaxSize: 1, MaxFiles: 0},
		{Path: t.TempDir(), MaxSize: 1, MaxFiles: 1}, // a directory
	} {
		if f, err := Open(cfg); err == nil {
			f.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("stderr closed") }

func TestTeeWritesToAllDespiteErrors(t *testing.T) {
	t.Parallel()
	var a, b strings.Builder
	w := Tee(failWriter{}, &a, &b)
	if n, err := w.Write([]byte("line\n")); n != 5 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if a.String() != "line\n" || b.String() != "line\n" {
		t.Fatalf("got %q and %q", a.String(), b.String())
	}
	if _, err := Tee(failWriter{}).Write([]byte("x")); err == nil {
		t.Fatal("all writers failing must be an error")
	}
}
