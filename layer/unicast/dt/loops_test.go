package dt

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// plain hides a port's batch methods: the loops then read and write one
// packet per call.
type plain struct{ flow.Port }

// relay is a Host that forwards every packet to one next hop, as the
// unicast IPCP's Input does for a forwarded packet, and records the rest.
type relay struct {
	to *Port

	mu         sync.Mutex
	failed     []error
	keepalives int
	markedRx   int // packets offered to MarkRx
	markedTx   int // packets offered to MarkTx
	noSpare    int
}

func (h *relay) Input(b *Buf, k *Kicks, sp *Spares) *Buf {
	repl := sp.Take()
	if repl == nil {
		h.mu.Lock()
		h.noSpare++
		h.mu.Unlock()
		return nil
	}
	cube := PCI(b.Pkt()).Cube()
	if k != nil && k.Defer(h.to, b, cube) {
		return repl
	}
	if !h.to.Sched.Enqueue(cube, b) {
		panic("relay: queue full") // the tests keep below the queue's length
	}
	h.to.Wake()
	return repl
}

func (h *relay) Fail(p *Port, err error) {
	h.mu.Lock()
	h.failed = append(h.failed, err)
	h.mu.Unlock()
}

func (h *relay) MarkRx(p *Port, bl Backlogger, bs []*Buf) {
	h.mu.Lock()
	h.markedRx += len(bs)
	h.mu.Unlock()
}

func (h *relay) MarkTx(p *Port, batch []*Buf, below int) {
	h.mu.Lock()
	h.markedTx += len(batch)
	h.mu.Unlock()
}

func (h *relay) Keepalive(p *Port) {
	h.mu.Lock()
	h.keepalives++
	h.mu.Unlock()
}

func (h *relay) snapshot() relay {
	h.mu.Lock()
	defer h.mu.Unlock()
	return relay{failed: append([]error(nil), h.failed...), keepalives: h.keepalives, markedRx: h.markedRx, markedTx: h.markedTx, noSpare: h.noSpare}
}

var _ Host = (*relay)(nil)

func newPort(t *testing.T, id int, f flow.Port) *Port {
	t.Helper()
	s, err := NewScheduler[*Buf](SchedConfig{QueueLen: 256})
	if err != nil {
		t.Fatal(err)
	}
	return NewPort(pff.Port(id), layer.Addr(id), fmt.Sprintf("n%d", id), f, s)
}

