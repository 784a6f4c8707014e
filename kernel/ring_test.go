package kernel

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRingOwnershipTransfer(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ra, rb := mustSlot(t, a, "r"), mustSlot(t, b, "r")
	bufs := make([]*Buf, 3)
	n, err := a.AllocBufs(bufs)
	if err != nil || n != 3 {
		t.Fatalf("AllocBufs: got %d, %v, want 3", n, err)
	}
	for i, x := range bufs {
		x.Append([]byte{byte('a' + i)})
		copy(x.Prepend(2), "h:")
	}
	n, err = a.Push(ra, bufs)
	if err != nil || n != 3 {
		t.Fatalf("Push: got %d, %v, want 3", n, err)
	}
	for i, x := range bufs {
		if x != nil {
			t.Fatalf("bufs[%d] after Push: got %p, want nil (ownership moved to the ring)", i, x)
		}
	}
	if u := a.Budget(); u.Bufs != 0 {
		t.Fatalf("producer's budget while in the ring: got %d bufs, want 0 (the charge moved with them)", u.Bufs)
	}
	out := make([]*Buf, 8)
	n, err = b.Pop(rb, out)
	if err != nil || n != 3 {
		t.Fatalf("Pop: got %d, %v, want 3", n, err)
	}
	if u := b.Budget(); u.Bufs != 3 {
		t.Fatalf("consumer's budget after the pop: got %d bufs, want 3", u.Bufs)
	}
	for i, x := range out[:n] {
		x.TrimFront(2)
		if got := string(x.Bytes()); got != string(rune('a'+i)) {
			t.Fatalf("buffer %d: got %q, want %q", i, got, string(rune('a'+i)))
		}
	}
	b.FreeBufs(out[:n])
	if ua, ub := a.Budget(), b.Budget(); ua.Bufs != 0 || ub.Bufs != 0 {
		t.Fatalf("budgets after the consumer freed: got producer %d consumer %d bufs, want 0 and 0", ua.Bufs, ub.Bufs)
	}
	if _, err := b.Pop(rb, out); err != ErrWouldBlock {
		t.Fatalf("Pop of an empty ring: got %v, want ErrWouldBlock", err)
	}
}

func TestRingFullAndWait(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ra, rb := mustSlot(t, a, "r"), mustSlot(t, b, "r")
	bufs := make([]*Buf, 10)
	n, _ := a.AllocBufs(bufs)
	if n != 10 {
		t.Fatalf("AllocBufs: got %d, want 10", n)
	}
	n, err := a.Push(ra, bufs)
	if n != 8 || err != nil {
		t.Fatalf("Push 10 into a ring of 8: got %d, %v, want 8", n, err)
	}
	if _, err := a.Push(ra, bufs[8:]); err != ErrWouldBlock {
		t.Fatalf("Push into a full ring: got %v, want ErrWouldBlock", err)
	}
	pushed := make(chan int, 1)
	go func() {
		n, _ := a.PushWait(context.Background(), ra, bufs[8:])
		pushed <- n
	}()
	time.Sleep(10 * time.Millisecond)
	out := make([]*Buf, 4)
	if n, _ := b.Pop(rb, out); n != 4 {
		t.Fatalf("Pop: got %d, want 4", n)
	}
	b.FreeBufs(out)
	within(t, 5*time.Second, "PushWait", func() {
		if n := <-pushed; n != 2 {
			t.Errorf("PushWait: got %d, want 2", n)
		}
	})
	// Drain, then PopWait blocks until a push.
	for {
		n, err := b.Pop(rb, out)
		b.FreeBufs(out[:n])
		if err != nil {
			break
		}
	}
	popped := make(chan int, 1)
	go func() {
		n, _ := b.PopWait(context.Background(), rb, out)
		b.FreeBufs(out[:n])
		popped <- n
	}()
	time.Sleep(10 * time.Millisecond)
	x, _ := a.AllocBuf()
	one := []*Buf{x}
	if n, err := a.Push(ra, one); n != 1 || err != nil {
		t.Fatalf("Push: got %d, %v", n, err)
	}
	within(t, 5*time.Second, "PopWait", func() {
		if n := <-popped; n != 1 {
			t.Errorf("PopWait: got %d, want 1", n)
		}
	})
}

