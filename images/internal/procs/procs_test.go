package procs

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestStep: busy at one processor goes to Max at once; at Max it takes
// Calm quiet intervals in a row to come back to one, and one busy
// interval among them starts the count again.
func TestStep(t *testing.T) {
	a := &Adaptive{Max: 4, Up: 0.7, Down: 0.35, Calm: 3, procs: 1}
	steps := []struct {
		share float64
		want  int
	}{
		{0.1, 1}, {0.69, 1}, // quiet, then not quite busy
		{0.7, 4},           // busy: all at once
		{0.5, 4}, {0.2, 4}, // between Down and Up: stays; one quiet
		{0.36, 4},                    // not quiet: the count starts again
		{0.1, 4}, {0.1, 4}, {0.1, 1}, // three quiet in a row
		{0.9, 4},
	}
	for i, s := range steps {
		got := a.step(s.share)
		a.procs = got
		if got != s.want {
			t.Fatalf("step %d (share %.2f): %d processors, want %d", i, s.share, got, s.want)
		}
	}
}

// TestRun: Run starts at one processor, follows the process's CPU time
// (here a fake clock of it) up to Max and back, and leaves Max when it
// ends.
func TestRun(t *testing.T) {
	var mu sync.Mutex
	var cpu time.Duration
	var set []int
	a := &Adaptive{Max: 2, Interval: 5 * time.Millisecond, Up: 0.7, Down: 0.35, Calm: 2,
		Set: func(n int) { mu.Lock(); set = append(set, n); mu.Unlock() },
		CPU: func() time.Duration { mu.Lock(); defer mu.Unlock(); return cpu }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	last := func() int {
		mu.Lock()
		defer mu.Unlock()
		if len(set) == 0 {
			return 0
		}
		return set[len(set)-1]
	}
	waitFor := func(n int, busy bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); last() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("processors %d, want %d", last(), n)
			}
			if busy { // a whole core's worth for each millisecond
				mu.Lock()
				cpu += 2 * time.Millisecond
				mu.Unlock()
			}
		}
	}
	waitFor(1, false)
	waitFor(2, true)
	waitFor(1, false)
	cancel()
	<-done
	if last() != 2 {
		t.Fatalf("after Run: %d processors, want Max", last())
	}
}

// TestRunOneProcessor: with Max at one, Run sets nothing and returns
// once its context ends.
func TestRunOneProcessor(t *testing.T) {
	a := New(1, nil)
	a.Set = func(n int) { t.Errorf("set %d", n) }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	a.Run(ctx)
}