// free reports how many of the pool's buffers are on its free list.
func free(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// TestLoopsRelay runs a receive loop on one port and a transmit loop on
// another, with a Host that forwards everything from the first to the
// second: every packet comes out byte for byte and in order, the ports
// count them, the marks see each one, and once the ports are gone every
// buffer is back in the pool. Over batch ports (rxBatch, writeBatch) and
// plain ones.
func TestLoopsRelay(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(map[bool]string{true: "batch", false: "plain"}[batch], func(t *testing.T) {
			const pkts = 500
			inW, inR := flowtest.Pipe(64)
			outW, outR := flowtest.Pipe(64)
			var rxf, txf flow.Port = inR, outW
			if !batch {
				rxf, txf = plain{inR}, plain{outW}
			}
			in, out := newPort(t, 1, rxf), newPort(t, 2, txf)
			var allocs, truncated, txErrors atomic.Uint64
			pool := NewPool(1024, nil, &allocs) // more than the loops and queue can hold: nothing is dropped
			h := &relay{to: out}
			l := &Loops{Pool: pool, Host: h, KeepAlive: time.Hour, Truncated: &truncated, TxErrors: &txErrors}
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); l.Rx(in) }()
			go func() { defer wg.Done(); l.Tx(out) }()

			want := make([][]byte, pkts)
			var nb uint64
			for i := range want {
				pkt := make([]byte, PCILen+1+i%200)
				if _, ok := Prepend(pkt, PCILen, Fields{Dst: 2, Cube: flow.Cube(i % int(flow.NumCubes)), TTL: 9, EID: layer.EID(100 + i)}); !ok {
					t.Fatal("Prepend refused a PCI's headroom")
				}
				pkt[PCILen] = byte(i)
				want[i] = pkt
				nb += uint64(len(pkt))
			}
			errc := make(chan error, 1)
			go func() {
				for _, p := range want {
					if err := inW.Write(p, time.Now().Add(5*time.Second)); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			buf := make([]byte, flow.MaxSDU)
			var got [flow.NumCubes][][]byte
			for i := range pkts {
				n, err := outR.Read(buf, time.Now().Add(5*time.Second))
				if err != nil {
					t.Fatalf("read after %d packets: %v (host: %+v; rx %d, tx %d)", i, err, h.snapshot(), in.RxPkts.Load(), out.TxPkts.Load())
				}
				c := PCI(buf[:n]).Cube()
				got[c] = append(got[c], append([]byte(nil), buf[:n]...))
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			// Each cube is a FIFO: order holds within a cube.
			var next [flow.NumCubes]int
			for i, p := range want {
				c := PCI(p).Cube()
				if next[c] >= len(got[c]) || !bytes.Equal(got[c][next[c]], p) {
					t.Fatalf("packet %d (cube %d) did not come out byte for byte, in order", i, c)
				}
				next[c]++
			}
			// The adjacency goes: the flow breaks under the receive
			// loop, the transmit loop's port is closed.
			inW.Close()
			out.Close()
			wg.Wait()
			// A port counts a packet after its write returns: counted
			// once the loops ended.
			if in.RxPkts.Load() != pkts || in.RxBytes.Load() != nb || out.TxPkts.Load() != pkts || out.TxBytes.Load() != nb {
				t.Errorf("counted rx %d pkts %d bytes, tx %d pkts %d bytes; want %d and %d each",
					in.RxPkts.Load(), in.RxBytes.Load(), out.TxPkts.Load(), out.TxBytes.Load(), pkts, nb)
			}
			s := h.snapshot()
			if s.markedRx != pkts || s.markedTx != pkts {
				t.Errorf("marks saw %d received and %d sent, want %d each", s.markedRx, s.markedTx, pkts)
			}
			if len(s.failed) != 1 || !errors.Is(s.failed[0], flow.ErrClosed) {
				t.Errorf("Fail called with %v, want once with flow.ErrClosed", s.failed)
			}
			if s.noSpare != 0 || txErrors.Load() != 0 || truncated.Load() != 0 {
				t.Errorf("no spare %d, tx errors %d, truncated %d; want none", s.noSpare, txErrors.Load(), truncated.Load())
			}
			if f, made := free(pool), int(allocs.Load()); f != made || made == 0 {
				t.Errorf("%d buffers free of %d made after the loops ended, want all back", f, made)
			}
		})
	}
}

// TestLoopsTxKeepalive: a transmit loop that writes nothing for a
// KeepAlive period asks for a keepalive; one that writes does not.
func TestLoopsTxKeepalive(t *testing.T) {
	w, r := flowtest.Pipe(64)
	defer r.Close()
	np := newPort(t, 1, w)
	var allocs, txErrors atomic.Uint64
	pool := NewPool(8, nil, &allocs)
	h := &relay{}
	l := &Loops{Pool: pool, Host: h, KeepAlive: 20 * time.Millisecond, TxErrors: &txErrors}
	done := make(chan struct{})
	go func() { defer close(done); l.Tx(np) }()
	deadline := time.Now().Add(5 * time.Second)
	for h.snapshot().keepalives < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no keepalives from an idle transmit loop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	np.Close()
	<-done
}

// TestLoopsTxDrain: packets still queued when the port is closed go
// back to the pool; the transmit loop ends.
func TestLoopsTxDrain(t *testing.T) {
	w, r := flowtest.Pipe(64)
	defer r.Close()
	var allocs, txErrors atomic.Uint64
	pool := NewPool(8, nil, &allocs)
	np := newPort(t, 1, w)
	l := &Loops{Pool: pool, Host: &relay{}, KeepAlive: time.Hour, TxErrors: &txErrors}
	done := make(chan struct{})
	go func() { defer close(done); l.Tx(np) }()
	time.Sleep(20 * time.Millisecond) // the loop finds its queue empty and waits
	var bs [8]*Buf
	if n := pool.Get(bs[:]); n != 8 {
		t.Fatalf("got %d buffers of 8", n)
	}
	for _, b := range bs {
		b.Off, b.End = 0, PCILen
		if !np.Sched.Enqueue(0, b) {
			t.Fatal("queue full")
		}
	}
	np.Close() // without a Wake: the loop sees the port closed, not the packets
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the transmit loop did not end after its port was closed")
	}
	if f := free(pool); f != 8 {
		t.Errorf("%d of 8 buffers back in the pool, want 8", f)
	}
	if np.TxPkts.Load() != 0 {
		t.Errorf("%d packets written after the port was closed, want 0", np.TxPkts.Load())
	}
}

