package kernel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// floodSystem: irm makes the rings (as the IRM makes both rings of every
// flow), shim writes into two of them (as an IPCP delivers to two
// programs), stalled never reads its ring, reader reads its own. All
// share "ep" so that give can move caps between them.
func floodSystem(irmBufs int) *System {
	all := []CapSpec{{Name: "ep", Object: "ep", Rights: AllRights}}
	return &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{
			{Name: "irm", Budget: Budget{Bufs: irmBufs, Objects: 4}, Caps: all},
			{Name: "shim", Budget: Budget{Bufs: 64}, Caps: all},
			{Name: "stalled", Budget: Budget{Bufs: 64}, Caps: all},
			{Name: "reader", Budget: Budget{Bufs: 64}, Caps: all},
		},
	}
}

// flowRing makes a ring in irm and gives a Write cap to w and a Read cap
// to r; it returns their slots.
func flowRing(t *testing.T, irm, w, r *PD, size int) (wc, rc Cap) {
	t.Helper()
	ring, err := irm.NewRing(size)
	wantErr(t, "NewRing", err, nil)
	wm, _ := irm.Mint(ring, Write, 0)
	rm, _ := irm.Mint(ring, Read, 0)
	wc = give(t, irm, w, wm)[0]
	rc = give(t, irm, r, rm)[0]
	return wc, rc
}

// TestFloodContained is the flood the budgets must contain: a component
// with a small budget (64 buffers, like a shim) delivers to a program
// that never reads (ring r1, larger than the budget) and to one that does
// (ring r2). Each round it pushes a burst into r1, whatever fits, and
// then one "ping" into r2, which the reader pops and frees. Every ping
// must arrive: what r1 queues is charged to the ring's creator, not to
// the writer, so the stalled flow holds at most its ring's share. (With
// the pusher charged until the reader frees, the writer's budget ends up
// in r1 after four rounds and no later ping can even be allocated.)
func TestFloodContained(t *testing.T) {
	_, pds := harness(t, floodSystem(512), nil)
	irm, shim, stalled, reader := pds["irm"], pds["shim"], pds["stalled"], pds["reader"]
	w1, _ := flowRing(t, irm, shim, stalled, 128)
	w2, r2 := flowRing(t, irm, shim, reader, 128)

	const rounds, burst = 20, 16
	delivered := 0
	bufs := make([]*Buf, burst)
	out := make([]*Buf, 4)
	for i := range rounds {
		if n, _ := shim.AllocBufs(bufs); n > 0 {
			_, err := shim.Push(w1, bufs[:n])
			if err != nil && err != ErrWouldBlock {
				t.Fatalf("round %d: flood push: %v", i, err)
			}
			shim.FreeBufs(bufs[:n]) // what did not fit (nil entries are skipped)
		}
		ping, err := shim.AllocBuf()
		if err != nil {
			continue // the writer's budget is gone: this ping is lost
		}
		ping.SetLen(64)
		one := []*Buf{ping}
		if n, err := shim.Push(w2, one); n != 1 {
			shim.FreeBuf(ping)
			t.Logf("round %d: ping push: %v", i, err)
			continue
		}
		if n, err := reader.Pop(r2, out); n != 1 {
			t.Fatalf("round %d: reader Pop: got %d, %v, want the ping", i, n, err)
		}
		reader.FreeBufs(out[:1])
		delivered++
	}
	if delivered != rounds {
		t.Fatalf("pings delivered while the other flow is stalled: got %d/%d, want %d/%d", delivered, rounds, rounds, rounds)
	}
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"writer's buffers charged", shim.Budget().Bufs, 0},
		{"stalled reader's buffers charged", stalled.Budget().Bufs, 0},
		{"ring creator's buffers charged (the stalled ring, full)", irm.Budget().Bufs, 128},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.what, c.got, c.want)
		}
	}
}

