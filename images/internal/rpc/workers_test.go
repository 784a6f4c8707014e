package rpc

import (
	"runtime"
	"testing"
	"time"

	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/kerneltest"
)

// TestWorkersReuse: requests one after another run on the goroutines
// earlier ones ran on (a few at most are started, not one per request);
// a handler that blocks does not hold up the next request, which gets a
// goroutine of its own; and once the server ends, the waiting
// goroutines end too.
func TestWorkersReuse(t *testing.T) {
	pd := kerneltest.PD(t, "srv", kernel.Budget{Bufs: 16, Objects: 64})
	w := &workers{pd: pd, jobs: make(chan func()), done: make(chan struct{})}
	base := runtime.NumGoroutine()
	ran := make(chan struct{})
	for range 200 {
		w.run(func() { ran <- struct{}{} })
		<-ran
	}
	if n := w.spawn.Load(); n > 3 {
		t.Errorf("200 requests one after another started %d goroutines, want at most 3", n)
	}

	block, unblock := make(chan struct{}), make(chan struct{})
	w.run(func() { block <- struct{}{}; <-unblock })
	<-block
	done := make(chan struct{})
	w.run(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a request behind a blocked handler did not run")
	}
	close(unblock)

	// MaxIdle wait at most: a burst of concurrent requests leaves no more.
	hold := make(chan struct{})
	started := make(chan struct{}, 3*MaxIdle)
	for range 3 * MaxIdle {
		w.run(func() { started <- struct{}{}; <-hold })
	}
	for range 3 * MaxIdle {
		<-started
	}
	close(hold)
	deadline := time.Now().Add(5 * time.Second)
	for w.idle.Load() != MaxIdle && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := w.idle.Load(); n != MaxIdle {
		t.Errorf("%d goroutines wait after a burst, want %d", n, MaxIdle)
	}

	close(w.done)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines after the server ended, want at most the %d before it", n, base)
	}
}
