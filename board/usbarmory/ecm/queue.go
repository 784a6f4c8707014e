package ecm

import (
	"sync/atomic"
	"time"
)

// Queue is a bounded FIFO of frames between a USB endpoint goroutine and
// the frame device's callers, backed by a fixed pool of buffers: Put copies
// into a free buffer or, when none is free, drops the frame and counts it;
// nothing is allocated per frame. A buffer handed out by Get belongs to
// the caller until Release. Safe for concurrent use by any number of
// producers and consumers.
type Queue struct {
	free  chan []byte // buffers not holding a frame, len 0, cap size
	full  chan []byte // frames, oldest first
	size  int
	drops atomic.Uint64
	long  atomic.Uint64
}

// NewQueue returns a queue of n frames of up to size bytes each.
func NewQueue(n, size int) *Queue {
	q := &Queue{free: make(chan []byte, n), full: make(chan []byte, n), size: size}
	mem := make([]byte, n*size)
	for i := 0; i < n; i++ {
		q.free <- mem[i*size : i*size : (i+1)*size]
	}
	return q
}

// Put copies f into the queue without blocking. It returns false, and
// counts the frame, when every buffer is in use (Drops) or f is longer
// than the queue's frame size (TooLong).
func (q *Queue) Put(f []byte) bool {
	if len(f) > q.size {
		q.long.Add(1)
		return false
	}
	select {
	case b := <-q.free:
		q.full <- append(b, f...) // never blocks: full has room for every buffer
		return true
	default:
		q.drops.Add(1)
		return false
	}
}

// Get returns the oldest frame, waiting until there is one, closed is
// closed, or timeout fires (nil channels never fire). ok is false when it
// returns without a frame.
func (q *Queue) Get(closed <-chan struct{}, timeout <-chan time.Time) (f []byte, ok bool) {
	select {
	case f = <-q.full:
		return f, true
	default:
	}
	select {
	case f = <-q.full:
		return f, true
	case <-closed:
		return nil, false
	case <-timeout:
		return nil, false
	}
}

// TryGet returns the oldest frame without waiting.
func (q *Queue) TryGet() (f []byte, ok bool) {
	select {
	case f = <-q.full:
		return f, true
	default:
		return nil, false
	}
}

// Release gives back a buffer returned by Get or TryGet.
func (q *Queue) Release(f []byte) {
	q.free <- f[:0]
}

// Flush drops every frame waiting and returns how many: their buffers
// are free again. Frames handed out by Get or TryGet stay the caller's
// until Release. Safe while producers and consumers run (a frame Put
// during the Flush may be kept or dropped).
func (q *Queue) Flush() int {
	n := 0
	for {
		select {
		case b := <-q.full:
			q.free <- b[:0]
			n++
		default:
			return n
		}
	}
}

// Len is the number of frames waiting.
func (q *Queue) Len() int { return len(q.full) }

// Drops is how many frames Put dropped because the queue was full.
func (q *Queue) Drops() uint64 { return q.drops.Load() }

// TooLong is how many frames Put refused for exceeding the frame size.
func (q *Queue) TooLong() uint64 { return q.long.Load() }