func TestRingClose(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ra, rb := mustSlot(t, a, "r"), mustSlot(t, b, "r")
	x, _ := a.AllocBuf()
	a.Push(ra, []*Buf{x})
	waiting := make(chan error, 1)
	y, _ := a.AllocBuf()
	wantErr(t, "CloseRing", a.CloseRing(ra), nil)
	_, err := a.Push(ra, []*Buf{y})
	wantErr(t, "Push after close", err, ErrClosed)
	a.FreeBuf(y)
	out := make([]*Buf, 4)
	n, err := b.Pop(rb, out)
	if n != 1 || err != nil {
		t.Fatalf("Pop after close: got %d, %v, want the 1 left", n, err)
	}
	b.FreeBufs(out[:n])
	go func() { _, err := b.PopWait(context.Background(), rb, out); waiting <- err }()
	within(t, 5*time.Second, "PopWait on a drained closed ring", func() { wantErr(t, "PopWait", <-waiting, ErrClosed) })
}

func TestRingPeerDeath(t *testing.T) {
	sys := &System{
		Rings: []RingSpec{{Name: "r", Size: 4}},
		Components: []ComponentSpec{
			{Name: "prod", Budget: Budget{Bufs: 4}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: Write}}},
			{Name: "cons", Budget: Budget{Bufs: 4}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: Read}}},
		},
	}
	k, pds := harness(t, sys, nil)
	cons := pds["cons"]
	done := make(chan error, 1)
	go func() {
		_, err := cons.PopWait(context.Background(), mustSlot(t, cons, "r"), make([]*Buf, 4))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	wantErr(t, "Kill producer", k.Kill("prod"), nil)
	within(t, 5*time.Second, "PopWait", func() { wantErr(t, "PopWait when the producer died", <-done, ErrAborted) })
}

func TestBudgetExhaustion(t *testing.T) {
	now := time.Unix(0, 0)
	sys := &System{
		Rings: []RingSpec{{Name: "r", Size: 64}},
		Components: []ComponentSpec{
			{Name: "a", Budget: Budget{Bufs: 4, ByteRate: 1000, Burst: 1000, Objects: 1}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: AllRights}}},
			{Name: "b", Budget: Budget{Bufs: 4}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: AllRights}}},
		},
	}
	k := New(Config{Now: func() time.Time { return now }})
	pdc := make(chan *PD, 2)
	prog := func(pd *PD) error { pdc <- pd; <-pd.Context().Done(); return nil }
	if err := k.Boot(sys, map[string]Program{"a": prog, "b": prog}); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	defer k.Stop()
	pds := map[string]*PD{}
	for range 2 {
		pd := <-pdc
		pds[pd.Name()] = pd
	}
	a, b := pds["a"], pds["b"]
	t.Run("buffers", func(t *testing.T) {
		bufs := make([]*Buf, 6)
		n, err := a.AllocBufs(bufs)
		if n != 4 || err != nil {
			t.Fatalf("AllocBufs(6) with a budget of 4: got %d, %v, want 4", n, err)
		}
		_, err = a.AllocBuf()
		wantErr(t, "AllocBuf past the budget", err, ErrNoBudget)
		if x, err := b.AllocBuf(); err != nil {
			t.Fatalf("other component's AllocBuf: %v, want its own budget untouched", err)
		} else {
			b.FreeBuf(x)
		}
		a.FreeBufs(bufs[:n])
		if x, err := a.AllocBuf(); err != nil {
			t.Fatalf("AllocBuf after freeing: %v", err)
		} else {
			a.FreeBuf(x)
		}
	})
	t.Run("byte rate", func(t *testing.T) {
		r := mustSlot(t, a, "r")
		bufs := make([]*Buf, 3)
		a.AllocBufs(bufs)
		for _, x := range bufs {
			x.SetLen(400)
		}
		n, err := a.Push(r, bufs)
		if n != 2 || err != nil {
			t.Fatalf("Push 3x400 bytes with a burst of 1000: got %d, %v, want 2", n, err)
		}
		_, err = a.Push(r, bufs[2:])
		wantErr(t, "Push past the byte rate", err, ErrNoBudget)
		now = now.Add(time.Second)
		if n, err := a.Push(r, bufs[2:]); n != 1 || err != nil {
			t.Fatalf("Push a second later: got %d, %v, want 1", n, err)
		}
		out := make([]*Buf, 4)
		n, _ = a.Pop(r, out)
		a.FreeBufs(out[:n])
	})
	t.Run("objects", func(t *testing.T) {
		_, err := a.NewEndpoint()
		wantErr(t, "first NewEndpoint", err, nil)
		_, err = a.NewNotification()
		wantErr(t, "NewNotification past the budget", err, ErrNoBudget)
		_, err = b.NewRing(4)
		wantErr(t, "NewRing with no object budget", err, ErrNoBudget)
	})
}

