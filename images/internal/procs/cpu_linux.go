//go:build linux

package procs

import (
	"syscall"
	"time"
)

const haveCPU = true

// processCPU is the CPU time the process spent so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
