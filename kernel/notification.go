package kernel

import (
	"context"
	"fmt"
	"sync/atomic"
)

// notification is a word of bits: Signal ORs a badge in, Wait takes the
// word and clears it. The one-slot channel holds a wake-up token whenever
// bits may be pending, so a waiter never misses a signal.
type notification struct {
	hdr
	word atomic.Uint64
	ch   chan struct{}
	gone atomic.Bool // destroyed: waiters fail with ErrAborted
}

func (*notification) kind() Kind { return KindNotification }

func newNotification(name string) *notification {
	n := &notification{ch: make(chan struct{}, 1)}
	n.nm = name
	n.root = &capNode{obj: n, live: true}
	return n
}

// destroy wakes the waiters (each wakes the next) with ErrAborted.
func (n *notification) destroy() {
	n.gone.Store(true)
	poke(n.ch)
}

func (n *notification) signal(bits uint64) {
	n.word.Or(bits)
	select {
	case n.ch <- struct{}{}:
	default:
	}
}

// Signal ORs the cap's badge (1 if the cap is unbadged) into the
// notification's word and wakes a waiter. It needs Write and never blocks.
func (pd *PD) Signal(n Cap) error {
	s, err := pd.lookup(n, KindNotification, Write, "signal")
	if err != nil {
		return err
	}
	bits := uint64(s.badge)
	if bits == 0 {
		bits = 1
	}
	s.obj.(*notification).signal(bits)
	return nil
}

// Wait blocks until the word is non-zero, then returns it and clears it.
// It needs Read.
func (pd *PD) Wait(n Cap) (uint64, error) { return pd.wait(nil, n) }

// WaitCtx is Wait that gives up when ctx is done.
func (pd *PD) WaitCtx(ctx context.Context, n Cap) (uint64, error) { return pd.wait(ctx, n) }

func (pd *PD) wait(ctx context.Context, c Cap) (uint64, error) {
	s, err := pd.lookup(c, KindNotification, Read, "wait")
	if err != nil {
		return 0, err
	}
	nt := s.obj.(*notification)
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	for {
		if v := nt.word.Swap(0); v != 0 {
			return v, nil
		}
		if nt.gone.Load() {
			poke(nt.ch) // for the next waiter
			return 0, fmt.Errorf("kernel: %s: wait on cap %d: notification %s destroyed (its last cap was deleted): %w", pd.name(), c, nt.nm, ErrAborted)
		}
		select {
		case <-nt.ch:
		case <-pd.done:
			return 0, pd.interruptErr(ctx, "wait", c)
		case <-done:
			return 0, pd.interruptErr(ctx, "wait", c)
		}
	}
}

// Poll returns and clears the word without blocking; ErrWouldBlock
// (unwrapped) if it was zero. It needs Read.
func (pd *PD) Poll(n Cap) (uint64, error) {
	s, err := pd.lookup(n, KindNotification, Read, "poll")
	if err != nil {
		return 0, err
	}
	if v := s.obj.(*notification).word.Swap(0); v != 0 {
		return v, nil
	}
	return 0, ErrWouldBlock
}
