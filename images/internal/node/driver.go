package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// A board link device (the board's Ethernet NIC, its USB Ethernet gadget)
// has a driver component of its own, "driver.enet" or "driver.usb": the
// node initialises the device before the kernel boots (Node.Start), and
// the driver component runs it: its receive loop, the netstack.Mux that
// splits frames between the Ethernet shim's port and the netstack's, and
// a transmit goroutine. The IRM supervises it like an in-node app: a
// fault (a panic in either) is logged and the component restarted with
// back-off; the rings to the shims outlive it, so the shims carry on
// after a gap. The driver's only caps are those rings: it cannot reach
// the IRM, an IPCP or a program.

// driverComponent names the driver component of board link p.
func driverComponent(p boardPort) string { return "driver." + string(p) }

// driverBadge is the badge of driver j's faults (RoleApp, ids from
// 1<<20 up: no extra has as many). The driver holds no cap to the IRM, so
// it authorises nothing.
func driverBadge(j int) kernel.Badge { return irm.MakeBadge(irm.RoleApp, 1<<20+uint64(j)) }

// boardLinksUsed returns the board link devices cfg's IPCPs use, each
// once, in order of first use.
func boardLinksUsed(cfg *Config) []boardPort {
	var out []boardPort
	for _, ip := range cfg.IPCPs {
		p, _, ok := boardUse(cfg, ip)
		if !ok {
			continue
		}
		seen := false
		for _, q := range out {
			seen = seen || q == p
		}
		if !seen {
			out = append(out, p)
		}
	}
	return out
}

// driver is the state of one board link's driver component that outlives
// its incarnations: the Mux and the fault record shown in the stats of
// the shims on it.
type driver struct {
	port boardPort
	mux  *netstack.Mux

	incarnations atomic.Uint64
	faults       atomic.Uint64
	rxYields     atomic.Uint64 // yields to a full ring's reader (ringSink)
	txFrames     atomic.Uint64
	txErrors     atomic.Uint64
	mu           sync.Mutex // guards lastFault, lastAt
	lastFault    string
	lastAt       time.Time
}

// program is the driver component's program: run the Mux's receive loop
// until the incarnation ends. A panic in it is recorded and passed on to
// the kernel (a fault for the IRM, which restarts the component).
func (d *driver) program(pd *kernel.PD) error {
	d.incarnations.Add(1)
	// A receive blocked in the device returns when woken: at the end of
	// the incarnation (killed, restarted, the node stopping).
	pd.Go(func() {
		<-pd.Context().Done()
		d.mux.Wake()
	})
	defer func() {
		if r := recover(); r != nil {
			d.noteFault(r)
			panic(r) // the kernel's: a fault of this component
		}
	}()
	// Each port a configured IPCP uses has a ring to it (a port no IPCP
	// uses keeps the Mux's own queue, which nobody reads: its frames are
	// dropped and counted).
	var sinks [2]netstack.Sink
	var rings []kernel.Cap
	for i := range sinks {
		if c, err := pd.Slot(driverRxSlot(i)); err == nil {
			sinks[i] = &ringSink{pd: pd, r: c, yields: &d.rxYields}
			rings = append(rings, c)
		}
	}
	if tx, err := pd.Slot(slotDriverTx); err == nil {
		pd.Go(func() { d.transmit(pd, tx) })
	}
	if err := d.mux.RunTo(pd.Context(), sinks); err != nil {
		// The device ended: the shims' reads end too.
		for _, c := range rings {
			pd.CloseRing(c)
		}
		return fmt.Errorf("%s: %w", driverComponent(d.port), err)
	}
	return nil
}

