package kernel

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestStaleCapAfterReuse checks that a cap number kept after its slot was
// freed and reused by another cap is refused by every verb instead of
// acting on the new cap's object.
func TestStaleCapAfterReuse(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	old, err := a.NewRing(4)
	wantErr(t, "NewRing", err, nil)
	wantErr(t, "Delete", a.Delete(old), nil)
	cur, err := a.NewRing(4)
	wantErr(t, "NewRing", err, nil)
	if cur.index() != old.index() {
		t.Fatalf("slot reuse: got index %d, want %d (the freed slot)", cur.index(), old.index())
	}
	if cur == old {
		t.Fatalf("reused slot: got the same cap number %d, want a new generation", cur)
	}
	for _, tc := range []struct {
		name string
		op   func(c Cap) error
	}{
		{"push", func(c Cap) error { _, err := a.Push(c, make([]*Buf, 1)); return err }},
		{"pop", func(c Cap) error { _, err := a.Pop(c, make([]*Buf, 1)); return err }},
		{"close", func(c Cap) error { return a.CloseRing(c) }},
		{"ring len", func(c Cap) error { _, err := a.RingLen(c); return err }},
		{"inspect", func(c Cap) error { _, err := a.Inspect(c); return err }},
		{"mint", func(c Cap) error { _, err := a.Mint(c, Read, 0); return err }},
		{"move", func(c Cap) error { _, err := a.Move(c); return err }},
		{"revoke", func(c Cap) error { return a.Revoke(c) }},
		{"delete", func(c Cap) error { return a.Delete(c) }},
		{"send as transferred cap", func(c Cap) error {
			m := Msg{NCaps: 1}
			m.Caps[0] = c
			return a.NBSend(mustSlot(t, a, "ep"), &m)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, tc.name+" on the stale cap", tc.op(old), ErrInvalidCap)
			info, err := a.Inspect(cur)
			if err != nil || info.Closed || info.Kind != KindRing {
				t.Fatalf("the new cap after %s on the stale one: got %+v, %v, want an open ring", tc.name, info, err)
			}
		})
	}
}

// give moves caps from one component to another over their shared
// endpoint "ep" (with Grant) and returns the receiver's slots.
func give(t testing.TB, from, to *PD, caps ...Cap) []Cap {
	t.Helper()
	ch := recvAsync(to, mustSlot(t, to, "ep"))
	m := Msg{NCaps: len(caps)}
	copy(m.Caps[:], caps)
	wantErr(t, "Send with caps", from.Send(mustSlot(t, from, "ep"), &m), nil)
	r := <-ch
	wantErr(t, "Recv with caps", r.err, nil)
	if r.m.NCaps != len(caps) {
		t.Fatalf("caps transferred: got %d, want %d", r.m.NCaps, len(caps))
	}
	return append([]Cap(nil), r.m.Caps[:r.m.NCaps]...)
}

