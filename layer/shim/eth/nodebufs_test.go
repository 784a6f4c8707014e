package eth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/kerneltest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/eth/ethtest"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// oneByOne makes a Device a BatchDevice whose batches are of one frame:
// the receive loop then reads into the node's buffers, as it does from a
// hosted AF_PACKET socket.
type oneByOne struct{ Device }

func (d oneByOne) NewFrameBatch(int) FrameBatch { return oneBatch{d.Device} }

type oneBatch struct{ d Device }

func (b oneBatch) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	n, err := b.d.ReadFrame(bufs[0])
	if err != nil {
		return 0, err
	}
	lens[0] = n
	return 1, nil
}

func (b oneBatch) WriteFrames(frames [][]byte) (int, error) {
	for i, f := range frames {
		if err := b.d.WriteFrame(f); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}

// bufPort is an accepted flow's port that takes the node's buffers
// (engine.BufPort), as the node's ring ports do: it keeps what it is
// pushed and counts the SDUs that came the copying way instead.
type bufPort struct {
	flow.Port
	pd     *kernel.PD
	mu     sync.Mutex
	pushed []*kernel.Buf
	room   int // how many it takes in all
	copied int
}

func (p *bufPort) PushBufs(bufs []*kernel.Buf, _ time.Time) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(len(bufs), p.room-len(p.pushed))
	if n == 0 {
		return 0, fmt.Errorf("full: %w", flow.ErrBusy)
	}
	p.pushed = append(p.pushed, bufs[:n]...)
	clear(bufs[:n])
	return n, nil
}

func (p *bufPort) Write(b []byte, deadline time.Time) error {
	p.mu.Lock()
	p.copied++
	p.mu.Unlock()
	return p.Port.Write(b, deadline)
}

// bufUpcalls accepts flows with bufPorts.
type bufUpcalls struct {
	*ipcptest.Upcalls
	pd    *kernel.PD
	room  int
	ports chan *bufPort
}

func (u *bufUpcalls) FlowReq(ctx context.Context, req ipcp.AllocReq) (flow.Port, error) {
	_, mine := flowtest.Pipe(64)
	p := &bufPort{Port: mine, pd: u.pd, room: u.room}
	u.ports <- p
	return p, nil
}

// TestRxNodeBuffers: a shim given the node's buffers (Config.Bufs)
// receives frames into them and hands each SDU on in the buffer it
// arrived in to a port that takes buffers (a sealed flow's opened in
// place): the port gets buffers whose windows are the SDUs sent, in
// order, and no SDU the copying way (the behaviour before: every SDU came
// through Write). What the port does not take is dropped, counted, and
// given back: once the shim stops and the port frees what it holds, the
// component holds no buffer.
func TestRxNodeBuffers(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) { rxNodeBuffers(t, sealed) })
	}
}

