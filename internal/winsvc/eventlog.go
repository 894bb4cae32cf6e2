package winsvc

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Event ids written to the event log.
const (
	EventStarted uint32 = 1 // the service runs
	EventStopped uint32 = 2 // the service stopped
	EventLogged  uint32 = 3 // a log line at or above the EventHandler's level
)

// EventLog is the part of the Windows event log that the service writes to;
// *eventlog.Log (golang.org/x/sys/windows/svc/eventlog) satisfies it.
type EventLog interface {
	Info(eid uint32, msg string) error
	Warning(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// NewEventHandler returns a slog.Handler that passes every record to next
// and also writes records at or above level to ev (as one line of
// key=value text, warnings as warnings, errors as errors): the event log
// gets what an administrator must see, the log file everything. Safe for
// concurrent use, like every slog.Handler.
func NewEventHandler(next slog.Handler, ev EventLog, level slog.Level) slog.Handler {
	s := &eventSink{ev: ev}
	text := slog.NewTextHandler(s, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{} // the event log has both
			}
			return a
		},
	})
	return &eventHandler{next: next, text: text, sink: s, level: level}
}

type eventHandler struct {
	next  slog.Handler
	text  slog.Handler // formats for the event log, writing into sink
	sink  *eventSink
	level slog.Level
}

// eventSink receives one formatted record per Write from the text handler;
// mu makes the level set before the write belong to that write.
type eventSink struct {
	mu    sync.Mutex
	ev    EventLog
	level slog.Level
}

func (s *eventSink) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	switch {
	case s.level >= slog.LevelError:
		s.ev.Error(EventLogged, msg)
	case s.level >= slog.LevelWarn:
		s.ev.Warning(EventLogged, msg)
	default:
		s.ev.Info(EventLogged, msg)
	}
	return len(p), nil // the event log failing must not stop the log file
}

func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level || h.next.Enabled(ctx, l)
}

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if r.Level >= h.level {
		h.sink.mu.Lock()
		h.sink.level = r.Level
		h.text.Handle(ctx, r)
		h.sink.mu.Unlock()
	}
	return err
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventHandler{next: h.next.WithAttrs(as), text: h.text.WithAttrs(as), sink: h.sink, level: h.level}
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	return &eventHandler{next: h.next.WithGroup(name), text: h.text.WithGroup(name), sink: h.sink, level: h.level}
}
