package dt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/kerneltest"
	"github.com/ouronet/ouro/layer"
)

// kport is a BufPort over kernel rings of one component, as the node's
// ring ports are (images/internal/irm.RingPort, which this package
// cannot import): it pops from rx and pushes into tx. Its flow.Port
// calls are the few the loops use besides.
type kport struct {
	pd     *kernel.PD
	rx, tx kernel.Cap
	ctx    context.Context
}

func (p *kport) PopBufs(bufs []*kernel.Buf, _ time.Time) (int, error) {
	n, err := p.pd.PopWait(p.ctx, p.rx, bufs)
	if n == 0 {
		return 0, errors.Join(flow.ErrClosed, err)
	}
	return n, nil
}

func (p *kport) PushBufs(bufs []*kernel.Buf, _ time.Time) (int, error) {
	n, err := p.pd.PushWait(p.ctx, p.tx, bufs)
	if n == 0 {
		return 0, errors.Join(flow.ErrClosed, err)
	}
	return n, nil
}

func (p *kport) FreeBufs(bufs []*kernel.Buf)                 { p.pd.FreeBufs(bufs) }
func (p *kport) Read([]byte, time.Time) (int, error)         { return 0, errors.ErrUnsupported }
func (p *kport) Write([]byte, time.Time) error               { return errors.ErrUnsupported }
func (p *kport) Close() error                                { return nil }
func (p *kport) WriteBatch([][]byte, time.Time) (int, error) { return 0, errors.ErrUnsupported }
func (p *kport) ReadBatch([][]byte, []int, time.Time) (int, error) {
	return 0, errors.ErrUnsupported
}

var _ BufPort = (*kport)(nil)

// bootPD boots a kernel with one component of bufs buffers and returns
// its PD.
func bootPD(t *testing.T, bufs int) *kernel.PD {
	t.Helper()
	return kerneltest.PD(t, "ipcp", kernel.Budget{Bufs: bufs, Objects: 1 << 10})
}

// dropper forwards what relay forwards but drops every packet whose
// payload's first byte is odd: those go back to the node.
type dropper struct{ relay }

func (h *dropper) Input(b *Buf, k *Kicks, sp *Spares) *Buf {
	if b.Pkt()[PCILen]%2 == 1 {
		return nil
	}
	return h.relay.Input(b, k, sp)
}

// TestLoopsForwardBuffers: over BufPorts (the node's ring ports) a
// forwarded packet leaves in the very buffer it came in, not a copy of
// it (the buffers popped at the far end are the ones pushed at the
// near one), byte for byte; a packet the host drops goes back to the
// node; the pool makes none of its own buffers; and once everything is
// through, the component's whole budget is free again.
func TestLoopsForwardBuffers(t *testing.T) {
	const budget, pkts = 512, 400
	pd := bootPD(t, budget)
	ring := func() kernel.Cap {
		r, err := pd.NewRing(64)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	inRing, outRing := ring(), ring()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := newPort(t, 1, &kport{pd: pd, rx: inRing, ctx: ctx})
	out := newPort(t, 2, &kport{pd: pd, tx: outRing, ctx: ctx})
	var allocs, truncated, txErrors atomic.Uint64
	pool := NewPool(64, nil, &allocs)
	h := &dropper{relay{to: out}}
	l := &Loops{Pool: pool, Host: h, KeepAlive: time.Hour, Truncated: &truncated, TxErrors: &txErrors}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.Rx(in) }()
	go func() { defer wg.Done(); l.Tx(out) }()

	sent := map[*kernel.Buf][]byte{}
	var mu sync.Mutex
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < pkts; {
			var b [16]*kernel.Buf
			n, err := pd.AllocBufs(b[:min(16, pkts-i)])
			if n == 0 {
				errc <- err
				return
			}
			for j, x := range b[:n] {
				x.Reset()
				p := x.Extend(PCILen + 1 + (i+j)%300)
				Prepend(p, PCILen, Fields{Dst: 2, Cube: flow.Cube(3), TTL: 9, EID: layer.EID(100 + i + j)})
				p[PCILen] = byte(i + j)
				if (i+j)%2 == 0 {
					mu.Lock()
					sent[x] = bytes.Clone(p)
					mu.Unlock()
				}
			}
			for pushed := 0; pushed < n; {
				m, err := pd.PushWait(ctx, inRing, b[pushed:n])
				if m == 0 {
					errc <- err
					return
				}
				pushed += m
			}
			i += n
		}
		errc <- nil
	}()
	var got [32]*kernel.Buf
	for recv := 0; recv < pkts/2; {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := pd.PopWait(pctx, outRing, got[:])
		pcancel()
		if n == 0 {
			t.Fatalf("after %d packets: %v (host %+v)", recv, err, h.snapshot())
		}
		for _, x := range got[:n] {
			mu.Lock()
			want, ok := sent[x]
			delete(sent, x)
			mu.Unlock()
			if !ok {
				t.Fatalf("packet %d came out in a buffer the sender never pushed: a copy", recv)
			}
			if !bytes.Equal(x.Bytes(), want) {
				t.Fatalf("packet %d changed on the way", recv)
			}
		}
		pd.FreeBufs(got[:n])
		recv += n
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	cancel() // the receive loop's pop fails: it ends; so does the transmit loop
	out.Close()
	wg.Wait()
	if allocs.Load() != 0 {
		t.Errorf("the pool made %d buffers of its own, want none", allocs.Load())
	}
	if in.RxPkts.Load() != pkts || out.TxPkts.Load() != pkts/2 || txErrors.Load() != 0 {
		t.Errorf("rx %d, tx %d, tx errors %d; want %d, %d, 0", in.RxPkts.Load(), out.TxPkts.Load(), txErrors.Load(), pkts, pkts/2)
	}
	// Every buffer is back: the whole budget can be drawn at once.
	all := make([]*kernel.Buf, budget)
	if n, err := pd.AllocBufs(all); n != budget {
		t.Fatalf("after the run %d of the budget's %d buffers could be drawn (%v): some were kept", n, budget, err)
	}
	pd.FreeBufs(all)
}

