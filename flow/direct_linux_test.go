package flow_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
)

// directPair is a raw Flow over a program's shared rings of 16 slots (it
// reads them itself) and the node's end of them.
func directPair(t *testing.T) (*flow.Flow, flow.BatchPort) {
	t.Helper()
	prog, node := flow.ShmPair(t, 16)
	f, err := flow.New(prog, flow.Info{ID: 1, QoS: flow.Raw()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, node.(flow.BatchPort)
}

// TestShmDirectReadsTheRing: a raw Flow over shared rings has no queue
// of its own between the ring and its readers: what the node wrote
// stays in the ring's slots until the program reads it, so a full ring
// holds the node back (before, a receive goroutine drained the ring into
// the flow's queue of up to 64 SDUs and the node's 17th write went
// through at once).
func TestShmDirectReadsTheRing(t *testing.T) {
	f, node := directPair(t)
	msgs := make([][]byte, 16)
	for i := range msgs {
		msgs[i] = sdu(i, 100)
	}
	if n, err := node.WriteBatch(msgs, time.Now().Add(time.Second)); n != 16 || err != nil {
		t.Fatalf("WriteBatch of a ring's worth = %d, %v", n, err)
	}
	time.Sleep(50 * time.Millisecond) // a receive goroutine would drain it now
	if err := node.Write(sdu(16, 100), time.Now().Add(100*time.Millisecond)); !errors.Is(err, flow.ErrTimeout) {
		t.Fatalf("17th write into a ring of 16 nobody read = %v, want ErrTimeout (the ring is the flow's queue)", err)
	}
	readAll(t, f, 16, 5, func(int) int { return 100 })
	if err := node.Write(sdu(16, 100), time.Now().Add(time.Second)); err != nil {
		t.Fatalf("write once the program read = %v", err)
	}
	if s := f.Stats(); s.RecvSDUs != 16 || s.RecvBytes != 1600 {
		t.Errorf("Stats = %d SDUs, %d bytes; want 16, 1600", s.RecvSDUs, s.RecvBytes)
	}
}

// TestShmDirectDeadlineMoves: a Read blocked in the ring sees a deadline
// set while it waits (net.Conn's rule): one set in the past ends it at
// once, one in the future when it passes; a read that was given none
// keeps waiting until then.
func TestShmDirectDeadlineMoves(t *testing.T) {
	for _, c := range []struct {
		name string
		dl   time.Duration
	}{{"past", -time.Second}, {"future", 80 * time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			f, _ := directPair(t)
			blockedSeesDeadline(t, f, c.dl, "Read", func() error { _, err := f.Read(make([]byte, 64)); return err })
			// The deadline cleared: reads wait again, and get data.
			f.SetReadDeadline(time.Time{})
		})
	}
}

// TestShmDirectJoinsSet: adding a directly read flow to a Set gives it
// a queue (the Set's readiness), also while a Read is blocked in the
// ring: that Read is woken, and it and the Set then see what arrives.
func TestShmDirectJoinsSet(t *testing.T) {
	f, node := directPair(t)
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := f.Read(buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	time.Sleep(30 * time.Millisecond) // the Read waits in the ring
	s := flow.NewSet()
	defer s.Close()
	if err := s.Add(f); err != nil {
		t.Fatal(err)
	}
	if err := node.Write([]byte("one"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "one" {
			t.Fatalf("the blocked Read got %q, want \"one\"", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Read blocked when the flow joined a Set never got the SDU")
	}
	if err := node.Write([]byte("two"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := s.Wait(ctx, nil)
	if err != nil || len(ev) != 1 || ev[0].Flow != f || ev[0].Kind != flow.Readable {
		t.Fatalf("Set.Wait = %v, %v; want the flow readable", ev, err)
	}
	buf := make([]byte, 64)
	f.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := f.Read(buf); err != nil || string(buf[:n]) != "two" {
		t.Fatalf("Read = %q, %v; want \"two\"", buf[:n], err)
	}
}

// TestShmDirectConcurrent: readers reading one flow's ring at once
// (Read and ReadBatch), deadlines moved under them, a Set joined
// halfway, and a close at the end: every SDU the node wrote is read
// exactly once, and nothing hangs.
func TestShmDirectConcurrent(t *testing.T) {
	const total = 20000
	f, node := directPair(t)
	go func() {
		msgs := make([][]byte, 8)
		for sent := 0; sent < total; {
			k := min(len(msgs), total-sent)
			for i := range k {
				msgs[i] = sdu(sent+i, 16)
			}
			n, err := node.WriteBatch(msgs[:k], time.Now().Add(10*time.Second))
			sent += n
			if err != nil {
				t.Errorf("node's WriteBatch after %d: %v", sent, err)
				return
			}
		}
	}()
	var (
		seen = make([]atomic.Int32, total)
		read atomic.Int64
		wg   sync.WaitGroup
	)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs, sizes := flowtest.BatchBufs(5, 64)
			for read.Load() < total {
				var n int
				var err error
				if r%2 == 0 {
					n, err = f.ReadBatch(bufs, sizes)
				} else if sizes[0], err = f.Read(bufs[0]); err == nil {
					n = 1
				}
				if errors.Is(err, flow.ErrClosed) && read.Load() == total {
					return // the close that ends the test
				}
				if err != nil && !errors.Is(err, flow.ErrTimeout) {
					t.Errorf("reader %d: %v", r, err)
					return
				}
				for i := range n {
					seen[seqOf(bufs[i])].Add(1)
				}
				read.Add(int64(n))
			}
		}()
	}
	s := flow.NewSet()
	defer s.Close()
	end := time.Now().Add(20 * time.Second)
	for i := 0; read.Load() < total; i++ {
		if time.Now().After(end) {
			t.Fatalf("%d of %d SDUs read after 20 s", read.Load(), total)
		}
		f.SetReadDeadline(time.Now().Add(time.Duration(i%5) * time.Millisecond))
		if i == 200 {
			if err := s.Add(f); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
	f.SetReadDeadline(time.Time{})
	f.Close() // readers still waiting for more return
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("readers still blocked 10 s after Close")
	}
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("SDU %d read %d times, want once", i, c)
		}
	}
}

// TestShmDirectDeadlineThenSet: a deadline set while nobody read (an
// interrupt nobody took) does not end the receive loop a Set starts
// afterwards: the flow stays open and readable.
func TestShmDirectDeadlineThenSet(t *testing.T) {
	f, node := directPair(t)
	f.SetReadDeadline(time.Now().Add(time.Minute))
	s := flow.NewSet()
	defer s.Close()
	if err := s.Add(f); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the receive loop's first read
	if err := node.Write([]byte("x"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := s.Wait(ctx, nil)
	if err != nil || len(ev) != 1 || ev[0].Kind != flow.Readable {
		t.Fatalf("Set.Wait = %v, %v; want the flow readable", ev, err)
	}
	buf := make([]byte, 8)
	if n, err := f.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

// TestShmDirectReadZeroAllocs: a Read of one SDU from the ring (and the
// node's write of it) allocates nothing: the buffer is not passed
// through the port interface in a slice of the Read's own. Run it
// without -race.
func TestShmDirectReadZeroAllocs(t *testing.T) {
	f, node := directPair(t)
	msg, buf := sdu(1, 100), make([]byte, flow.MaxSDU)
	round := func() {
		if err := node.Write(msg, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if n, err := f.Read(buf); n != len(msg) || err != nil {
			t.Fatal(n, err)
		}
	}
	for range 100 {
		round()
	}
	if allocs := testing.AllocsPerRun(1000, round); allocs != 0 {
		t.Errorf("got %v allocations per SDU written and read, want 0", allocs)
	}
}

// blockedSeesDeadline checks that read, on f with nothing to read,
// blocks, and that a read deadline set dl ahead while it waits ends it
// with ErrTimeout, not before dl.
func blockedSeesDeadline(t *testing.T, f *flow.Flow, dl time.Duration, what string, read func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- read() }()
	select {
	case err := <-done:
		t.Fatalf("%s of an empty flow returned %v", what, err)
	case <-time.After(50 * time.Millisecond):
	}
	set := time.Now()
	f.SetReadDeadline(set.Add(dl))
	select {
	case err := <-done:
		if !errors.Is(err, flow.ErrTimeout) {
			t.Fatalf("%s after its deadline = %v, want ErrTimeout", what, err)
		}
		if took := time.Since(set); took < dl {
			t.Errorf("%s returned %v after the deadline was set %v ahead", what, took, dl)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("a blocked %s did not see its new deadline", what)
	}
}
