// Package rxwait is the idle wait of the board NIC drivers' single
// reader: it waits for the receive interrupt, or at most Poll, then lets
// the reader look at its ring anyway. A frame found there after Poll came
// in without waking the reader, and is counted (Late): a lost or very late
// interrupt wake-up delays the link by at most Poll instead of stopping it
// (docs/boards.md, "Interrupts and idle").
package rxwait

import (
	"sync/atomic"
	"time"
)

// Poll is how long an idle reader waits for the receive interrupt before
// it looks at the ring anyway.
const Poll = 20 * time.Millisecond

// Waiter is one reader's wait; the zero value is ready. Wait is for the
// reader alone; Late may be read from anywhere.
type Waiter struct {
	timer *time.Timer
	late  atomic.Uint64
}

// Wait waits for a value on ready (true) or for Poll (false: then if
// pending reports frames in the ring, none woke the reader, counted).
func (w *Waiter) Wait(ready <-chan struct{}, pending func() bool) bool {
	if w.timer == nil {
		w.timer = time.NewTimer(Poll)
	} else {
		w.timer.Reset(Poll)
	}
	select {
	case <-ready:
		w.timer.Stop()
		return true
	case <-w.timer.C:
		if pending() {
			w.late.Add(1)
		}
		return false
	}
}

// Late is how many times Wait found frames after Poll without a wake-up.
func (w *Waiter) Late() uint64 { return w.late.Load() }
