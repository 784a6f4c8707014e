package dt

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestBufPool checks the pool's bound: it makes at most limit buffers,
// hands out fewer than asked when that many are held, reuses freed ones,
// and refuses a free of more than exist.
func TestBufPool(t *testing.T) {
	var allocs atomic.Uint64
	p := NewPool(5, nil, &allocs)
	var a [4]*Buf
	if n := p.Get(a[:]); n != 4 {
		t.Fatalf("got %d of 4 with 5 free", n)
	}
	var b [4]*Buf
	if n := p.Get(b[:]); n != 1 {
		t.Fatalf("got %d with 1 left, want 1", n)
	}
	if p.GetOne() != nil {
		t.Fatal("a sixth buffer from a pool of 5")
	}
	p.Put(a[:2])
	if a[0] != nil || a[1] != nil {
		t.Error("put left the caller's references")
	}
	if n := p.Get(b[1:]); n != 2 {
		t.Fatalf("got %d after 2 freed, want 2", n)
	}
	if allocs.Load() != 5 {
		t.Errorf("%d buffers made, want 5", allocs.Load())
	}
	// Waiting: none free until one is put back.
	start := time.Now()
	var c [1]*Buf
	if n := p.WaitGet(c[:], nil, 30*time.Millisecond); n != 0 {
		t.Fatalf("waitGet got %d with none free", n)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("waitGet gave up after %v, want >= 30ms", d)
	}
	go func() { // a plain goroutine: this is a unit test of the pool, not a component
		time.Sleep(5 * time.Millisecond)
		p.Put(b[:1])
	}()
	if n := p.WaitGet(c[:], nil, 5*time.Second); n != 1 {
		t.Fatalf("waitGet got %d after a put, want 1", n)
	}
	p.Put(c[:])
	p.Put(a[2:])
	p.Put(b[1:3])
	defer func() {
		if recover() == nil {
			t.Error("freeing more buffers than exist did not panic")
		}
	}()
	p.Put([]*Buf{new(Buf)})
}

// TestBufPoolCharged checks that the pool makes only the buffers its
// budget lets it reserve (Config.Reserve): a batch it cannot reserve
// whole comes one buffer at a time, then none, whatever limit says.
func TestBufPoolCharged(t *testing.T) {
	var allocs atomic.Uint64
	left := 6 // the budget's free buffers
	reserve := func(n int) error {
		if n > left {
			return errors.New("no budget")
		}
		left -= n
		return nil
	}
	p := NewPool(100, reserve, &allocs)
	var a [4]*Buf
	if n := p.Get(a[:]); n != 4 {
		t.Fatalf("got %d of 4 with 6 in the budget", n)
	}
	var b [4]*Buf
	if n := p.Get(b[:]); n != 1 {
		t.Fatalf("got %d with 2 left in the budget, want 1 (a batch of 4 refused, then one)", n)
	}
	if n := p.Get(b[1:]); n != 1 {
		t.Fatalf("got %d with 1 left in the budget, want 1", n)
	}
	if n := p.Get(b[2:]); n != 0 || left != 0 {
		t.Fatalf("got %d with the budget spent (%d left)", n, left)
	}
	if allocs.Load() != 6 {
		t.Errorf("%d buffers made, want the 6 reserved", allocs.Load())
	}
	p.Put(a[:])
	if n := p.Get(b[2:]); n != 2 {
		t.Errorf("got %d after 4 freed, want 2 (reuse needs no budget)", n)
	}
}
