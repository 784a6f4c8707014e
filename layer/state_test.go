package layer

import (
	"errors"
	"strings"
	"testing"

	"github.com/ouronet/ouro/flow"
)

func TestLifecycle(t *testing.T) {
	var l Lifecycle
	if got := l.Load(); got != StateInit || got.String() != "init" {
		t.Fatalf("zero Lifecycle is %v, want init", got)
	}
	if !l.CompareAndSwap(StateInit, StateOperational) || l.CompareAndSwap(StateInit, StateOperational) {
		t.Fatal("start: want exactly one CompareAndSwap from init to succeed")
	}
	if old := l.Swap(StateShutdown); old != StateOperational || l.Load().String() != "shutdown" {
		t.Fatalf("stop: old %v, now %v; want operational, shutdown", old, l.Load())
	}
	if got := State(7).String(); got != "unknown" {
		t.Errorf("State(7) = %q, want unknown", got)
	}
}

func TestReady(t *testing.T) {
	var l Lifecycle
	if err := l.Ready("udp", "alloc", "x"); !errors.Is(err, flow.ErrInvalid) || !strings.Contains(err.Error(), `udp: alloc "x": not started`) {
		t.Fatalf("init: %v", err)
	}
	l.Store(StateOperational)
	if err := l.Ready("udp", "alloc", "x"); err != nil {
		t.Fatalf("operational: %v", err)
	}
	l.Store(StateShutdown)
	if err := l.Ready("udp", "alloc", "x"); !errors.Is(err, flow.ErrClosed) || !strings.Contains(err.Error(), `udp: alloc "x": stopped`) {
		t.Fatalf("shutdown: %v", err)
	}
}
