//go:build !linux && !darwin && !windows

package metrics

// addProcessOS adds nothing: on this system only the start time is
// exported.
func addProcessOS(*Registry) {}