// TestKicksFlush: deferred packets are queued per next hop at Flush, in
// arrival order; those a full queue refuses go back to the pool; the
// zero Kicks defers nothing; a transmit loop that waits (it dequeued
// nothing) is woken once, one that runs is not.
func TestKicksFlush(t *testing.T) {
	var allocs atomic.Uint64
	pool := NewPool(16, nil, &allocs)
	s, err := NewScheduler[*Buf](SchedConfig{QueueLen: 3})
	if err != nil {
		t.Fatal(err)
	}
	a := NewPort(1, 1, "a", nil, s)
	b := newPort(t, 2, nil)
	var bs [6]*Buf
	if n := pool.Get(bs[:]); n != 6 {
		t.Fatalf("got %d buffers of 6", n)
	}
	var zero Kicks
	if zero.Defer(a, bs[0], 0) {
		t.Fatal("the zero Kicks deferred a packet")
	}
	var out [4]*Buf
	if n := a.Sched.DequeueBatch(out[:]); n != 0 { // as a's loop does before it waits
		t.Fatalf("dequeued %d from an empty queue", n)
	}
	k := Kicks{pool: pool}
	for i, x := range bs[:5] { // 5 for a (queue of 3), 1 for b
		if !k.Defer(a, x, 0) {
			t.Fatalf("Defer %d refused", i)
		}
	}
	if !k.Defer(b, bs[5], 0) {
		t.Fatal("Defer for b refused")
	}
	if a.Sched.Len(0) != 0 {
		t.Fatal("a deferred packet was queued before Flush")
	}
	if r := k.Flush(); r != 2 {
		t.Errorf("Flush reported %d refused, want the 2 beyond a's queue", r)
	}
	if a.Sched.Len(0) != 3 || b.Sched.Len(0) != 1 {
		t.Fatalf("queued %d for a (want 3, its length) and %d for b (want 1)", a.Sched.Len(0), b.Sched.Len(0))
	}
	select {
	case <-a.kick:
	default:
		t.Error("Flush did not wake a's transmit loop, which waited")
	}
	select {
	case <-b.kick:
		t.Error("Flush woke b's transmit loop, which never waited (its first dequeue is still to come)")
	default:
	}
	if n := a.Sched.DequeueBatch(out[:]); n != 3 || out[0] != bs[0] || out[1] != bs[1] || out[2] != bs[2] {
		t.Errorf("a's queue holds %d, not the first three in order", n)
	}
	if f := free(pool); f != 2 {
		t.Errorf("%d buffers back in the pool, want the 2 a's queue refused", f)
	}
	// a's loop is running (its dequeue returned packets): more for it
	// need no wake-up.
	pool.Put(out[:1])
	x := pool.GetOne()
	if !k.Defer(a, x, 0) {
		t.Fatal("Defer refused")
	}
	if r := k.Flush(); r != 0 {
		t.Errorf("Flush reported %d refused of one that fitted", r)
	}
	select {
	case <-a.kick:
		t.Error("Flush woke a's transmit loop, which was running")
	default:
	}
	// Add still wakes at Flush, waiting or not.
	k.Add(a)
	k.Flush()
	select {
	case <-a.kick:
	default:
		t.Error("Flush did not wake a loop noted by Add")
	}
}

