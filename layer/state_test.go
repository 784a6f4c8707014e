package layer

import "testing"

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