// TestObjectDestroyedWithLastCap checks that a dynamic object lives
// exactly as long as some cap refers to it, whatever the order the caps
// go away in, and that its creator's object budget is credited back.
func TestObjectDestroyedWithLastCap(t *testing.T) {
	kinds := []struct {
		name string
		make func(pd *PD) (Cap, error)
	}{
		{"endpoint", func(pd *PD) (Cap, error) { return pd.NewEndpoint() }},
		{"notification", func(pd *PD) (Cap, error) { return pd.NewNotification() }},
		{"ring", func(pd *PD) (Cap, error) { return pd.NewRing(4) }},
	}
	// Each order lists the steps that remove the caps (an original, a
	// minted cap and a copy moved to b); the object must survive every
	// step but the last.
	orders := []struct {
		name  string
		steps func(t *testing.T, a, b *PD, orig, mint, moved Cap) []func() error
	}{
		{"original first", func(t *testing.T, a, b *PD, orig, mint, moved Cap) []func() error {
			return []func() error{func() error { return a.Delete(orig) }, func() error { return a.Delete(mint) }, func() error { return b.Delete(moved) }}
		}},
		{"moved cap first", func(t *testing.T, a, b *PD, orig, mint, moved Cap) []func() error {
			return []func() error{func() error { return b.Delete(moved) }, func() error { return a.Delete(mint) }, func() error { return a.Delete(orig) }}
		}},
		{"revoke then delete", func(t *testing.T, a, b *PD, orig, mint, moved Cap) []func() error {
			return []func() error{func() error { return a.Revoke(orig) }, func() error { return a.Delete(orig) }}
		}},
		{"holder dies", func(t *testing.T, a, b *PD, orig, mint, moved Cap) []func() error {
			return []func() error{func() error { return a.Delete(orig) }, func() error { return a.Delete(mint) }, func() error { return b.k.Kill("b") }}
		}},
	}
	for _, kd := range kinds {
		for _, or := range orders {
			t.Run(kd.name+"/"+or.name, func(t *testing.T) {
				k, pds := harness(t, pair(AllRights), nil)
				a, b := pds["a"], pds["b"]
				base := k.liveObjects()
				orig, err := kd.make(a)
				wantErr(t, "create", err, nil)
				mint, err := a.Mint(orig, Read|Write, 7)
				wantErr(t, "Mint", err, nil)
				toMove, err := a.Copy(mint)
				wantErr(t, "Copy", err, nil)
				moved := give(t, a, b, toMove)[0]
				if got := a.Budget().Objects; got != 1 {
					t.Fatalf("objects used after create: got %d, want 1", got)
				}
				steps := or.steps(t, a, b, orig, mint, moved)
				for i, step := range steps {
					if got, want := k.liveObjects(), base+1; got != want {
						t.Fatalf("before step %d: got %d live objects, want %d", i, got, want)
					}
					wantErr(t, "step", step(), nil)
				}
				if got := k.liveObjects(); got != base {
					t.Fatalf("after the last cap: got %d live objects, want %d", got, base)
				}
				if got := a.Budget().Objects; got != 0 {
					t.Fatalf("creator's objects used after destruction: got %d, want 0", got)
				}
				for _, o := range append(append(k.Describe().Endpoints, k.Describe().Notifications...), ObjectSpec{}) {
					if o.Name != "" && o.Name != "ep" && o.Name != "n" {
						t.Fatalf("Describe after destruction: got object %q, want only the static ones", o.Name)
					}
				}
				if got := len(k.Describe().Rings); got != 1 {
					t.Fatalf("Describe rings after destruction: got %d, want 1 (the static one)", got)
				}
			})
		}
	}
}

// TestDestroyWakesBlockedVerbs checks that a verb blocked on an object
// whose last cap goes away returns instead of hanging.
func TestDestroyWakesBlockedVerbs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		make  func(pd *PD) (Cap, error)
		block func(pd *PD, c Cap) error
		want  error
	}{
		{"recv", func(pd *PD) (Cap, error) { return pd.NewEndpoint() },
			func(pd *PD, c Cap) error { _, err := pd.Recv(c, &Msg{}); return err }, ErrAborted},
		{"send", func(pd *PD) (Cap, error) { return pd.NewEndpoint() },
			func(pd *PD, c Cap) error { return pd.Send(c, &Msg{}) }, ErrAborted},
		{"call", func(pd *PD) (Cap, error) { return pd.NewEndpoint() },
			func(pd *PD, c Cap) error { return pd.Call(c, &Msg{}) }, ErrAborted},
		{"wait", func(pd *PD) (Cap, error) { return pd.NewNotification() },
			func(pd *PD, c Cap) error { _, err := pd.Wait(c); return err }, ErrAborted},
		{"pop wait", func(pd *PD) (Cap, error) { return pd.NewRing(4) },
			func(pd *PD, c Cap) error { _, err := pd.PopWait(nil, c, make([]*Buf, 1)); return err }, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, pds := harness(t, pair(AllRights), nil)
			a, b := pds["a"], pds["b"]
			orig, err := tc.make(a)
			wantErr(t, "create", err, nil)
			c, _ := a.Copy(orig)
			bc := give(t, a, b, c)[0]
			done := make(chan error, 1)
			go func() { done <- tc.block(b, bc) }()
			time.Sleep(10 * time.Millisecond)
			wantErr(t, "Revoke", a.Revoke(orig), nil)
			wantErr(t, "Delete", a.Delete(orig), nil)
			within(t, 5*time.Second, tc.name, func() { wantErr(t, tc.name+" on a destroyed object", <-done, tc.want) })
			wantErr(t, tc.name+" again", tc.block(b, bc), ErrRevoked)
			if got := k.liveObjects(); got != 3 {
				t.Fatalf("live objects: got %d, want 3 (the static ones)", got)
			}
		})
	}
}