// TestPushChargesCreator checks the creator's side of a push: a push is
// cut to what the ring creator's budget can take, fails with ErrNoBudget
// (without allocating) when it can take none, and PushWait waits until a
// pop credits it.
func TestPushChargesCreator(t *testing.T) {
	_, pds := harness(t, floodSystem(4), nil)
	irm, shim, reader := pds["irm"], pds["shim"], pds["reader"]
	w, r := flowRing(t, irm, shim, reader, 16)
	bufs := make([]*Buf, 6)
	if n, err := shim.AllocBufs(bufs); n != 6 {
		t.Fatalf("AllocBufs: got %d, %v", n, err)
	}
	if n, err := shim.Push(w, bufs); n != 4 || err != nil {
		t.Fatalf("Push 6 with 4 left in the creator's budget: got %d, %v, want 4", n, err)
	}
	if u := shim.Budget(); u.Bufs != 2 {
		t.Fatalf("pusher's buffers after the push: got %d, want 2 (the ones not pushed)", u.Bufs)
	}
	_, err := shim.Push(w, bufs[4:])
	wantErr(t, "Push with the creator's budget full", err, ErrNoBudget)
	if got := testing.AllocsPerRun(100, func() { shim.Push(w, bufs[4:]) }); got != 0 {
		t.Fatalf("allocations per refused push: got %v, want 0", got)
	}
	done := make(chan int, 1)
	go func() {
		n, _ := shim.PushWait(context.Background(), w, bufs[4:])
		done <- n
	}()
	time.Sleep(10 * time.Millisecond)
	out := make([]*Buf, 1)
	if n, err := reader.Pop(r, out); n != 1 {
		t.Fatalf("Pop: got %d, %v", n, err)
	}
	within(t, 5*time.Second, "PushWait after a pop credited the creator", func() {
		if n := <-done; n != 1 {
			t.Errorf("PushWait: got %d, want 1", n)
		}
	})
	reader.FreeBufs(out)
	shim.FreeBufs(bufs)
	drain := make([]*Buf, 16)
	n, _ := reader.Pop(r, drain)
	reader.FreeBufs(drain[:n])
	for _, pd := range []*PD{irm, shim, reader} {
		if got := pd.Budget().Bufs; got != 0 {
			t.Errorf("%s's buffers at the end: got %d, want 0", pd.Name(), got)
		}
	}
}