// transmit is the driver's transmit goroutine: it sends what the shims
// push into the transmit ring until the incarnation ends. A frame the NIC
// refuses is counted, not returned (the shim has moved on).
func (d *driver) transmit(pd *kernel.PD, tx kernel.Cap) {
	defer func() {
		if r := recover(); r != nil {
			d.noteFault(r)
			panic(r) // the kernel's: a fault of this component
		}
	}()
	var batch [popBatch]*kernel.Buf
	var frames [popBatch][]byte
	ctx := pd.Context()
	for {
		n, err := pd.PopWait(ctx, tx, batch[:])
		for i, b := range batch[:n] {
			frames[i] = b.Bytes()
		}
		// One call for the batch (one doorbell); a frame the NIC refuses
		// is counted and skipped.
		for off := 0; off < n; {
			k, err := d.mux.WriteFrames(frames[off:n])
			d.txFrames.Add(uint64(k))
			off += k
			if err != nil || k == 0 {
				d.txErrors.Add(1)
				off++
			}
		}
		clear(frames[:n])
		pd.FreeBufs(batch[:n])
		clear(batch[:n])
		switch {
		case ctx.Err() != nil:
			return
		case err == nil, errors.Is(err, kernel.ErrAborted): // a shim died: others carry on
		default:
			return // closed
		}
	}
}

// noteFault records a panic of the driver for its counters.
func (d *driver) noteFault(r any) {
	d.faults.Add(1)
	d.mu.Lock()
	d.lastFault, d.lastAt = fmt.Sprint(r), time.Now()
	d.mu.Unlock()
}

// rows are the driver's counters as rows of a shim's "stats" table.
func (d *driver) rows() [][]string {
	s := d.mux.Stats()
	d.mu.Lock()
	last := "-"
	if d.lastFault != "" {
		last = fmt.Sprintf("%s (%v ago)", d.lastFault, time.Since(d.lastAt).Round(time.Millisecond))
	}
	d.mu.Unlock()
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return [][]string{
		{"driver.component", driverComponent(d.port)},
		{"driver.incarnations", u(d.incarnations.Load())},
		{"driver.faults", u(d.faults.Load())},
		{"driver.last_fault", last},
		{"driver.rx_frames", u(s.RxFrames)},
		{"driver.rx_errors", u(s.RxErrors)},
		{"driver.drops_shim", u(s.Drops[netstack.PortShim])},
		{"driver.drops_ip", u(s.Drops[netstack.PortIP])},
		{"driver.rx_yields", u(d.rxYields.Load())},
		{"driver.tx_frames", u(d.txFrames.Load())},
		{"driver.tx_errors", u(d.txErrors.Load())},
	}
}

// drivers are the node's board link drivers, by port. It is filled by
// Node.Start before the kernel boots and only read afterwards.
type drivers map[boardPort]*driver

// boardShim is a shim on a board link: its "stats" end with the driver's
// counters.
type boardShim struct {
	shimManager
	d *driver
}

// Mgmt implements irm.Manager.
func (s boardShim) Mgmt(ctx context.Context, req irm.MgmtReq) (irm.MgmtResp, error) {
	resp, err := s.shimManager.Mgmt(ctx, req)
	if err == nil && req.Cmd == "stats" && s.d != nil {
		resp.Table.Rows = append(resp.Table.Rows, s.d.rows()...)
	}
	return resp, err
}

// DriverSummary describes each board link driver in one line (for an
// image's console at exit): its restarts, faults and receive counters.
func (n *Node) DriverSummary() []string {
	var out []string
	for _, p := range n.links {
		d := n.drivers[p]
		if d == nil {
			continue
		}
		s := d.mux.Stats()
		d.mu.Lock()
		last := d.lastFault
		d.mu.Unlock()
		if last == "" {
			last = "-"
		}
		out = append(out, fmt.Sprintf("%s: incarnations %d, faults %d, last fault %s; rx %d frames, %d errors, drops shim %d ip %d, yields at a full ring %d",
			driverComponent(p), d.incarnations.Load(), d.faults.Load(), last, s.RxFrames, s.RxErrors, s.Drops[netstack.PortShim], s.Drops[netstack.PortIP], d.rxYields.Load()))
	}
	return out
}

// Each port of a board link that a configured IPCP uses is a kernel ring
// of the system description, from the driver (Write) to that IPCP's
// component (Read): received frames cross from the driver's component to
// the shim's as kernel buffers (the driver allocates one per frame, the
// ring holds up to ringLen, the shim pops it into its own budget, copies
// it out and frees it). Frames to send cross the other way through the
// link's transmit ring (every such IPCP holds Write, the driver Read): the
// shim copies the frame into a buffer of its budget and pushes it,
// waiting while the ring is full (back-pressure, as the NIC's own
// transmit ring gives); the driver's transmit goroutine pops a batch,
// hands each frame to the NIC and frees them. Only the driver touches the
// NIC.