// TestLoopsForwardBuffersZeroAllocs: forwarding in the node's buffers
// allocates nothing per packet (shells are kept, the pool's scratch for
// freeing is its own).
func TestLoopsForwardBuffersZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIP: the race detector allocates")
	}
	pd := bootPD(t, 512)
	inRing, err := pd.NewRing(64)
	if err != nil {
		t.Fatal(err)
	}
	outRing, err := pd.NewRing(64)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := newPort(t, 1, &kport{pd: pd, rx: inRing, ctx: ctx})
	out := newPort(t, 2, &kport{pd: pd, tx: outRing, ctx: ctx})
	var allocs, truncated, txErrors atomic.Uint64
	l := &Loops{Pool: NewPool(64, nil, &allocs), Host: &dropper{relay{to: out}}, KeepAlive: time.Hour, Truncated: &truncated, TxErrors: &txErrors}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.Rx(in) }()
	go func() { defer wg.Done(); l.Tx(out) }()
	defer func() { cancel(); out.Close(); wg.Wait() }()

	var b, got [16]*kernel.Buf
	// run sends n packets (every one even: all forwarded) 16 at a time
	// and takes them at the far end.
	run := func(n int) {
		for i := 0; i < n; i += len(b) {
			k, _ := pd.AllocBufs(b[:])
			for _, x := range b[:k] {
				x.Reset()
				p := x.Extend(PCILen + 100)
				Prepend(p, PCILen, Fields{Dst: 2, Cube: flow.Cube(3), TTL: 9, EID: 100})
				p[PCILen] = 0
			}
			for pushed := 0; pushed < k; {
				m, _ := pd.PushWait(ctx, inRing, b[pushed:k])
				pushed += m
			}
			for recv := 0; recv < k; {
				m, _ := pd.PopWait(ctx, outRing, got[:])
				pd.FreeBufs(got[:m])
				recv += m
			}
		}
	}
	run(512) // warm: shells, queues, the scheduler's rings
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 4096
	run(n)
	runtime.ReadMemStats(&after)
	if per := float64(after.Mallocs-before.Mallocs) / n; per > 0.05 {
		t.Errorf("%.3f allocations per forwarded packet, want 0", per)
	}
}

// TestRuns: a batch is split into runs of packets all in the node's
// buffers or all in the pool's own, in order, none empty.
func TestRuns(t *testing.T) {
	k := kernel.NewBuf(0)
	held, own := &Buf{K: k}, &Buf{}
	var got []string
	Runs([]*Buf{held, held, own, held, own, own}, func(run []*Buf, h bool) {
		got = append(got, fmt.Sprintf("%d%v", len(run), h))
	})
	if want := []string{"2true", "1false", "1true", "2false"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("runs %v, want %v", got, want)
	}
	Runs(nil, func([]*Buf, bool) { t.Error("a run of an empty batch") })
}

// TestReleaseCarries: a shell gives its node buffer back with the
// packet's window and its Mark (the level a delivered packet arrived
// with, which the reader of the N+1 flow's ring learns).
func TestReleaseCarries(t *testing.T) {
	k := kernel.NewBuf(0)
	copy(k.Extend(10), "0123456789")
	var b Buf
	b.Hold(k)
	b.Off, b.Mark = b.Off+2, 9
	if got := b.Release(); got != k || string(got.Bytes()) != "23456789" || got.Mark() != 9 || b.K != nil {
		t.Fatalf("released %p (window %q, mark %d), shell holds %p; want %p, \"23456789\", 9, none", got, got.Bytes(), got.Mark(), b.K, k)
	}
}