// TestPopChargesPopper checks the popper's side: a pop takes only what
// the popper's budget allows, fails with ErrNoBudget (without allocating)
// when it can take none, and PopWait waits until the budget is credited
// (by a free, or by GrantBudget), waking every waiter that can proceed.
func TestPopChargesPopper(t *testing.T) {
	sys := floodSystem(64)
	sys.Components[3].Budget.Bufs = 2 // reader
	sys.Components = append(sys.Components, ComponentSpec{Name: "sup", Budget: Budget{Bufs: 4},
		Caps: []CapSpec{{Name: "reader", Object: "reader", Rights: Write}}})
	_, pds := harness(t, sys, nil)
	irm, shim, reader, sup := pds["irm"], pds["shim"], pds["reader"], pds["sup"]
	w1, r1 := flowRing(t, irm, shim, reader, 8)
	w2, r2 := flowRing(t, irm, shim, reader, 8)
	for _, w := range []Cap{w1, w2} {
		bufs := make([]*Buf, 4)
		shim.AllocBufs(bufs)
		if n, err := shim.Push(w, bufs); n != 4 {
			t.Fatalf("Push: got %d, %v", n, err)
		}
	}
	held := make([]*Buf, 4)
	if n, err := reader.Pop(r1, held); n != 2 || err != nil {
		t.Fatalf("Pop 4 with a budget of 2: got %d, %v, want 2", n, err)
	}
	_, err := reader.Pop(r1, held[2:])
	wantErr(t, "Pop with the budget full", err, ErrNoBudget)
	if got := testing.AllocsPerRun(100, func() { reader.Pop(r1, held[2:]) }); got != 0 {
		t.Fatalf("allocations per refused pop: got %v, want 0", got)
	}
	// Two goroutines of the reader wait for credit, on two rings.
	type res struct {
		n   int
		err error
		b   []*Buf // kept until the end, so only the test credits the budget
	}
	got := make(chan res, 2)
	var wg sync.WaitGroup
	for _, r := range []Cap{r1, r2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]*Buf, 1)
			n, err := reader.PopWait(context.Background(), r, b)
			got <- res{n, err, b[:n]}
		}()
	}
	var popped [][]*Buf
	time.Sleep(20 * time.Millisecond)
	select {
	case x := <-got:
		t.Fatalf("PopWait with the budget full: got %+v, want it blocked", x)
	default:
	}
	reader.FreeBufs(held[:1]) // one credit: one waiter proceeds
	within(t, 5*time.Second, "first PopWait after a free", func() {
		x := <-got
		if x.n != 1 || x.err != nil {
			t.Errorf("PopWait: got %+v, want 1 buffer", x)
		}
		popped = append(popped, x.b)
	})
	select {
	case x := <-got:
		t.Fatalf("second PopWait with the budget full again: got %+v, want it blocked", x)
	case <-time.After(20 * time.Millisecond):
	}
	wantErr(t, "GrantBudget", sup.GrantBudget(mustSlot(t, sup, "reader"), Budget{Bufs: 2}), nil)
	within(t, 5*time.Second, "second PopWait after GrantBudget", func() {
		x := <-got
		if x.n != 1 || x.err != nil {
			t.Errorf("PopWait: got %+v, want 1 buffer", x)
		}
		popped = append(popped, x.b)
	})
	wg.Wait()
	for _, b := range popped {
		reader.FreeBufs(b)
	}
	reader.FreeBufs(held[1:2])
	// A PopWait waiting for credit ends with its context.
	full := make([]*Buf, 4)
	if n, err := reader.Pop(r1, full[:1]); n != 1 {
		t.Fatalf("Pop the last of r1: got %d, %v", n, err)
	}
	if n, err := reader.Pop(r2, full[1:3]); n != 2 {
		t.Fatalf("Pop 2 of r2: got %d, %v", n, err)
	}
	wantErr(t, "Reserve the last buffer of the budget", reader.Reserve(1), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = reader.PopWait(ctx, r2, make([]*Buf, 1))
	wantErr(t, "PopWait for credit past its deadline", err, context.DeadlineExceeded)
	wantErr(t, "Unreserve", reader.Unreserve(1), nil)
	reader.FreeBufs(full)
	for _, r := range []Cap{r1, r2} {
		for {
			n, err := reader.Pop(r, full)
			reader.FreeBufs(full[:n])
			if err != nil {
				break
			}
		}
	}
	for _, pd := range []*PD{irm, shim, reader} {
		if got := pd.Budget().Bufs; got != 0 {
			t.Errorf("%s's buffers at the end: got %d, want 0", pd.Name(), got)
		}
	}
}