// Slots of the board link rings.
const (
	slotBoardRx  = "board.rx" // a shim's Read cap on its port's ring
	slotBoardTx  = "board.tx" // a shim's Write cap on its link's transmit ring
	slotDriverTx = "tx"       // the driver's Read cap on its transmit ring
	ringLen      = 64         // frames a ring holds
)

// txRing names board link p's transmit ring.
func txRing(p boardPort) string { return driverComponent(p) + ".tx" }

// driverRxSlot is the driver's slot of its Write cap on port i's ring.
func driverRxSlot(i int) string { return "rx." + portName(i) }

func portName(i int) string {
	if i == portIP {
		return "ip"
	}
	return "shim"
}

// portRing names the ring of board link p's port i.
func portRing(p boardPort, i int) string { return driverComponent(p) + ".rx." + portName(i) }

// boardUse returns the board link and port the IPCP p uses, if any.
func boardUse(cfg *Config, p IPCPConfig) (boardPort, int, bool) {
	switch p.Kind {
	case "eth":
		var c ethConfig
		if cfg.decode(p.Eth, &c) == nil && c.Board != "" && c.Interface == "" && c.QEMUConnect == "" && c.QEMUListen == "" {
			return c.Board, portShim, true
		}
	case "udp":
		var c udpConfig
		if cfg.decode(p.UDP, &c) == nil && c.Netstack != nil && c.Netstack.Board != "" {
			return c.Netstack.Board, portIP, true
		}
	}
	return "", 0, false
}

// ringSink delivers a port's frames into its ring: the driver's side.
type ringSink struct {
	pd     *kernel.PD
	r      kernel.Cap
	one    [1]*kernel.Buf
	yields *atomic.Uint64 // the driver's count of yields at a full ring
}

var _ netstack.Sink = (*ringSink)(nil)

// fullYields is how many times the driver yields the processor to a full
// ring's reader before it drops the frame.
const fullYields = 4

// Deliver implements netstack.Sink: one buffer from the driver's budget,
// pushed without blocking. A full ring makes the driver yield the
// processor (runtime.Gosched) and try again, up to fullYields times,
// before it drops the frame.
//
// The yield is what keeps a flood from starving the receivers: on a
// board the scheduler is cooperative (TamaGo has one core and no
// preemption), and under a flood the NIC always holds a frame, so a
// driver that only ever dropped at a full ring never blocked and the
// shim, the IPCPs and the programs behind the ring hardly ran (receive
// livelock: 152,314 of 188,448 frames dropped at the ring, 192 SDUs
// counted by the perf app in a second). Yielding at a full ring runs
// every goroutine made ready by the pushes (the ring's reader first)
// before the driver reads again; meanwhile the NIC's own ring fills and
// the device drops the excess at no cost to the guest (QEMU stops
// reading its back end).
func (s *ringSink) Deliver(frame []byte) bool {
	b, err := s.pd.AllocBuf()
	if err != nil {
		return false
	}
	if b.Append(frame) < len(frame) {
		s.pd.FreeBuf(b)
		return false
	}
	s.one[0] = b
	for i := 0; ; i++ {
		n, err := s.pd.Push(s.r, s.one[:])
		if n == 1 {
			return true
		}
		if i == fullYields || !errors.Is(err, kernel.ErrWouldBlock) {
			break
		}
		s.yields.Add(1)
		runtime.Gosched()
	}
	s.one[0] = nil
	s.pd.FreeBuf(b)
	return false
}

// ringPort is a shim's device on a board link: frames in from its port's
// ring, out straight to the device. One reader at a time.
type ringPort struct {
	d      *driver
	pd     *kernel.PD
	rx, tx kernel.Cap
	ctx    context.Context // ends with Close or the shim's incarnation
	cancel context.CancelFunc

	// The reader's: a batch popped at once, handed out one by one.
	batch      [popBatch]*kernel.Buf
	next, have int
}

// popBatch is how many frames a shim pops from its ring at once.
const popBatch = 16

var _ eth.Device = (*ringPort)(nil)

