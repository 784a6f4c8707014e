// Package layertest holds fakes for testing IPCPs and their parts outside
// a node: Runners that start plain goroutines, or recover and record
// their panics as a kernel would report a fault. It is for tests only.
package layertest

import (
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ouronet/ouro/layer"
)

var (
	_ layer.Runner = Runner{}
	_ layer.Runner = (*Recorder)(nil)
)

// Runner is a layer.Runner that starts plain goroutines: a panic crashes
// the test binary, as it should in a unit test. The zero value is ready.
type Runner struct{}

// Go implements layer.Runner.
func (Runner) Go(f func()) { go f() }

// Fault is a panic a Recorder recovered.
type Fault struct {
	Value any    // what was passed to panic
	Stack string // the panicking goroutine's stack
}

// String returns the panic value.
func (f Fault) String() string { return fmt.Sprint(f.Value) }

// Recorder is a layer.Runner that stands in for a kernel PD's supervision:
// it recovers a panic in a goroutine it started, records it and ends that
// goroutine, so a test can show that a panic happened in a goroutine
// started through the Runner (a plain goroutine would crash the test
// binary). The zero value is ready. Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	faults []Fault
	wake   chan struct{} // closed and renewed at each fault
}

// Go implements layer.Runner.
func (r *Recorder) Go(f func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				r.record(Fault{Value: v, Stack: string(debug.Stack())})
			}
		}()
		f()
	}()
}

func (r *Recorder) record(f Fault) {
	r.mu.Lock()
	r.faults = append(r.faults, f)
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	r.mu.Unlock()
}

// Faults returns the panics recovered so far, in order.
func (r *Recorder) Faults() []Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Fault(nil), r.faults...)
}

// Wait waits up to timeout for a recorded panic whose value's text
// satisfies match (nil: any), and returns it.
func (r *Recorder) Wait(timeout time.Duration, match func(string) bool) (Fault, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		r.mu.Lock()
		for _, f := range r.faults {
			if match == nil || match(f.String()) {
				r.mu.Unlock()
				return f, true
			}
		}
		if r.wake == nil {
			r.wake = make(chan struct{})
		}
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-wake:
		case <-t.C:
			return Fault{}, false
		}
	}
}