// TestRingByteRate checks a ring's own byte rate: pushes are cut to what
// it allows, ErrNoBudget when it allows nothing, tokens come back with
// time, and the pusher's own rate is charged only for what was pushed.
func TestRingByteRate(t *testing.T) {
	now := time.Unix(0, 0)
	k := New(Config{Now: func() time.Time { return now }})
	defer k.Stop()
	pdc := make(chan *PD, 1)
	sys := &System{Components: []ComponentSpec{{Name: "a", Budget: Budget{Bufs: 16, ByteRate: 2000, Burst: 2000, Objects: 4}}}}
	if err := k.Boot(sys, map[string]Program{"a": func(pd *PD) error { pdc <- pd; <-pd.Context().Done(); return nil }}); err != nil {
		t.Fatal(err)
	}
	a := <-pdc
	_, err := a.NewRingSpec(RingSpec{Name: "x", Size: 4})
	wantErr(t, "NewRingSpec with a name", err, ErrInvalidCap)
	_, err = a.NewRingSpec(RingSpec{Size: 4, ByteRate: -1})
	wantErr(t, "NewRingSpec with a negative rate", err, ErrNoBudget)
	slow, err := a.NewRingSpec(RingSpec{Size: 8, ByteRate: 1000, Burst: 1000})
	wantErr(t, "NewRingSpec", err, nil)
	fast, _ := a.NewRing(8)
	var found bool
	for _, r := range k.Describe().Rings {
		found = found || (r.ByteRate == 1000 && r.Burst == 1000)
	}
	if !found {
		t.Fatalf("Describe rings: got %+v, want one with byte rate 1000, burst 1000", k.Describe().Rings)
	}
	bufs := make([]*Buf, 8)
	a.AllocBufs(bufs)
	for _, x := range bufs {
		x.SetLen(400)
	}
	if n, err := a.Push(slow, bufs[:3]); n != 2 || err != nil {
		t.Fatalf("Push 3x400 bytes into a ring with a burst of 1000: got %d, %v, want 2", n, err)
	}
	_, err = a.Push(slow, bufs[2:3])
	wantErr(t, "Push past the ring's rate", err, ErrNoBudget)
	// The pusher's own bucket (2000) paid for the two pushed (800) only:
	// three more fit into an unlimited ring, not four.
	if n, err := a.Push(fast, bufs[2:6]); n != 3 || err != nil {
		t.Fatalf("Push 4x400 into an unlimited ring with 1200 of the pusher's tokens left: got %d, %v, want 3", n, err)
	}
	now = now.Add(time.Second)
	if n, err := a.Push(slow, bufs[5:6]); n != 1 || err != nil {
		t.Fatalf("Push a second later: got %d, %v, want 1", n, err)
	}
	out := make([]*Buf, 8)
	for _, r := range []Cap{slow, fast} {
		n, _ := a.Pop(r, out)
		a.FreeBufs(out[:n])
	}
	a.FreeBufs(bufs)
	if got := a.Budget().Bufs; got != 0 {
		t.Fatalf("buffers at the end: got %d, want 0", got)
	}
}

// TestReserve checks that reserved buffers count as held: all or nothing,
// released by Unreserve (which refuses to release more than reserved).
func TestReserve(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"] // 64 buffers
	wantErr(t, "Reserve 60", a.Reserve(60), nil)
	if got := a.Budget().Bufs; got != 60 {
		t.Fatalf("buffers charged after Reserve(60): got %d, want 60", got)
	}
	wantErr(t, "Reserve past the budget", a.Reserve(5), ErrNoBudget)
	if got := a.Budget().Bufs; got != 60 {
		t.Fatalf("buffers charged after a refused Reserve: got %d, want 60 (all or nothing)", got)
	}
	bufs := make([]*Buf, 8)
	if n, _ := a.AllocBufs(bufs); n != 4 {
		t.Fatalf("AllocBufs with 4 left: got %d, want 4", n)
	}
	a.FreeBufs(bufs)
	wantErr(t, "Unreserve more than reserved", a.Unreserve(61), ErrInvalidCap)
	wantErr(t, "Unreserve", a.Unreserve(60), nil)
	if got := a.Budget().Bufs; got != 0 {
		t.Fatalf("buffers charged after Unreserve: got %d, want 0", got)
	}
}