func rxNodeBuffers(t *testing.T, sealed bool) {
	pd := kerneltest.PD(t, "eth", kernel.Budget{Bufs: 256})
	da, db := ethtest.NewPair()
	cfg := Config{Runner: layertest.Runner{}, Layer: "eth.test", Name: "b", Device: oneByOne{db}, Bufs: pd,
		QueryTimeout: 300 * time.Millisecond, RetryBase: 5 * time.Millisecond}
	var a *node
	if sealed {
		a, _ = sealedNode(t, "a", 1, da, impair.Config{})
		id, err := identity.FromSeed(bytes.Repeat([]byte{2}, 32))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Signer = boardSigner{id, "b"}
	} else {
		a = start(t, "a", da, impair.Config{})
	}
	const room = 40
	up := &bufUpcalls{Upcalls: ipcptest.NewUpcalls(4), pd: pd, room: room, ports: make(chan *bufPort, 1)}
	bp, err := New(cfg, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := bp.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			bp.Stop()
		}
	}
	t.Cleanup(stop)
	if err := bp.Register(context.Background(), "srv"); err != nil {
		t.Fatal(err)
	}
	app, ipcpEnd := flowtest.Pipe(256)
	defer app.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q := flow.BestEffort()
	q.Sealed = sealed
	if err := a.ipcp.Alloc(ctx, ipcp.AllocReq{ID: 1, Dst: "srv", QoS: q}, ipcpEnd); err != nil {
		t.Fatal(err)
	}
	port := <-up.ports
	const sent = 50 // more than the port takes
	sdu := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100+i*20) }
	for i := range sent {
		if err := app.Write(sdu(i), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		c := &bp.eng.C
		return c.PacketsIn.Load()+c.RxFull.Load() == sent
	})
	port.mu.Lock()
	pushed, copied := len(port.pushed), port.copied
	for i, k := range port.pushed {
		if !bytes.Equal(k.Bytes(), sdu(i)) {
			t.Errorf("buffer %d holds %d bytes %.8x, want SDU %d (%d bytes)", i, k.Len(), k.Bytes(), i, len(sdu(i)))
		}
	}
	port.mu.Unlock()
	if pushed != room || copied != 0 {
		t.Fatalf("the port took %d SDUs in the node's buffers and %d copied; want %d and 0", pushed, copied, room)
	}
	if got := bp.eng.C.RxFull.Load(); got != sent-room {
		t.Errorf("rx_full = %d, want %d", got, sent-room)
	}
	if got := bp.eng.C.PacketsIn.Load(); got != room {
		t.Errorf("packets_in = %d, want %d", got, room)
	}
	stop()
	pd.FreeBufs(port.pushed)
	if u := pd.Budget().Bufs; u != 0 {
		t.Fatalf("the component still holds %d buffers after the shim stopped", u)
	}
}

// TestRxBatchBufsAllocs: handing a run on in the node's buffers
// allocates nothing.
func TestRxBatchBufsAllocs(t *testing.T) {
	pd := kerneltest.PD(t, "eth", kernel.Budget{Bufs: 64})
	da, db := ethtest.NewPair()
	a, b := pairOn(t, da, db, impair.Config{})
	s := &sink{closed: make(chan struct{})}
	defer s.Close()
	p := &takeAll{Port: s, pd: pd}
	if err := a.ipcp.Alloc(context.Background(), ipcp.AllocReq{Dst: "srv"}, p); err != nil {
		t.Fatal(err)
	}
	acc := <-b.up.Accepted
	defer acc.Port.Close()
	fi := a.ipcp.Flows()[0]
	rb := a.ipcp.eng.NewRxBatch(rxBatch)
	rb.SetFreer(pd.FreeBufs)
	ks := make([]*kernel.Buf, 1)
	frame := rawFrame(a.ipcp.MAC(), b.ipcp.MAC(), uint16(fi.LocalEID), make([]byte, 1400))
	allocs := testing.AllocsPerRun(1000, func() {
		if n, err := pd.AllocBufs(ks); n != 1 {
			t.Fatal(err)
		}
		data, _, _ := ks[0].Data()
		n := copy(data[kernel.Headroom:], frame)
		if !a.ipcp.input(data[kernel.Headroom:kernel.Headroom+n], ks[0], rb) {
			t.Fatal("the buffer was not taken")
		}
		rb.Flush()
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per frame, want 0", allocs)
	}
	if p.n == 0 || s.n.Load() != 0 {
		t.Fatalf("%d buffers pushed, %d bytes copied; want some and none", p.n, s.n.Load())
	}
}

// takeAll frees every buffer it is pushed.
type takeAll struct {
	flow.Port
	pd *kernel.PD
	n  int
}

func (p *takeAll) PushBufs(bufs []*kernel.Buf, _ time.Time) (int, error) {
	if len(bufs) == 0 {
		return 0, errors.New("nothing")
	}
	p.n += len(bufs)
	p.pd.FreeBufs(bufs)
	return len(bufs), nil
}

var _ engine.BufPort = (*bufPort)(nil)
