package node

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// floodDevice stands for a board NIC under a flood: once flooding, every
// ReadFrame returns a frame at once (the NIC's ring is never empty), as
// QEMU's NIC does while the host outruns the guest. Before and after, a
// read waits for a Wake.
type floodDevice struct {
	frame    []byte
	flooding atomic.Bool
	wake     chan struct{}
	closed   chan struct{}
}

var _ netstack.Waker = (*floodDevice)(nil)

func newFloodDevice() *floodDevice {
	f := &floodDevice{frame: make([]byte, 1000), wake: make(chan struct{}, 1), closed: make(chan struct{})}
	// A shim frame for another station: the shim reads it and drops it
	// (it is the reading that is measured).
	copy(f.frame[0:6], net.HardwareAddr{2, 0, 0, 0, 9, 9})
	copy(f.frame[6:12], net.HardwareAddr{2, 0, 0, 0, 9, 8})
	f.frame[12], f.frame[13] = eth.EtherType>>8, eth.EtherType&0xff
	return f
}

func (f *floodDevice) ReadFrame(b []byte) (int, error) {
	if f.flooding.Load() {
		return copy(b, f.frame), nil
	}
	select {
	case <-f.wake:
		return 0, netstack.ErrWoken
	case <-f.closed:
		return 0, net.ErrClosed
	}
}

func (f *floodDevice) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *floodDevice) WriteFrame([]byte) error { return nil }
func (f *floodDevice) MAC() net.HardwareAddr   { return net.HardwareAddr{2, 0, 0, 0, 9, 1} }
func (f *floodDevice) MTU() int                { return 1500 }
func (f *floodDevice) Close() error {
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	return nil
}

// TestBoardDriverFlood: a board link flooded faster than the node can
// take frames in, on one processor (a board's cooperative scheduler; here
// GOMAXPROCS 1). The driver must leave the shim behind its ring the
// processor to read: a good share of the frames the driver takes from the
// NIC reach the shim, the rest are dropped at the ring. A driver that
// never yields (receive livelock) lets the shim read a ring's worth per
// scheduler time slice: well under 1% of the frames here, against more
// than a third with the yield (ratios within the run).
func TestBoardDriverFlood(t *testing.T) {
	dev := newFloodDevice()
	appV, brV := mgmtApp("mgmt")
	startNodeWith(t, "[node]\nname = \"v\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nboard = true\n", func(n *Node) {
		n.openLink = func(p boardPort) (*netstack.Mux, error) {
			if p != "enet" {
				return nil, fmt.Errorf("test: no board link %q", p)
			}
			return netstack.NewMux(dev), nil
		}
	}, appV)
	bv := <-brV
	prev := runtime.GOMAXPROCS(1)
	dev.flooding.Store(true)
	dev.Wake()
	time.Sleep(500 * time.Millisecond)
	dev.flooding.Store(false)
	runtime.GOMAXPROCS(prev)
	rows := statsRows(t, bv, "v.eth")
	num := func(k string) float64 {
		x, err := strconv.ParseUint(rows[k], 10, 64)
		if err != nil {
			t.Fatalf("stats v.eth: %s %q: %v", k, rows[k], err)
		}
		return float64(x)
	}
	rx, drops := num("driver.rx_frames"), num("driver.drops_shim")
	if rx < 1000 {
		t.Fatalf("the driver took only %.0f frames from the flooding device in 0.5 s", rx)
	}
	share := (rx - drops) / rx
	t.Logf("flood on one processor: driver rx %.0f frames, dropped at the shim's ring %.0f, reached the shim %.0f (%.1f%%), yields %s",
		rx, drops, rx-drops, 100*share, rows["driver.rx_yields"])
	if share < 0.1 {
		t.Errorf("under a flood only %.2f%% of the frames the driver received reached the shim (want at least 10%%): the driver starves its reader", 100*share)
	}
}
