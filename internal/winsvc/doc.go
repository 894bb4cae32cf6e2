// Package winsvc runs a program as a Windows service and manages its
// registration: install (automatic start, restart on failure, an event log
// source), uninstall, start and stop through the Service Control Manager,
// and Run, which answers the SCM while the program runs and turns Stop and
// Shutdown into a cancelled context so the program can drain.
//
// Everything that talks to Windows is in files built only for Windows;
// EventHandler, which copies a program's error log lines to the event log,
// is portable so that it is tested everywhere.
package winsvc
