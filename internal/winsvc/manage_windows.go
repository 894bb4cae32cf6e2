//go:build windows

package winsvc

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// Spec describes a service to install.
type Spec struct {
	Name        string   // service name, as in `sc query NAME`
	DisplayName string   // shown in services.msc
	Description string   // shown in services.msc
	Exe         string   // absolute path of the executable
	Args        []string // arguments the SCM starts it with
}

// ErrExists is returned by Install when the service is already installed.
var ErrExists = errors.New("service already installed")

// ErrNotInstalled is returned when the named service does not exist.
var ErrNotInstalled = errors.New("service not installed")

// Install registers the service: automatic start (delayed, after the
// network is up), restart after 5 s, 30 s and 60 s when it fails or exits
// with an error (the failure count resets after a day), and an event log
// source of the same name.
func Install(s Spec) error {
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	if old, err := m.OpenService(s.Name); err == nil {
		old.Close()
		return fmt.Errorf("%s: %w (uninstall it first)", s.Name, ErrExists)
	}
	h, err := m.CreateService(s.Name, s.Exe, mgr.Config{
		DisplayName:      s.DisplayName,
		Description:      s.Description,
		StartType:        mgr.StartAutomatic,
		DelayedAutoStart: true,
		ErrorControl:     mgr.ErrorNormal,
	}, s.Args...)
	if err != nil {
		return fmt.Errorf("create service %s: %w", s.Name, err)
	}
	defer h.Close()
	restart := []mgr.RecoveryAction{
		{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 60 * time.Second},
	}
	if err := h.SetRecoveryActions(restart, uint32((24 * time.Hour).Seconds())); err != nil {
		h.Delete()
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := h.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		h.Delete()
		return fmt.Errorf("set recovery actions: %w", err)
	}
	eventlog.Remove(s.Name) // a source left over from an earlier install
	if err := eventlog.InstallAsEventCreate(s.Name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		h.Delete()
		return fmt.Errorf("register event log source: %w", err)
	}
	return nil
}

// Uninstall stops the service if it runs (waiting up to stopTimeout for
// the drain), deletes it and its event log source.
func Uninstall(name string, stopTimeout time.Duration) error {
	return withService(name, func(s *mgr.Service) error {
		if err := stop(s, stopTimeout); err != nil {
			return err
		}
		if err := s.Delete(); err != nil {
			return fmt.Errorf("delete service %s: %w", name, err)
		}
		eventlog.Remove(name)
		return nil
	})
}

// Start starts the service and waits up to timeout for it to run.
func Start(name string, timeout time.Duration) error {
	return withService(name, func(s *mgr.Service) error {
		if err := s.Start(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		return wait(s, svc.Running, timeout)
	})
}

// Stop asks the service to stop and waits up to timeout for its drain.
func Stop(name string, timeout time.Duration) error {
	return withService(name, func(s *mgr.Service) error { return stop(s, timeout) })
}

// connect opens the service manager; the caller disconnects.
func connect() (*mgr.Mgr, error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, fmt.Errorf("connect to the service manager (run as Administrator): %w", err)
	}
	return m, nil
}

// withService runs f on the installed service called name, then closes
// the service handle and disconnects from the service manager.
func withService(name string, f func(s *mgr.Service) error) error {
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, ErrNotInstalled)
	}
	defer s.Close()
	return f(s)
}

func stop(s *mgr.Service, timeout time.Duration) error {
	st, err := s.Query()
	if err != nil {
		return fmt.Errorf("query %s: %w", s.Name, err)
	}
	if st.State == svc.Stopped {
		return nil
	}
	if st.State != svc.StopPending {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("stop %s: %w", s.Name, err)
		}
	}
	return wait(s, svc.Stopped, timeout)
}

func wait(s *mgr.Service, want svc.State, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.Query()
		if err != nil {
			return fmt.Errorf("query %s: %w", s.Name, err)
		}
		if st.State == want {
			return nil
		}
		if want == svc.Running && st.State == svc.Stopped {
			return fmt.Errorf("%s stopped at once (exit code %d, service exit code %d): see its log and the event log",
				s.Name, st.Win32ExitCode, st.ServiceSpecificExitCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still %s after %s", s.Name, stateName(st.State), timeout)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "starting"
	case svc.StopPending:
		return "stopping"
	case svc.Running:
		return "running"
	}
	return fmt.Sprintf("in state %d", s)
}

// OpenEventLog opens the service's event log source for writing.
func OpenEventLog(name string) (*eventlog.Log, error) { return eventlog.Open(name) }

// SecureDir creates dir if needed and gives it a protected ACL: full
// control for SYSTEM (the service account) and Administrators, nothing for
// anyone else, inherited by the files in it. %ProgramData% lets every user
// read by default, and the folder holds the agent token.
func SecureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sd, err := windows.SecurityDescriptorFromString("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)")
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}
