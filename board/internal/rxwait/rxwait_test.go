package rxwait

import (
	"testing"
	"time"
)

// TestWait: a wake-up returns true at once; without one Wait returns
// false after Poll and counts a late find only if frames are pending.
func TestWait(t *testing.T) {
	var w Waiter
	ready := make(chan struct{}, 1)
	ready <- struct{}{}
	if !w.Wait(ready, func() bool { return true }) {
		t.Fatal("woken: Wait returned false")
	}
	start := time.Now()
	if w.Wait(ready, func() bool { return false }) {
		t.Fatal("not woken: Wait returned true")
	}
	if d := time.Since(start); d < Poll {
		t.Fatalf("not woken: Wait returned after %v, before Poll", d)
	}
	if w.Late() != 0 {
		t.Fatalf("nothing pending: %d late finds counted", w.Late())
	}
	if w.Wait(ready, func() bool { return true }) || w.Late() != 1 {
		t.Fatalf("pending after Poll: %d late finds, want 1", w.Late())
	}
	ready <- struct{}{} // the timer, reset, does not fire early after a wake-up
	if !w.Wait(ready, func() bool { return true }) || w.Late() != 1 {
		t.Fatalf("woken again: late %d", w.Late())
	}
}
