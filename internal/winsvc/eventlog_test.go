package winsvc

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

type fakeEvents struct {
	mu     sync.Mutex
	events []string
}

func (f *fakeEvents) add(kind string, eid uint32, msg string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fmt.Sprintf("%s %d %s", kind, eid, msg))
	return nil
}
func (f *fakeEvents) Info(eid uint32, msg string) error    { return f.add("info", eid, msg) }
func (f *fakeEvents) Warning(eid uint32, msg string) error { return f.add("warning", eid, msg) }
func (f *fakeEvents) Error(eid uint32, msg string) error   { return f.add("error", eid, msg) }

func TestEventHandler(t *testing.T) {
	t.Parallel()
	var file bytes.Buffer
	ev := &fakeEvents{}
	log := slog.New(NewEventHandler(slog.NewTextHandler(&file, &slog.HandlerOptions{Level: slog.LevelDebug}), ev, slog.LevelWarn))
	log.Debug("detail")
	log.Info("ferry-agent started", "version", "1.0")
	log.With("tunnel", 1).Warn("tunnel connect failed", "err", "refused")
	log.WithGroup("g").Error("token rejected", "status", 401)

	want := []string{
		`warning 3 msg="tunnel connect failed" tunnel=1 err=refused`,
		`error 3 msg="token rejected" g.status=401`,
	}
	if strings.Join(ev.events, "\n") != strings.Join(want, "\n") {
		t.Errorf("event log:\n%s\nwant:\n%s", strings.Join(ev.events, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range []string{"detail", "ferry-agent started", "tunnel connect failed", "token rejected"} {
		if !strings.Contains(file.String(), s) {
			t.Errorf("log file lacks %q:\n%s", s, file.String())
		}
	}
}

func TestEventHandlerLevels(t *testing.T) {
	t.Parallel()
	ev := &fakeEvents{}
	var file bytes.Buffer
	// The file logs errors only, the event log warnings too: each gets
	// what its own level admits.
	log := slog.New(NewEventHandler(slog.NewTextHandler(&file, &slog.HandlerOptions{Level: slog.LevelError}), ev, slog.LevelWarn))
	log.Warn("w")
	if strings.Contains(file.String(), "w") || len(ev.events) != 1 {
		t.Errorf("file %q, events %q", file.String(), ev.events)
	}
}

func TestEventHandlerConcurrent(t *testing.T) {
	t.Parallel()
	ev := &fakeEvents{}
	log := slog.New(NewEventHandler(slog.DiscardHandler, ev, slog.LevelWarn))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if i%2 == 0 {
					log.Error("e")
				} else {
					log.Warn("w")
				}
			}
		})
	}
	wg.Wait()
	for _, e := range ev.events {
		if e != `error 3 msg=e` && e != `warning 3 msg=w` {
			t.Fatalf("mixed-up event %q", e)
		}
	}
	if len(ev.events) != 400 {
		t.Errorf("%d events, want 400", len(ev.events))
	}
}