// TestChildRingsRehomed checks that a ring a destroyed child made, still
// held by others, moves to the spawner's budget with what it queues: the
// counts stay exact and pushes into it still work.
func TestChildRingsRehomed(t *testing.T) {
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{{Name: "parent", Budget: Budget{Bufs: 10, Objects: 4}, Caps: []CapSpec{
			{Name: "ep", Object: "ep", Rights: AllRights},
		}}},
	}
	_, pds := harness(t, sys, nil)
	p := pds["parent"]
	got := make(chan error, 1)
	child, err := p.Spawn(ComponentSpec{Name: "child", Budget: Budget{Bufs: 4, Objects: 1},
		Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Write | Grant}}}, func(pd *PD) error {
		r, err := pd.NewRing(8)
		if err == nil {
			bufs := make([]*Buf, 2)
			pd.AllocBufs(bufs)
			_, err = pd.Push(r, bufs) // charged to the child, the ring's creator
		}
		if err == nil {
			m := Msg{NCaps: 1}
			m.Caps[0] = r
			err = pd.Send(mustSlot(t, pd, "ep"), &m)
		}
		got <- err
		<-pd.Context().Done()
		return nil
	})
	wantErr(t, "Spawn", err, nil)
	m := Msg{}
	_, err = p.Recv(mustSlot(t, p, "ep"), &m)
	wantErr(t, "Recv the child's ring", err, nil)
	wantErr(t, "child", <-got, nil)
	r := m.Caps[0]
	if u := p.Budget(); u.Limit.Bufs != 6 || u.Bufs != 0 {
		t.Fatalf("parent before: got %+v, want limit 6, none used", u)
	}
	wantErr(t, "Delete the child", p.Delete(child), nil)
	if u := p.Budget(); u.Limit.Bufs != 10 || u.Bufs != 2 {
		t.Fatalf("parent after the child was destroyed: got limit %d used %d, want 10 and 2 (the ring's queue)", u.Limit.Bufs, u.Bufs)
	}
	x, _ := p.AllocBuf()
	if n, err := p.Push(r, []*Buf{x}); n != 1 || err != nil {
		t.Fatalf("Push into the orphaned ring: got %d, %v, want 1", n, err)
	}
	out := make([]*Buf, 4)
	n, _ := p.Pop(r, out)
	p.FreeBufs(out[:n])
	wantErr(t, "Delete the ring", p.Delete(r), nil)
	if u := p.Budget(); u.Limit.Bufs != 10 || u.Bufs != 0 || u.Objects != 0 {
		t.Fatalf("parent at the end: got %+v, want limit 10, nothing used", u)
	}
}

// TestBudgetChurn spawns, restarts, faults and destroys children that
// push into their parent's rings and keep buffers and reservations,
// destroys rings with buffers queued, and checks that every budget comes
// back to zero use and its original limits.
func TestBudgetChurn(t *testing.T) {
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{
			{Name: "parent", Budget: Budget{Bufs: 64, Objects: 8}, Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: AllRights}}},
			{Name: "peer", Budget: Budget{Bufs: 16}, Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: AllRights}}},
		},
	}
	k, pds := harness(t, sys, nil)
	p, peer := pds["parent"], pds["peer"]
	rounds := 200
	if testing.Short() {
		rounds = 50
	}
	for i := range rounds {
		r, err := p.NewRing(16)
		wantErr(t, "NewRing", err, nil)
		loaded := make(chan error, 2)
		prog := func(pd *PD) error {
			rc := mustSlot(t, pd, "r")
			bufs := make([]*Buf, 3)
			n, err := pd.AllocBufs(bufs)
			if err == nil {
				_, err = pd.Push(rc, bufs[:2]) // into the parent's ring
				_ = n
			}
			if err == nil {
				err = pd.Reserve(1)
			}
			if err == nil && i%5 == 0 {
				pd.Go(func() { <-pd.Context().Done(); time.Sleep(time.Millisecond) })
			}
			loaded <- err
			switch i % 4 {
			case 2:
				panic("churn")
			case 3:
				return errors.New("churn")
			}
			<-pd.Context().Done()
			return nil
		}
		child, err := p.Spawn(ComponentSpec{Name: "child", Budget: Budget{Bufs: 8},
			Caps: []CapSpec{{Name: "r", Src: r, Rights: Write}}}, prog)
		wantErr(t, "Spawn", err, nil)
		wantErr(t, "child loaded", <-loaded, nil)
		if i%3 == 0 {
			wantErr(t, "Restart", p.Restart(child), nil)
			wantErr(t, "child loaded again", <-loaded, nil)
		}
		if i%2 == 0 { // the parent takes some of what the child pushed
			out := make([]*Buf, 3)
			n, _ := p.Pop(r, out)
			p.FreeBufs(out[:n])
		}
		if i%7 == 0 { // a peer holds one of them across the destruction
			rr, _ := p.Mint(r, Read, 0)
			pr := give(t, p, peer, rr)[0]
			out := make([]*Buf, 1)
			if n, _ := peer.Pop(pr, out); n == 1 {
				defer peer.FreeBufs(out)
			}
			peer.Delete(pr)
		}
		wantErr(t, "Delete the child", p.Delete(child), nil)
		wantErr(t, "Delete the ring", p.Delete(r), nil)
	}
	// Dead children's buffers come back once their goroutines return.
	eventually(t, 5*time.Second, "parent's buffer limit after the churn", func() (int, int) { return p.Budget().Limit.Bufs, 64 })
	eventually(t, 5*time.Second, "parent's buffers charged after the churn", func() (int, int) { return p.Budget().Bufs, 0 })
	if u := p.Budget(); u.Limit.Bufs != 64 || u.Limit.Objects != 8 || u.Objects != 0 {
		t.Fatalf("parent after the churn: got %+v, want its limits back (64, 8) and no objects", u)
	}
	if n := len(k.Describe().Components); n != 2 {
		t.Fatalf("components after the churn: got %d, want 2", n)
	}
	t.Cleanup(func() {
		if got := peer.Budget().Bufs; got != 0 {
			t.Errorf("peer's buffers after freeing: got %d, want 0", got)
		}
	})
}