// TestTxWakeNotLost races packets queued one at a time (Port.Queue, and
// Kicks) against the transmit loop parking: every packet must be sent
// without waiting for the keepalive period, though only the first
// packet after each time the loop parks wakes it.
func TestTxWakeNotLost(t *testing.T) {
	for _, viaKicks := range []bool{false, true} {
		t.Run(map[bool]string{false: "Queue", true: "Kicks"}[viaKicks], func(t *testing.T) {
			const pkts = 3000
			outW, outR := flowtest.Pipe(64)
			out := newPort(t, 2, outW)
			var allocs, truncated, txErrors atomic.Uint64
			pool := NewPool(64, nil, &allocs)
			l := &Loops{Pool: pool, Host: &relay{}, KeepAlive: time.Hour, Truncated: &truncated, TxErrors: &txErrors}
			done := make(chan struct{})
			go func() { defer close(done); l.Tx(out) }()
			defer func() { out.Close(); <-done }()
			buf := make([]byte, flow.MaxSDU)
			k := Kicks{pool: pool}
			for i := range pkts {
				b := pool.GetOne()
				if b == nil {
					t.Fatal("no buffer: the loop did not free what it sent")
				}
				b.Off, b.End = 0, PCILen
				if viaKicks {
					if !k.Defer(out, b, 0) {
						t.Fatal("Defer refused")
					}
					k.Flush()
				} else if !out.Queue(0, b, nil) {
					t.Fatal("queue full")
				}
				if i%3 == 0 {
					runtime.Gosched() // vary where the loop is when the next one comes
				}
				if i%2 == 0 {
					continue
				}
				for range 2 { // two at a time: the loop parks between and after
					if _, err := outR.Read(buf, time.Now().Add(5*time.Second)); err != nil {
						t.Fatalf("packet %d not sent: %v (a wake-up lost)", i, err)
					}
				}
			}
		})
	}
}

// TestLoopsRxNoBuf: with fewer buffers than a burst needs, the receive
// loop keeps reading and what it cannot pass on is dropped (the Host
// finds no spare), instead of the pool growing past its limit or the
// loop stalling: every packet is either sent or dropped.
func TestLoopsRxNoBuf(t *testing.T) {
	const pkts, limit = 2000, 40
	inW, inR := flowtest.Pipe(256)
	outW, outR := flowtest.Pipe(256)
	in, out := newPort(t, 1, inR), newPort(t, 2, outW)
	var allocs, truncated, txErrors atomic.Uint64
	pool := NewPool(limit, nil, &allocs)
	h := &relay{to: out}
	l := &Loops{Pool: pool, Host: h, KeepAlive: time.Hour, Truncated: &truncated, TxErrors: &txErrors}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); l.Rx(in) }()
	go func() { defer wg.Done(); l.Tx(out) }()
	go func() { // the far end reads everything until its pipe closes
		defer wg.Done()
		buf := make([]byte, flow.MaxSDU)
		for {
			if _, err := outR.Read(buf, time.Time{}); err != nil {
				return
			}
		}
	}()
	pkt := make([]byte, PCILen+100)
	if _, ok := Prepend(pkt, PCILen, Fields{Dst: 2, TTL: 9, EID: 100}); !ok {
		t.Fatal("Prepend refused a PCI's headroom")
	}
	for i := range pkts {
		if err := inW.Write(pkt, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for out.TxPkts.Load()+uint64(h.snapshot().noSpare) != pkts {
		if allocs.Load() > limit {
			t.Fatalf("%d buffers made, limit %d", allocs.Load(), limit)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sent and %d dropped of %d (rx %d)", out.TxPkts.Load(), h.snapshot().noSpare, pkts, in.RxPkts.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if allocs.Load() > limit {
		t.Errorf("%d buffers made, limit %d", allocs.Load(), limit)
	}
	if in.RxPkts.Load() != pkts {
		t.Errorf("read %d of %d", in.RxPkts.Load(), pkts)
	}
	t.Logf("%d sent, %d dropped for want of a buffer", out.TxPkts.Load(), h.snapshot().noSpare)
	inW.Close()
	out.Close()
	outR.Close()
	wg.Wait()
	if f := free(pool); f != int(allocs.Load()) {
		t.Errorf("%d buffers free of %d made after the loops ended, want all back", f, allocs.Load())
	}
}

// TestSpaceAtLength: the transmit loop's dequeue tells the node's own
// waiting senders of room (Port.Space) while a cube's queue is at or past
// its length, where TryQueue refuses them, though the room beyond it for
// forwarded packets is not full; not once it is below.
func TestSpaceAtLength(t *testing.T) {
	s, err := NewScheduler[int](SchedConfig{QueueLen: 4, Room: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		s.Enqueue(flow.CubeData, i)
	}
	var one [1]int
	for _, want := range []bool{true, true, true, false} { // at 6, 5, 4, then 3
		if _, full := s.dequeueBatch(one[:]); full != want {
			t.Fatalf("dequeue at %d queued: full %v, want %v", s.Len(flow.CubeData)+1, full, want)
		}
	}
}