// TestDestroyedRingFreesQueuedBuffers checks that buffers still queued
// in a ring when its last cap goes return to the budgets they came from.
func TestDestroyedRingFreesQueuedBuffers(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	r, _ := a.NewRing(8)
	w, _ := a.Mint(r, Write, 0)
	bw := give(t, a, b, w)[0]
	for _, tc := range []struct {
		pd *PD
		c  Cap
		n  int
	}{{a, r, 3}, {b, bw, 2}} {
		bufs := make([]*Buf, tc.n)
		if n, err := tc.pd.AllocBufs(bufs); n != tc.n || err != nil {
			t.Fatalf("AllocBufs: got %d, %v, want %d", n, err, tc.n)
		}
		if n, err := tc.pd.Push(tc.c, bufs); n != tc.n || err != nil {
			t.Fatalf("Push: got %d, %v, want %d", n, err, tc.n)
		}
	}
	if ga, gb := a.Budget().Bufs, b.Budget().Bufs; ga != 5 || gb != 0 {
		t.Fatalf("buffers in the ring: got a %d b %d, want 5 (a made the ring) and 0", ga, gb)
	}
	wantErr(t, "b deletes its cap", b.Delete(bw), nil)
	wantErr(t, "a deletes the last cap", a.Delete(r), nil)
	if ga, gb := a.Budget().Bufs, b.Budget().Bufs; ga != 0 || gb != 0 {
		t.Fatalf("after destruction: got a %d b %d buffers charged, want 0 and 0", ga, gb)
	}
}