// openRing opens the shim's port of board link p: the ring its component
// holds in slotBoardRx. Frames left in the ring by the shim's previous
// incarnation are dropped.
func (ds drivers) openRing(p boardPort, i int, pd *kernel.PD) (*ringPort, error) {
	d := ds[p]
	if d == nil {
		return nil, fmt.Errorf("board link %q: no driver running (the node starts one for each board link its configured IPCPs use): %w", p, flow.ErrNotFound)
	}
	rx, err := pd.Slot(slotBoardRx)
	if err != nil {
		return nil, fmt.Errorf("board link %q port %s: this component holds no ring of it (only a configured IPCP, the first on each port, does): %w", p, portName(i), err)
	}
	tx, err := pd.Slot(slotBoardTx)
	if err != nil {
		return nil, fmt.Errorf("board link %q: this component holds no transmit ring of it: %w", p, err)
	}
	rp := &ringPort{d: d, pd: pd, rx: rx, tx: tx}
	rp.ctx, rp.cancel = context.WithCancel(pd.Context())
	for {
		n, _ := pd.Pop(rx, rp.batch[:])
		if n == 0 {
			break
		}
		pd.FreeBufs(rp.batch[:n])
		clear(rp.batch[:n])
	}
	return rp, nil
}

// ReadFrame implements eth.Device: it waits for the next frame in the
// ring. A restart of the driver is a gap, not an error.
func (rp *ringPort) ReadFrame(b []byte) (int, error) {
	for rp.next == rp.have {
		n, err := rp.pd.PopWait(rp.ctx, rp.rx, rp.batch[:])
		if n > 0 {
			rp.next, rp.have = 0, n
			break
		}
		switch {
		case rp.ctx.Err() != nil:
			return 0, fmt.Errorf("%s: port closed: %w", driverComponent(rp.d.port), net.ErrClosed)
		case errors.Is(err, kernel.ErrAborted):
			continue // the driver died; its next incarnation pushes again
		case errors.Is(err, kernel.ErrClosed):
			return 0, fmt.Errorf("%s: device ended: %w", driverComponent(rp.d.port), io.EOF)
		case err != nil:
			return 0, fmt.Errorf("%s: %w", driverComponent(rp.d.port), err)
		}
	}
	buf := rp.batch[rp.next]
	rp.batch[rp.next] = nil
	rp.next++
	k := copy(b, buf.Bytes())
	l := buf.Len()
	rp.pd.FreeBuf(buf)
	if k < l {
		return 0, fmt.Errorf("%s: %d-byte frame for a %d-byte buffer: %w", driverComponent(rp.d.port), l, len(b), flow.ErrTruncated)
	}
	return k, nil
}

// WriteFrame implements eth.Device: it copies b into a buffer of the
// shim's budget and pushes it into the link's transmit ring, waiting while
// the ring is full; the driver sends it. Safe for concurrent use.
func (rp *ringPort) WriteFrame(b []byte) error {
	name := driverComponent(rp.d.port)
	if len(b) > kernel.BufSize {
		return fmt.Errorf("%s: %d-byte frame: %w", name, len(b), flow.ErrTruncated)
	}
	buf, err := rp.pd.AllocBuf()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	buf.Append(b)
	one := [1]*kernel.Buf{buf}
	for {
		n, err := rp.pd.PushWait(rp.ctx, rp.tx, one[:])
		if n == 1 {
			return nil
		}
		if rp.ctx.Err() == nil && errors.Is(err, kernel.ErrAborted) {
			continue // the driver died: its next incarnation pops
		}
		rp.pd.FreeBuf(buf)
		if rp.ctx.Err() != nil {
			return fmt.Errorf("%s: port closed: %w", name, net.ErrClosed)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
}

// MAC implements eth.Device.
func (rp *ringPort) MAC() net.HardwareAddr { return rp.d.mux.MAC() }

// MTU implements eth.Device.
func (rp *ringPort) MTU() int { return rp.d.mux.MTU() }

// Close implements eth.Device: a blocked ReadFrame returns; the ring and
// the device stay for the shim's next incarnation. Frames popped and not
// read are freed by the kernel with the shim's incarnation (or read by a
// ReadFrame after Close: a closed port's reader stops at the next pop).
func (rp *ringPort) Close() error {
	rp.cancel()
	return nil
}