// TestRateGivenAway checks that a rate-limited component that gives its
// whole byte rate to a child stays limited (at zero) instead of becoming
// unlimited.
func TestRateGivenAway(t *testing.T) {
	now := time.Unix(0, 0)
	k := New(Config{Now: func() time.Time { return now }})
	defer k.Stop()
	pdc := make(chan *PD, 1)
	sys := &System{
		Rings:      []RingSpec{{Name: "r", Size: 8}},
		Components: []ComponentSpec{{Name: "p", Budget: Budget{Bufs: 8, ByteRate: 1000, Burst: 1000, Objects: 1}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: AllRights}}}},
	}
	if err := k.Boot(sys, map[string]Program{"p": func(pd *PD) error { pdc <- pd; <-pd.Context().Done(); return nil }}); err != nil {
		t.Fatal(err)
	}
	p := <-pdc
	_, err := p.Spawn(ComponentSpec{Name: "child", Budget: Budget{ByteRate: 1000}}, func(pd *PD) error { <-pd.Context().Done(); return nil })
	wantErr(t, "Spawn with the whole rate", err, nil)
	r := mustSlot(t, p, "r")
	bufs := make([]*Buf, 4)
	p.AllocBufs(bufs)
	for _, x := range bufs {
		x.SetLen(400)
	}
	n, _ := p.Push(r, bufs) // what is left of the burst
	now = now.Add(10 * time.Second)
	if m, err := p.Push(r, bufs[n:]); m != 0 || !errors.Is(err, ErrNoBudget) {
		t.Fatalf("Push 10 s later with no rate left: got %d, %v, want 0, ErrNoBudget", m, err)
	}
	out := make([]*Buf, 8)
	m, _ := p.Pop(r, out)
	p.FreeBufs(out[:m])
	p.FreeBufs(bufs)
}

// TestBufTotals: the node-wide figures add the booted budgets and rings
// (Granted), and count what the pool made and what is free: buffers held
// by components are made and not free; freed ones are free again.
func TestBufTotals(t *testing.T) {
	sys := &System{
		Rings: []RingSpec{{Name: "r", Size: 8}},
		Components: []ComponentSpec{
			{Name: "a", Budget: Budget{Bufs: 16}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: Write}}},
			{Name: "b", Budget: Budget{Bufs: 4}},
		},
	}
	k, pds := harness(t, sys, nil)
	if got := k.BufTotals(); got.Granted != 16+4+8 || got.Made != 0 {
		t.Fatalf("after boot: %+v, want 28 granted, none made", got)
	}
	bufs := make([]*Buf, 5)
	n, err := pds["a"].AllocBufs(bufs)
	if err != nil || n != 5 {
		t.Fatalf("alloc: %d, %v", n, err)
	}
	if got := k.BufTotals(); got.Made != 5 || got.Free != 0 {
		t.Fatalf("5 held: %+v", got)
	}
	pds["a"].FreeBufs(bufs[:3])
	if got := k.BufTotals(); got.Made != 5 || got.Free != 3 {
		t.Fatalf("2 held, 3 freed: %+v", got)
	}
}