func TestBufWindow(t *testing.T) {
	b := NewBuf(0) // held, so kerneldebug checks pass
	b.Reset()
	if b.Len() != 0 || b.HeadSpace() != Headroom || b.TailSpace() != BufSize {
		t.Fatalf("Reset: got len %d head %d tail %d", b.Len(), b.HeadSpace(), b.TailSpace())
	}
	copy(b.Extend(4), "data")
	copy(b.Prepend(3), "hdr")
	if got := string(b.Bytes()); got != "hdrdata" {
		t.Fatalf("Bytes: got %q, want hdrdata", got)
	}
	b.TrimFront(3)
	b.Truncate(2)
	if got := string(b.Bytes()); got != "da" {
		t.Fatalf("after TrimFront and Truncate: got %q, want da", got)
	}
	data, off, end := b.Data()
	if len(data) != Headroom+BufSize || string(data[off:end]) != "da" {
		t.Fatalf("Data: %d bytes, window %q", len(data), data[off:end])
	}
	copy(data[off-1:], "xdat")
	b.SetWindow(off-1, end+1)
	if got := string(b.Bytes()); got != "xdat" {
		t.Fatalf("after SetWindow: got %q, want xdat", got)
	}
	b.SetLen(BufSize)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"SetWindow past the end", func() { b.SetWindow(0, Headroom+BufSize+1) }},
		{"SetWindow reversed", func() { b.SetWindow(10, 9) }},
		{"Extend past the end", func() { b.Extend(1) }},
		{"Prepend past the headroom", func() { b.Prepend(Headroom + 1) }},
		{"SetLen too long", func() { b.SetLen(BufSize + 1) }},
		{"TrimFront too much", func() { b.TrimFront(BufSize + 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("got no panic, want one")
				}
			}()
			tc.f()
		})
	}
}

func TestDoubleFreePanics(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	x, _ := a.AllocBuf()
	a.FreeBuf(x)
	defer func() {
		if r := recover(); r == nil {
			t.Fatalf("second FreeBuf: got no panic, want one")
		}
	}()
	a.FreeBuf(x)
}

var _ = errors.Is

// TestBufSizeConfig: a kernel's buffers hold Config.BufSize bytes after
// the headroom (BufSize when unset or smaller, MaxBufSize at most), and a
// window that long fits.
func TestBufSizeConfig(t *testing.T) {
	for _, c := range []struct{ cfg, want int }{{0, BufSize}, {100, BufSize}, {9216, 9216}, {1 << 20, MaxBufSize}} {
		sys := &System{Components: []ComponentSpec{{Name: "a", Budget: Budget{Bufs: 4}}}}
		got := make(chan *Buf, 1)
		k := bootWith(t, Config{BufSize: c.cfg}, sys, map[string]Program{
			"a": func(pd *PD) error {
				b, err := pd.AllocBuf()
				if err != nil {
					return err
				}
				if pd.BufSize() != c.want {
					t.Errorf("PD.BufSize() = %d, want %d", pd.BufSize(), c.want)
				}
				b.SetLen(c.want)
				if b.Size() != c.want || b.TailSpace() != 0 || b.HeadSpace() != Headroom {
					t.Errorf("Config.BufSize %d: Size %d, tail %d, head %d; want %d, 0, %d", c.cfg, b.Size(), b.TailSpace(), b.HeadSpace(), c.want, Headroom)
				}
				pd.FreeBuf(b)
				got <- b
				<-pd.Context().Done()
				return nil
			},
		})
		<-got
		if k.BufSize() != c.want {
			t.Errorf("Config.BufSize %d: Kernel.BufSize() = %d, want %d", c.cfg, k.BufSize(), c.want)
		}
		k.Stop()
	}
}
