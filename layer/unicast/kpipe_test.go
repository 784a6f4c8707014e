package unicast_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/kerneltest"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dt"
)

// kpipes makes pipes over kernel rings of one component, as a node's ring
// ports are (images/internal/irm.RingPort, which this package cannot
// import): each end a dt.BufPort, so a unicast IPCP reads its N-1 flows
// into the node's buffers and delivers in them, and a flow.Port for the
// rest. An end whose PopBufs reads PDUs can raise the ECN of each data
// packet to level on the way, as a congested forwarder in front of it
// would have.
type kpipes struct {
	pd    *kernel.PD
	level atomic.Uint32 // the ECN written into data packets popped from the ends that mark
}

// kend is one end of a kpipe.
type kend struct {
	ps     *kpipes
	rx, tx kernel.Cap
	plain  atomic.Bool // an N+1 end: its SDUs carry no PCI to mark
}

var _ dt.BufPort = (*kend)(nil)

// pipe returns two connected ends, each direction a ring of capacity.
func (ps *kpipes) pipe(capacity int) (a, b flow.Port) {
	ring := func() kernel.Cap {
		r, err := ps.pd.NewRing(capacity)
		if err != nil {
			panic(fmt.Sprintf("kpipe: ring: %v", err))
		}
		return r
	}
	ab, ba := ring(), ring()
	return &kend{ps: ps, rx: ba, tx: ab}, &kend{ps: ps, rx: ab, tx: ba}
}

func kernErr(err error, deadline time.Time) error {
	if errors.Is(err, context.DeadlineExceeded) || (!deadline.IsZero() && time.Now().After(deadline)) {
		return flow.ErrTimeout
	}
	return errors.Join(flow.ErrClosed, err)
}

func ctxFor(deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(context.Background())
	}
	return context.WithDeadline(context.Background(), deadline)
}

func (e *kend) PopBufs(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	ctx, cancel := ctxFor(deadline)
	defer cancel()
	n, err := e.ps.pd.PopWait(ctx, e.rx, bufs)
	if n == 0 {
		return 0, kernErr(err, deadline)
	}
	if lvl := uint8(e.ps.level.Load()); lvl != 0 && !e.plain.Load() {
		for _, b := range bufs[:n] {
			if pci := dt.PCI(b.Bytes()); pci.IsValid() && pci.EID() > unicast.MaxReservedEID {
				pci.SetECN(lvl)
			}
		}
	}
	return n, nil
}

func (e *kend) PushBufs(bufs []*kernel.Buf, deadline time.Time) (int, error) {
	ctx, cancel := ctxFor(deadline)
	defer cancel()
	n, err := e.ps.pd.PushWait(ctx, e.tx, bufs)
	if n == 0 {
		return 0, kernErr(err, deadline)
	}
	return n, nil
}

func (e *kend) FreeBufs(bufs []*kernel.Buf) { e.ps.pd.FreeBufs(bufs) }

func (e *kend) Read(p []byte, deadline time.Time) (int, error) {
	var b [1]*kernel.Buf
	if _, err := e.PopBufs(b[:], deadline); err != nil {
		return 0, err
	}
	defer e.ps.pd.FreeBuf(b[0])
	n := copy(p, b[0].Bytes())
	if n < len(b[0].Bytes()) {
		return n, flow.ErrTruncated
	}
	return n, nil
}

func (e *kend) Write(p []byte, deadline time.Time) error {
	return e.WriteMarked(p, 0, deadline)
}

// WriteMarked is irm.RingPort's: Write with mark on the buffer.
func (e *kend) WriteMarked(p []byte, mark uint8, deadline time.Time) error {
	if len(p) > flow.MaxSDU {
		return flow.ErrTooBig
	}
	k, err := e.ps.pd.AllocBuf()
	if err != nil {
		return errors.Join(flow.ErrBusy, err)
	}
	k.Reset()
	copy(k.Extend(len(p)), p)
	k.SetMark(mark)
	b := [1]*kernel.Buf{k}
	if _, err := e.PushBufs(b[:], deadline); err != nil {
		e.ps.pd.FreeBuf(k)
		return err
	}
	return nil
}

// Close closes both rings: a blocked reader or writer at either end
// wakes with ErrClosed.
func (e *kend) Close() error {
	_ = e.ps.pd.CloseRing(e.tx)
	_ = e.ps.pd.CloseRing(e.rx)
	return nil
}