// TestSpawnedChildDestroyedWithLastCap checks that deleting the last cap
// to a spawned child kills it, removes it, and gives its budget back to
// the spawner; a buffer it pushed into the spawner's ring is charged to
// the spawner already.
func TestSpawnedChildDestroyedWithLastCap(t *testing.T) {
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{{Name: "parent", Budget: Budget{Bufs: 10, Objects: 4}, Caps: []CapSpec{
			{Name: "ep", Object: "ep", Rights: AllRights},
		}}},
	}
	k, pds := harness(t, sys, nil)
	p := pds["parent"]
	r, _ := p.NewRing(8)
	got := make(chan *PD, 1)
	child, err := p.Spawn(ComponentSpec{Name: "child", Budget: Budget{Bufs: 4, Objects: 2},
		Caps: []CapSpec{{Name: "r", Src: r, Rights: Write}}}, func(pd *PD) error {
		got <- pd
		<-pd.Context().Done()
		return nil
	})
	wantErr(t, "Spawn", err, nil)
	c := <-got
	x, err := c.AllocBuf()
	wantErr(t, "child AllocBuf", err, nil)
	if n, err := c.Push(mustSlot(t, c, "r"), []*Buf{x}); n != 1 || err != nil {
		t.Fatalf("child Push: got %d, %v, want 1", n, err)
	}
	_, err = c.NewEndpoint() // the child's own object, only it holds a cap
	wantErr(t, "child NewEndpoint", err, nil)
	before := k.liveObjects()

	wantErr(t, "Delete the child cap", p.Delete(child), nil)
	if _, _, err := k.State("child"); !errors.Is(err, ErrInvalidCap) {
		t.Fatalf("State of a destroyed child: got %v, want ErrInvalidCap", err)
	}
	if n := len(k.Describe().Components); n != 1 {
		t.Fatalf("Describe components: got %d, want 1", n)
	}
	if got, want := k.liveObjects(), before-1; got != want {
		t.Fatalf("live objects: got %d, want %d (the child's endpoint is gone)", got, want)
	}
	for _, tc := range []struct {
		what      string
		got, want int
	}{
		{"parent buffer limit (all back)", p.Budget().Limit.Bufs, 10},
		{"parent buffers used (one in its ring)", p.Budget().Bufs, 1},
		{"parent object limit", p.Budget().Limit.Objects, 4},
		{"parent objects used (the ring)", p.Budget().Objects, 1},
	} {
		if tc.got != tc.want {
			t.Fatalf("%s: got %d, want %d", tc.what, tc.got, tc.want)
		}
	}
	out := make([]*Buf, 1)
	if n, _ := p.Pop(r, out); n != 1 {
		t.Fatalf("Pop the child's buffer: got %d, want 1", n)
	}
	p.FreeBuf(out[0])
	if got := p.Budget().Bufs; got != 0 {
		t.Fatalf("parent buffers used after the child's last buffer was freed: got %d, want 0", got)
	}
	wantErr(t, "Delete the ring", p.Delete(r), nil)
	if u := p.Budget(); u.Objects != 0 || u.Bufs != 0 {
		t.Fatalf("parent usage at the end: got %+v, want nothing used", u)
	}
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() (got, want int)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, want := cond()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %d, want %d (after %v)", what, got, want, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDeadComponentBuffersReclaimed checks that the buffers a component
// held when it died (allocated, or popped from another's ring) and those
// it reserved are released once its goroutines are gone, so that it can
// use its whole budget again after a restart; a buffer it pushed is
// charged to the ring already and stays there for its reader.
func TestDeadComponentBuffersReclaimed(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(pd *PD) error // how the first incarnation ends, once loaded
		kill func(k *Kernel)    // what the test does to end it, if anything
		// linger: a PD.Go goroutine keeps one buffer until released; the
		// buffers must not be freed before it returns.
		linger bool
	}{
		{name: "error", end: func(pd *PD) error { return errors.New("boom") }},
		{name: "panic", end: func(pd *PD) error { panic("boom") }},
		{name: "panic in PD.Go", end: func(pd *PD) error {
			pd.Go(func() { panic("boom") })
			<-pd.Context().Done()
			return nil
		}},
		{name: "kill", end: func(pd *PD) error { <-pd.Context().Done(); return nil },
			kill: func(k *Kernel) { k.Kill("a") }},
		{name: "restart", end: func(pd *PD) error { <-pd.Context().Done(); return nil },
			kill: func(k *Kernel) { k.Restart("a") }},
		{name: "kill with a lingering goroutine", end: func(pd *PD) error { <-pd.Context().Done(); return nil },
			kill: func(k *Kernel) { k.Kill("a") }, linger: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := &System{
				Rings: []RingSpec{{Name: "r", Size: 8}},
				Components: []ComponentSpec{
					{Name: "a", Budget: Budget{Bufs: 8}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: AllRights}}},
					{Name: "b", Budget: Budget{Bufs: 4}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: AllRights}}},
				},
			}
			start, loaded, later := make(chan struct{}), make(chan *PD, 1), make(chan *PD, 1)
			release, proceed := make(chan struct{}), make(chan struct{})
			prog := func(pd *PD) error {
				if pd.inc > 1 {
					later <- pd
					<-pd.Context().Done()
					return nil
				}
				<-start
				r := mustSlot(t, pd, "r")
				popped := make([]*Buf, 2)
				if n, err := pd.Pop(r, popped); n != 2 {
					return fmt.Errorf("Pop: got %d, %v, want 2", n, err)
				}
				held := make([]*Buf, 3)
				if n, err := pd.AllocBufs(held); n != 3 {
					return fmt.Errorf("AllocBufs: got %d, %v, want 3", n, err)
				}
				if n, err := pd.Push(r, held[2:]); n != 1 {
					return fmt.Errorf("Push: got %d, %v, want 1", n, err)
				}
				if err := pd.Reserve(2); err != nil {
					return err
				}
				if tc.linger {
					keep := held[0]
					pd.Go(func() { <-release; _ = keep })
				}
				loaded <- pd
				<-proceed
				return tc.end(pd)
			}
			k, pds := harness(t, sys, map[string]Program{"a": prog})
			b := pds["b"]
			two := make([]*Buf, 2)
			b.AllocBufs(two)
			b.Push(mustSlot(t, b, "r"), two)
			close(start)
			a := <-loaded
			// a: 2 popped + 2 allocated and not pushed + 2 reserved.
			if ga, gb := a.Budget().Bufs, b.Budget().Bufs; ga != 6 || gb != 0 {
				t.Fatalf("before death: got a %d b %d buffers charged, want 6 and 0", ga, gb)
			}
			close(proceed)
			if tc.kill != nil {
				tc.kill(k)
			}
			if tc.linger {
				time.Sleep(20 * time.Millisecond)
				if got := a.Budget().Bufs; got != 6 {
					t.Fatalf("dead, with a goroutine still running: got %d buffers charged, want 6 (nothing freed yet)", got)
				}
				close(release)
			}
			eventually(t, 5*time.Second, "a's buffers charged after death", func() (int, int) { return a.Budget().Bufs, 0 })
			if got := b.Budget().Bufs; got != 0 {
				t.Fatalf("b's buffers after a died: got %d, want 0", got)
			}
			if tc.name != "restart" {
				wantErr(t, "Restart", k.Restart("a"), nil)
			}
			a2 := <-later
			bufs := make([]*Buf, 8)
			if n, err := a2.AllocBufs(bufs); n != 8 || err != nil {
				t.Fatalf("AllocBufs after restart: got %d, %v, want the whole budget of 8", n, err)
			}
			a2.FreeBufs(bufs)
			out := make([]*Buf, 1)
			if n, _ := b.Pop(mustSlot(t, b, "r"), out); n != 1 {
				t.Fatalf("Pop a's last buffer: got %d, want 1", n)
			}
			if got := b.Budget().Bufs; got != 1 {
				t.Fatalf("b's buffers after popping a's: got %d, want 1 (charged to the holder)", got)
			}
			b.FreeBufs(out)
			if ga, gb := a2.Budget().Bufs, b.Budget().Bufs; ga != 0 || gb != 0 {
				t.Fatalf("buffers at the end: got a %d b %d, want 0 and 0", ga, gb)
			}
		})
	}
}

