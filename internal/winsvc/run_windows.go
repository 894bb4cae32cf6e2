//go:build windows

package winsvc

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sys/windows/svc"
)

// Program is what Run runs as the service.
type Program struct {
	// Run runs the program until ctx is cancelled (Stop or Shutdown from
	// the SCM), then drains and returns. It calls ready once it serves; the
	// service shows Running from then on. An error makes the service stop
	// with exit code 1, which the recovery actions treat as a failure.
	Run func(ctx context.Context, ready func()) error
	// Reload, if set, is called on a parameter-change request
	// (`sc control NAME paramchange`), the Windows counterpart of SIGHUP.
	Reload func()
}

// StopWaitHint is the wait hint reported with every StopPending checkpoint;
// Run reports a new checkpoint more often than this, so the SCM keeps
// waiting for as long as the drain lasts.
const StopWaitHint = 10 * time.Second

// IsService reports whether the process was started by the SCM.
func IsService() (bool, error) { return svc.IsWindowsService() }

// Run answers the SCM for the service name until p.Run returns. Call it
// only when IsService is true.
func Run(name string, p Program) error {
	return svc.Run(name, &handler{p: p})
}

type handler struct{ p Program }

func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending, WaitHint: uint32(StopWaitHint / time.Millisecond)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- h.p.Run(ctx, func() { once.Do(func() { close(ready) }) })
	}()
	accepts := svc.AcceptStop | svc.AcceptShutdown
	if h.p.Reload != nil {
		accepts |= svc.AcceptParamChange
	}
	for {
		select {
		case <-ready:
			ready = nil
			status <- svc.Status{State: svc.Running, Accepts: accepts}
		case err := <-done:
			return exit(err)
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				cancel()
				return h.stopping(done, req, status)
			case svc.ParamChange:
				if h.p.Reload != nil {
					h.p.Reload()
				}
				status <- c.CurrentStatus
			}
		}
	}
}

// stopping reports StopPending with a rising checkpoint until the program
// has drained and returned.
func (h *handler) stopping(done <-chan error, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	hint := uint32(StopWaitHint / time.Millisecond)
	st := svc.Status{State: svc.StopPending, CheckPoint: 1, WaitHint: hint}
	status <- st
	tick := time.NewTicker(StopWaitHint / 4)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return exit(err)
		case <-tick.C:
			st.CheckPoint++
			status <- st
		case c := <-req:
			if c.Cmd == svc.Interrogate {
				status <- st
			}
		}
	}
}

// exit is Execute's result: a service-specific exit code 1 on error.
func exit(err error) (bool, uint32) {
	if err != nil {
		return true, 1
	}
	return false, 0
}