// TestDeliverCarriesMark: a unicast layer delivering a packet in the
// node's buffer leaves on that buffer the congestion level the packet
// arrived with (kernel.Buf.Mark), which the node's ring port hands the
// program or bridge reading the flow (irm.RingPort.ReadMarked; an IP
// bridge maps it to CE, flow/ipnet). Two IPCPs over kernel-ring pipes,
// the receiver's N-1 end raising every data packet's ECN as a congested
// forwarder would: the SDUs popped from the flow at the receiver carry
// that level, and, with nothing raising it, none. Without the delivery
// setting it (dt.Buf.Mark in deliver), every mark is 0. An SDU that
// arrives before the receiver's delivery loop started is written at once
// and carries its level too (WriteMarked): under load in CI the first 24
// did, and lost it while that write was a plain Write.
func TestDeliverCarriesMark(t *testing.T) {
	ps := &kpipes{pd: kerneltest.PD(t, "ipcps", kernel.Budget{Bufs: 1 << 14, Objects: 1 << 12})}
	a, z, _ := chainOver(t, 2, "nop", ps.pipe)
	a.(*kend).plain.Store(true)
	z.(*kend).plain.Store(true)
	zb := z.(*kend)
	send := func(level uint8, n int) {
		t.Helper()
		ps.level.Store(uint32(level))
		for i := range n {
			msg := []byte(fmt.Sprintf("sdu %d at level %d", i, level))
			if err := a.Write(msg, time.Now().Add(2*time.Second)); err != nil {
				t.Fatal(err)
			}
			var got [1]*kernel.Buf
			if _, err := zb.PopBufs(got[:], time.Now().Add(2*time.Second)); err != nil {
				t.Fatalf("SDU %d at level %d: %v", i, level, err)
			}
			if !bytes.Equal(got[0].Bytes(), msg) {
				t.Fatalf("SDU %d: %q, want %q", i, got[0].Bytes(), msg)
			}
			if m := got[0].Mark(); m != level {
				t.Errorf("SDU %d arrived at level %d, delivered with mark %d", i, level, m)
			}
			zb.FreeBufs(got[:])
		}
	}
	send(0, 10)
	send(77, 20)
	send(255, 5)
	send(0, 5)
}

// TestDeliverMarksSlowReader: with congestion avoidance on, a delivered
// buffer carries the level of the queue in front of the program it
// joined where that is higher than the level it arrived with: a program
// (an IP bridge) that stops reading while SDUs keep arriving gets its
// later SDUs marked, though nothing on the way marked them. Before, the
// buffer carried only the arrival level, and a bridge whose own reading
// fell behind never signalled its hosts' TCP (TestIPNet: 1,062 SDUs
// standing in front of a bridge, no mark).
func TestDeliverMarksSlowReader(t *testing.T) {
	ps := &kpipes{pd: kerneltest.PD(t, "ipcps", kernel.Budget{Bufs: 1 << 14, Objects: 1 << 12})}
	a, z, _ := chainOver(t, 2, "mb-ecn", ps.pipe)
	zb := z.(*kend)
	msg := make([]byte, 100)
	const first, later = 1500, 100
	write := func(n int) {
		t.Helper()
		for i := range n {
			if err := a.Write(msg, time.Now().Add(5*time.Second)); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
	}
	// The program reads nothing: what arrives stands in its ring and
	// the flow's delivery queue, for several of the layer's intervals.
	write(first)
	time.Sleep(100 * time.Millisecond)
	write(later)
	time.Sleep(100 * time.Millisecond)
	var got [64]*kernel.Buf
	read, marked, lastMarked := 0, 0, 0
	for read < first+later {
		n, err := zb.PopBufs(got[:], time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("after %d SDUs: %v", read, err)
		}
		for _, k := range got[:n] {
			if k.Mark() > 0 {
				marked++
				if read >= first {
					lastMarked++
				}
			}
			read++
		}
		zb.FreeBufs(got[:n])
	}
	t.Logf("%d of %d SDUs delivered marked, %d of the last %d", marked, read, lastMarked, later)
	if lastMarked == 0 {
		t.Errorf("none of the %d SDUs that joined a queue of %d standing for 100 ms carries a mark", later, first)
	}
}