// TestForeignBufferPanics checks that pushing or freeing a buffer another
// component holds panics in every build (the owner word makes the check
// free), and leaves the buffer with its holder.
func TestForeignBufferPanics(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	for _, tc := range []struct {
		name string
		op   func(x *Buf)
	}{
		{"free", func(x *Buf) { b.FreeBuf(x) }},
		{"push", func(x *Buf) { b.Push(mustSlot(t, b, "r"), []*Buf{x}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := a.AllocBuf()
			wantErr(t, "AllocBuf", err, nil)
			func() {
				defer func() {
					if recover() == nil {
						t.Fatalf("%s by a non-holder: got no panic, want one", tc.name)
					}
				}()
				tc.op(x)
			}()
			a.FreeBuf(x) // still a's: no panic
			if got := a.Budget().Bufs; got != 0 {
				t.Fatalf("a's buffers after freeing: got %d, want 0", got)
			}
		})
	}
}

// TestWaitNotWokenBySignallerDeath pins the documented choice: as in
// seL4, a Wait does not end when a component that could signal dies (a
// notification has no single signaller: any Write cap, or a bound ring,
// may signal later); WaitCtx and the notification's destruction do.
func TestWaitNotWokenBySignallerDeath(t *testing.T) {
	k, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	n := mustSlot(t, a, "n")
	done := make(chan error, 1)
	go func() { _, err := a.Wait(n); done <- err }()
	wantErr(t, "Kill the other signaller", k.Kill("b"), nil)
	select {
	case err := <-done:
		t.Fatalf("Wait after a signaller died: got %v, want still blocked", err)
	case <-time.After(20 * time.Millisecond):
	}
	wantErr(t, "Signal", a.Signal(n), nil)
	within(t, 5*time.Second, "Wait", func() { wantErr(t, "Wait after a Signal", <-done, nil) })
}
