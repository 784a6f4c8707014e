package layer

import (
	"fmt"
	"sync/atomic"

	"github.com/ouronet/ouro/flow"
)

// State is an IPC process's life-cycle state, as ipcp.Info reports it. The
// zero value is StateInit.
type State int32

// The life-cycle states every IPCP goes through, in order.
const (
	StateInit        State = iota // made, not started
	StateOperational              // started: it moves SDUs
	StateShutdown                 // stopped, for good
)

var stateNames = [...]string{"init", "operational", "shutdown"}

// String returns "init", "operational" or "shutdown".
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Lifecycle holds an IPCP's State for concurrent use. Its zero value is
// StateInit.
type Lifecycle struct{ v atomic.Int32 }

// Load returns the state.
func (l *Lifecycle) Load() State { return State(l.v.Load()) }

// Store sets the state.
func (l *Lifecycle) Store(s State) { l.v.Store(int32(s)) }

// Swap sets the state and returns the previous one.
func (l *Lifecycle) Swap(s State) State { return State(l.v.Swap(int32(s))) }

// CompareAndSwap sets the state to next if it is old.
func (l *Lifecycle) CompareAndSwap(old, next State) bool {
	return l.v.CompareAndSwap(int32(old), int32(next))
}

// Ready returns nil if the IPCP is operational; else the error op on
// name fails with, prefixed by kind ("udp: alloc \"x\": stopped"): not
// started (flow.ErrInvalid) or stopped (flow.ErrClosed).
func (l *Lifecycle) Ready(kind, op, name string) error {
	switch l.Load() {
	case StateInit:
		return fmt.Errorf("%s: %s %q: not started: %w", kind, op, name, flow.ErrInvalid)
	case StateShutdown:
		return fmt.Errorf("%s: %s %q: stopped: %w", kind, op, name, flow.ErrClosed)
	}
	return nil
}
