package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// A board link device (the board's Ethernet NIC, its USB Ethernet gadget)
// has a driver component of its own, "driver.enet" or "driver.usb", for
// every link the board has (boardLinks): the node initialises the device
// of a link its configured IPCPs use before the kernel boots
// (Node.Start); that of a link none uses is initialised by its driver
// when a shim created at run time first attaches (on demand: until then
// the driver only answers attach calls and reads nothing). The driver
// component runs the device: its receive loop, the netstack.Mux that
// splits frames between the Ethernet shim's port and the netstack's, and
// a transmit goroutine. The IRM supervises it like an in-node app: a
// fault (a panic in either) is logged and the component restarted with
// back-off; the shims' rings outlive it and the shims attach them to its
// next incarnation, so they carry on after a gap. The driver's only caps
// are the Read cap on its attach endpoint and those the shims hand it on
// their rings: it cannot reach the IRM, an IPCP or a program.

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
		if p, _, ok := boardUse(cfg, ip); ok && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// nodeLinks returns the board links a node has a driver component for:
// those cfg's IPCPs use (whose devices Start initialises; one the board
// lacks fails the start), then the others the board has (has: their
// devices are initialised on demand).
func nodeLinks(cfg *Config, has []boardPort) []boardPort {
	out := boardLinksUsed(cfg)
	for _, p := range has {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// driver is the state of one board link's driver component that outlives
// its incarnations: the device's Mux once it is initialised and the fault
// record shown in the stats of the shims on it.
type driver struct {
	port  boardPort
	open  func() (*netstack.Mux, error) // initialises the device (on demand)
	reset func() error                  // re-initialises the device; nil: it cannot be
	wedge func()                        // a faultinject build's: wedges the device at a fault

	dev      atomic.Pointer[netstack.Mux] // nil until the device is initialised
	openedIn atomic.Uint64                // the incarnation that first ran it as Init left it
	openMu   sync.Mutex                   // serialises initialisation; guards openErr
	openErr  error                        // why the device's initialisation failed (for good)

	incarnations atomic.Uint64
	resets       atomic.Uint64 // device re-initialisations
	faults       atomic.Uint64
	rxYields     atomic.Uint64               // yields to a full ring's reader (portSink)
	refused      atomic.Uint64               // attach calls refused
	att          atomic.Pointer[attachments] // the current incarnation's
	txFrames     atomic.Uint64
	txErrors     atomic.Uint64
	mu           sync.Mutex // guards lastFault, lastAt
	lastFault    string
	lastAt       time.Time
}

// program is the driver component's program: serve the shims that
// attach to the link (the attach protocol, below), run the Mux's receive
// loop into their rings and send what they push, until the incarnation
// ends. A panic in it is recorded and passed on to the kernel (a fault
// for the IRM, which restarts the component).
func (d *driver) program(pd *kernel.PD) error {
	// A restarted driver re-initialises the device first (where it can
	// be: the ENET, virtio-net, the USB gadget) if an earlier incarnation
	// ran it: whatever state the fault left the NIC in, the new
	// incarnation starts from the state Init gave it. The kernel starts
	// an incarnation only once the last one's goroutines have returned,
	// so nothing else is in the NIC's receive path.
	inc := d.incarnations.Add(1)
	if d.reset != nil && d.mux() != nil && inc > d.openedIn.Load() {
		if err := d.reset(); err != nil {
			return fmt.Errorf("%s: re-initialising the device: %w", driverComponent(d.port), err)
		}
		d.resets.Add(1)
	}
	// A receive blocked in the device returns when woken: at the end of
	// the incarnation (killed, restarted, the node stopping).
	pd.Go(func() {
		<-pd.Context().Done()
		if m := d.mux(); m != nil {
			m.Wake()
		}
	})
	defer func() {
		if r := recover(); r != nil {
			d.noteFault(r)
			panic(r) // the kernel's: a fault of this component
		}
	}()
	ep, err := pd.Slot(slotDriverAttach)
	if err != nil {
		return fmt.Errorf("%s: %w", driverComponent(d.port), err)
	}
	txReady, err := pd.NewNotification()
	if err != nil {
		return fmt.Errorf("%s: %w", driverComponent(d.port), err)
	}
	// The shims attached to the last incarnation attach again: wait for
	// them (at most attachWait) before reading, so that the frames the
	// NIC holds meanwhile reach them rather than being dropped for want
	// of an attached shim.
	want := len(d.att.Load().list())
	a := &attachments{pd: pd, inc: inc, yields: &d.rxYields, txReady: txReady, added: make(chan struct{}, 1), opened: make(chan struct{})}
	d.att.Store(a)
	pd.Go(func() { d.serveAttach(pd, ep, a) })
	pd.Go(func() { d.transmit(pd, a) })
	if want > 0 {
		t := time.NewTimer(attachWait)
	wait:
		for len(a.list()) < want {
			select {
			case <-a.added:
			case <-t.C:
				break wait
			case <-pd.Context().Done():
				break wait
			}
		}
		t.Stop()
	}
	// A device not initialised yet is, on demand, by the first attach
	// (serveAttach); till then there is nothing to read.
	m := d.mux()
	if m == nil {
		select {
		case <-a.opened:
			m = d.mux()
		case <-pd.Context().Done():
			return nil
		}
	}
	if err := m.RunTo(pd.Context(), [2]netstack.Sink{&portSink{a: a, port: portShim}, &portSink{a: a, port: portIP}}); err != nil {
		// The device ended: the shims' reads end too.
		a.closeAll()
		return fmt.Errorf("%s: %w", driverComponent(d.port), err)
	}
	return nil
}

// transmit is the driver's transmit goroutine: it sends what the attached
// shims push into their transmit rings until the incarnation ends. A
// frame the NIC refuses is counted, not returned (the shim has moved on).
func (d *driver) transmit(pd *kernel.PD, a *attachments) {
	defer func() {
		if r := recover(); r != nil {
			d.noteFault(r)
			panic(r) // the kernel's: a fault of this component
		}
	}()
	var batch [popBatch]*kernel.Buf
	var frames [popBatch][]byte
	ctx := pd.Context()
	for turn := 0; ; turn++ {
		// Pop a batch from the attached shims' rings in turn, starting
		// with the next one each time (a shim that always has a batch
		// does not shut the others out); wait for the notification they
		// are bound to when all are empty.
		n := 0
		l := a.list()
		for j := range l {
			k, _ := pd.Pop(l[(turn+j)%len(l)].tx, batch[n:])
			n += k
			if n == len(batch) {
				break
			}
		}
		if n == 0 {
			if _, err := pd.WaitCtx(ctx, a.txReady); err != nil {
				return // the incarnation ended
			}
			continue
		}
		for i, b := range batch[:n] {
			frames[i] = b.Bytes()
		}
		// One call for the batch (one doorbell); a frame the NIC refuses
		// is counted and skipped.
		for off := 0; off < n; {
			k, err := d.mux().WriteFrames(frames[off:n])
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
		if ctx.Err() != nil {
			return
		}
	}
}

// serveAttach answers the shims' attach calls on ep until the incarnation
// ends.
func (d *driver) serveAttach(pd *kernel.PD, ep kernel.Cap, a *attachments) {
	ctx := pd.Context()
	var m kernel.Msg
	for {
		m = kernel.Msg{}
		info, err := pd.RecvCtx(ctx, ep, &m)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		// An attach call to a driver whose device is not initialised
		// initialises it (the first shim on a link no configured IPCP
		// uses); if that fails, it and every later attach are refused
		// with the reason.
		var x *attachment
		why := ""
		if info.Reply != 0 && m.Label == labelAttach {
			if err := d.ensureOpen(a); err != nil {
				why = err.Error()
			}
		}
		if why == "" {
			x, why = a.check(&m, info)
		}
		if x == nil {
			if len(why) > kernel.MaxPayload {
				why = why[:kernel.MaxPayload]
			}
			for _, c := range m.Caps[:m.NCaps] {
				pd.Delete(c)
			}
			if info.Reply != 0 {
				pd.Reply(info.Reply, &kernel.Msg{Label: labelRefused, Payload: []byte(why)})
			}
			d.refused.Add(1)
			continue
		}
		// The attachment lasts while the shim's call does: its Close, its
		// death or its restart ends the call, and with it the attachment.
		lease, stop := pd.ReplyContext(ctx, info.Reply)
		a.add(x)
		pd.Signal(m.Caps[2]) // attached
		pd.Delete(m.Caps[2])
		pd.Go(func() {
			<-lease.Done()
			stop()
			// A shim that went away is detached. At the end of this
			// incarnation the list is left as it is: the next one waits
			// for as many shims to attach again before it reads.
			if ctx.Err() == nil {
				a.remove(x)
			}
		})
	}
}

// mux returns the device's Mux, nil until it is initialised.
func (d *driver) mux() *netstack.Mux { return d.dev.Load() }

// opened records m as the device initialised for incarnation inc (the
// first that runs it as Init left it; a later one re-initialises it).
func (d *driver) opened(m *netstack.Mux, inc uint64) {
	d.openedIn.Store(inc)
	d.dev.Store(m)
}

// ensureOpen initialises the device if it is not yet, for a's
// incarnation, and wakes its receive loop. A failed initialisation is
// kept: the driver does not try the hardware again (Init is once per
// boot) and refuses every attach with the error, which names the link.
func (d *driver) ensureOpen(a *attachments) error {
	d.openMu.Lock()
	defer d.openMu.Unlock()
	switch {
	case d.mux() != nil:
		return nil
	case d.openErr != nil:
		return d.openErr
	case d.open == nil:
		d.openErr = fmt.Errorf("board link %q: no device to initialise", d.port)
		return d.openErr
	}
	m, err := d.open()
	if err != nil {
		d.openErr = fmt.Errorf("board link %q: initialising the device: %w", d.port, err)
		return d.openErr
	}
	d.opened(m, a.inc)
	close(a.opened)
	return nil
}

// initErr is why the device's initialisation failed, or nil.
func (d *driver) initErr() error {
	d.openMu.Lock()
	defer d.openMu.Unlock()
	return d.openErr
}

// noteFault records a panic of the driver for its counters (and, in a
// faultinject build of the USB armory image, wedges the NIC as a fault
// might: wedgeBoardLink).
func (d *driver) noteFault(r any) {
	if d.wedge != nil {
		d.wedge()
	}
	d.faults.Add(1)
	d.mu.Lock()
	d.lastFault, d.lastAt = fmt.Sprint(r), time.Now()
	d.mu.Unlock()
}

// rows are the driver's counters as rows of a shim's "stats" table.
func (d *driver) rows() [][]string {
	var s netstack.MuxStats
	if m := d.mux(); m != nil {
		s = m.Stats()
	}
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
		{"driver.device_resets", u(d.resets.Load())},
		{"driver.faults", u(d.faults.Load())},
		{"driver.last_fault", last},
		{"driver.rx_frames", u(s.RxFrames)},
		{"driver.rx_errors", u(s.RxErrors)},
		{"driver.drops_shim", u(s.Drops[netstack.PortShim])},
		{"driver.drops_ip", u(s.Drops[netstack.PortIP])},
		{"driver.rx_yields", u(d.rxYields.Load())},
		{"driver.attached", u(uint64(len(d.att.Load().list())))},
		{"driver.attach_refused", u(d.refused.Load())},
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

// Mgmt implements ipcp.Manager.
func (s boardShim) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
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
		m := d.mux()
		if m == nil {
			why := "no IPCP used it"
			if err := d.initErr(); err != nil {
				why = err.Error()
			}
			out = append(out, fmt.Sprintf("%s: device not initialised (%s); incarnations %d, faults %d", driverComponent(p), why, d.incarnations.Load(), d.faults.Load()))
			continue
		}
		s := m.Stats()
		d.mu.Lock()
		last := d.lastFault
		d.mu.Unlock()
		if last == "" {
			last = "-"
		}
		out = append(out, fmt.Sprintf("%s: incarnations %d, faults %d, last fault %s; device resets %d; rx %d frames, %d errors, drops shim %d ip %d, yields at a full ring %d",
			driverComponent(p), d.incarnations.Load(), d.faults.Load(), last, d.resets.Load(), s.RxFrames, s.RxErrors, s.Drops[netstack.PortShim], s.Drops[netstack.PortIP], d.rxYields.Load()))
	}
	return out
}

// Frames cross between the driver and the shims on its link through
// kernel rings the shims make and hand over by capability, so any shim
// that holds the link's attach cap can use it: one of the configuration,
// one created at run time ("ouro create": the IRM gives the created
// component the cap, irm.Provisioner), or several on one port (each gets
// every frame of its port, as several packet sockets on one interface
// do).
//
// Attaching: the shim makes two rings, a receive ring and a transmit ring,
// and a notification, and calls the driver's attach endpoint (its slot
// "board.<link>", Write with Grant) with the port in Words[0], moving
// Write on the receive ring, Read on the transmit ring and Write on the
// notification to the driver. The driver checks them, signals the
// notification (attached) and keeps the call unanswered for as long as
// the attachment lasts: the call is the lease. The shim ends it by giving up the call (Close) or by
// dying; the driver's ReplyContext sees it, and the driver deletes its
// caps (the rings go with the shim's last caps). A refused attach is
// answered at once with labelRefused and the reason. When the driver
// dies, the shim's call returns ErrAborted and the shim attaches again to
// the next incarnation with new caps to the same rings.
//
// Receive: the driver allocates a buffer per frame and attached shim and
// pushes it into the shim's receive ring without blocking; the shim pops
// it (queued frames are charged to the shim's budget: it made the ring),
// copies it out and frees it. Transmit: the shim copies the frame into a
// buffer of its budget and pushes it into its transmit ring, waiting
// while the ring is full (back-pressure, as the NIC's own transmit ring
// gives); the ring is bound to a notification of the driver, whose
// transmit goroutine pops batches from every attached shim's ring, hands
// them to the NIC and frees them. Only the driver touches the NIC.

// Slots, labels and sizes of the attach protocol.
const (
	slotDriverAttach = "attach" // the driver's Read cap on its attach endpoint
	labelAttach      = 1        // a shim's attach call
	labelRefused     = 2        // the driver's answer to a refused attach
	ringLen          = 64       // frames a shim's ring holds
	maxAttached      = 16       // attachments per link
	// attachObjects is the object budget an IPCP on a board link gets for
	// its rings and notification: three, and three more for a new
	// incarnation's while the driver lets go of the old one's.
	attachObjects = 6
)

// attachRights are the rights on a link's attach endpoint that let a
// component attach (call, moving caps).
const attachRights = kernel.Write | kernel.Grant | kernel.GrantReply

// attachSlot is the slot of the cap to board link p's attach endpoint
// (in the components of the IPCPs that use p, and in the IRM's).
func attachSlot(p boardPort) string { return "board." + string(p) }

// attachEndpoint names board link p's attach endpoint.
func attachEndpoint(p boardPort) string { return driverComponent(p) + ".attach" }

func portName(i int) string {
	if i == portIP {
		return "ip"
	}
	return "shim"
}

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

// attachment is one shim's attachment to the driver: the driver's caps
// on its rings.
type attachment struct {
	port  int
	rx    kernel.Cap // Write: the shim's receive ring
	tx    kernel.Cap // Read: the shim's transmit ring
	badge kernel.Badge
}

// attachments are the shims attached to one incarnation of the driver.
type attachments struct {
	pd      *kernel.PD
	inc     uint64        // the incarnation's number
	opened  chan struct{} // closed when this incarnation initialised the device
	yields  *atomic.Uint64
	txReady kernel.Cap    // notification the transmit rings are bound to
	added   chan struct{} // poked by add
	mu      sync.Mutex    // guards cur's writers
	cur     atomic.Pointer[[]*attachment]
}

// list returns the current attachments (read without a lock; none for a
// nil a).
func (a *attachments) list() []*attachment {
	if a == nil {
		return nil
	}
	if l := a.cur.Load(); l != nil {
		return *l
	}
	return nil
}

// check validates an attach call and returns the attachment it asks for,
// or nil and why not.
func (a *attachments) check(m *kernel.Msg, info kernel.RecvInfo) (*attachment, string) {
	switch {
	case info.Reply == 0:
		return nil, "attach: not a call"
	case m.Label != labelAttach:
		return nil, fmt.Sprintf("attach: label %d, want %d", m.Label, labelAttach)
	case m.Words[0] != portShim && m.Words[0] != portIP:
		return nil, fmt.Sprintf("attach: port %d, want %d (shim) or %d (ip)", m.Words[0], portShim, portIP)
	case m.NCaps != 3:
		return nil, fmt.Sprintf("attach: %d caps, want 3 (Write on a receive ring, Read on a transmit ring, Write on a notification)", m.NCaps)
	case len(a.list()) >= maxAttached:
		return nil, fmt.Sprintf("attach: %d shims attached already", maxAttached)
	}
	rx, err := a.pd.Inspect(m.Caps[0])
	if err != nil || rx.Kind != kernel.KindRing || rx.Rights&kernel.Write == 0 || rx.Closed {
		return nil, "attach: the first cap is not Write on an open ring"
	}
	tx, err := a.pd.Inspect(m.Caps[1])
	if err != nil || tx.Kind != kernel.KindRing || tx.Rights&kernel.Read == 0 || tx.Closed || tx.Object == rx.Object {
		return nil, "attach: the second cap is not Read on another open ring"
	}
	if ok, err := a.pd.Inspect(m.Caps[2]); err != nil || ok.Kind != kernel.KindNotification || ok.Rights&kernel.Write == 0 {
		return nil, "attach: the third cap is not Write on a notification"
	}
	if err := a.pd.BindRing(m.Caps[1], a.txReady); err != nil {
		return nil, "attach: " + err.Error()
	}
	return &attachment{port: int(m.Words[0]), rx: m.Caps[0], tx: m.Caps[1], badge: info.Badge}, ""
}

// add attaches x and wakes the transmit goroutine (x's ring may hold
// frames already).
func (a *attachments) add(x *attachment) {
	a.mu.Lock()
	l := append(append([]*attachment(nil), a.list()...), x)
	a.cur.Store(&l)
	a.mu.Unlock()
	a.pd.Signal(a.txReady)
	select {
	case a.added <- struct{}{}:
	default:
	}
}

// remove detaches x and deletes the driver's caps on its rings.
func (a *attachments) remove(x *attachment) {
	a.mu.Lock()
	var l []*attachment
	for _, y := range a.list() {
		if y != x {
			l = append(l, y)
		}
	}
	a.cur.Store(&l)
	a.mu.Unlock()
	a.pd.Delete(x.rx)
	a.pd.Delete(x.tx)
}

// closeAll closes every attached shim's receive ring: the device ended.
func (a *attachments) closeAll() {
	for _, x := range a.list() {
		a.pd.CloseRing(x.rx)
	}
}

// portSink delivers a port's frames to every shim attached to it (none
// attached: the frame is dropped and counted).
type portSink struct {
	a    *attachments
	port int
	one  [1]*kernel.Buf
}

var _ netstack.Sink = (*portSink)(nil)

// fullYields is how many times the driver yields the processor to a full
// ring's reader before it drops the frame.
const fullYields = 4

// Deliver implements netstack.Sink: for each shim attached to the port,
// one buffer from the driver's budget, pushed without blocking. A full
// ring makes the driver yield the processor (runtime.Gosched) and try
// again, up to fullYields times, before it drops the frame for that
// shim. It reports whether some shim took the frame.
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
func (s *portSink) Deliver(frame []byte) bool {
	took := false
	for _, x := range s.a.list() {
		if x.port == s.port && s.push(x.rx, frame) {
			took = true
		}
	}
	return took
}

// push copies frame into a buffer and pushes it into ring r.
func (s *portSink) push(r kernel.Cap, frame []byte) bool {
	pd := s.a.pd
	b, err := pd.AllocBuf()
	if err != nil {
		return false
	}
	if b.Append(frame) < len(frame) {
		pd.FreeBuf(b)
		return false
	}
	s.one[0] = b
	for i := 0; ; i++ {
		n, err := pd.Push(r, s.one[:])
		if n == 1 {
			return true
		}
		if i == fullYields || !(errors.Is(err, kernel.ErrWouldBlock) || errors.Is(err, kernel.ErrNoBudget)) {
			break
		}
		s.a.yields.Add(1)
		runtime.Gosched()
	}
	s.one[0] = nil
	pd.FreeBuf(b)
	return false
}

// ringPort is a shim's device on a board link: frames in from its receive
// ring, out through its transmit ring, both attached to the link's driver
// (see above). One reader at a time.
type ringPort struct {
	d      *driver
	pd     *kernel.PD
	port   int
	ep     kernel.Cap      // the link's attach endpoint
	rx, tx kernel.Cap      // the shim's rings (all rights: it made them)
	ok     kernel.Cap      // the shim's notification: attached, or refused
	ctx    context.Context // ends with Close or the shim's incarnation
	cancel context.CancelFunc
	err    atomic.Pointer[error] // why the driver refused the attach

	// The reader's: a batch popped at once, handed out one by one.
	batch      [popBatch]*kernel.Buf
	next, have int
}

// popBatch is how many frames a shim pops from its ring at once.
const popBatch = 16

var _ eth.Device = (*ringPort)(nil)

// openRing opens port i of board link p for pd's component: it makes the
// rings, attaches them to the driver through the link's attach cap that
// the component holds, and keeps the attachment (across the driver's
// restarts) until Close or the end of the incarnation.
func (ds drivers) openRing(p boardPort, i int, pd *kernel.PD) (*ringPort, error) {
	d := ds[p]
	if d == nil {
		return nil, fmt.Errorf("board link %q: this board has no such link: %w", p, flow.ErrInvalid)
	}
	ep, err := pd.Slot(attachSlot(p))
	if err != nil {
		return nil, fmt.Errorf("board link %q port %s: this component holds no cap to the link's driver: %w", p, portName(i), err)
	}
	rx, err := pd.NewRing(ringLen)
	if err != nil {
		return nil, fmt.Errorf("board link %q port %s: receive ring: %w", p, portName(i), err)
	}
	tx, err := pd.NewRing(ringLen)
	if err != nil {
		pd.Delete(rx)
		return nil, fmt.Errorf("board link %q port %s: transmit ring: %w", p, portName(i), err)
	}
	ok, err := pd.NewNotification()
	if err != nil {
		pd.Delete(rx)
		pd.Delete(tx)
		return nil, fmt.Errorf("board link %q port %s: notification: %w", p, portName(i), err)
	}
	rp := &ringPort{d: d, pd: pd, port: i, ep: ep, rx: rx, tx: tx, ok: ok}
	rp.ctx, rp.cancel = context.WithCancel(pd.Context())
	pd.Go(rp.lease)
	// Wait for the first attach to be taken or refused, so that a port
	// the driver refuses fails the open; a driver that is not running
	// now (restarting) takes it later. One whose device is not
	// initialised yet initialises it on this attach: the port is no use
	// before that (its MAC, its MTU), so the open waits for it, up to
	// initWait.
	wait := attachWait
	if d.mux() == nil {
		wait = initWait
	}
	wctx, cancel := context.WithTimeout(rp.ctx, wait)
	pd.WaitCtx(wctx, ok)
	cancel()
	if e := rp.err.Load(); e != nil {
		rp.cancel()
		return nil, *e
	}
	if d.mux() == nil {
		rp.cancel()
		return nil, fmt.Errorf("board link %q port %s: the device was not initialised within %v: %w", p, portName(i), initWait, flow.ErrTimeout)
	}
	return rp, nil
}

// attachWait bounds how long opening a port waits for the driver to take
// its attach call, and how long a restarted driver waits for the shims of
// its last incarnation to attach again before it reads from the device.
const attachWait = time.Second

// initWait bounds how long opening a port waits for the driver to
// initialise a device no shim used before.
const initWait = 5 * time.Second

// lease holds the attachment: one call to the driver's attach endpoint
// at a time, made again when the driver dies, until the port is closed.
// A refusal ends it (reported to openRing, if it still waits, and by the
// port's reads).
func (rp *ringPort) lease() {
	name := driverComponent(rp.d.port)
	defer func() {
		rp.pd.Delete(rp.rx)
		rp.pd.Delete(rp.tx)
		rp.pd.Delete(rp.ok)
	}()
	var why [kernel.MaxPayload]byte
	for rp.ctx.Err() == nil {
		w, err1 := rp.pd.Mint(rp.rx, kernel.Write, 0)
		r, err2 := rp.pd.Mint(rp.tx, kernel.Read, 0)
		o, err3 := rp.pd.Mint(rp.ok, kernel.Write, 0)
		if err := errors.Join(err1, err2, err3); err != nil {
			rp.refused(fmt.Errorf("%s: attach: %w", name, err))
			return
		}
		m := kernel.Msg{Label: labelAttach, NCaps: 3, Payload: why[:0]}
		m.Words[0] = uint64(rp.port)
		m.Caps[0], m.Caps[1], m.Caps[2] = w, r, o
		err := rp.pd.CallCtx(rp.ctx, rp.ep, &m)
		// Caps not moved (the call was not delivered) are still ours.
		rp.pd.Delete(w)
		rp.pd.Delete(r)
		rp.pd.Delete(o)
		switch {
		case rp.ctx.Err() != nil:
			return
		case err == nil && m.Label == labelRefused:
			rp.refused(fmt.Errorf("%s: %s: %w", name, m.Payload, flow.ErrInvalid))
			return
		case err == nil, errors.Is(err, kernel.ErrAborted):
			// the driver died (or answered a lease, which it never
			// does): attach to its next incarnation
		default:
			rp.refused(fmt.Errorf("%s: attach: %w", name, err))
			return
		}
	}
}

// refused records why the port cannot be attached, wakes openRing if it
// waits and ends the port's reads.
func (rp *ringPort) refused(err error) {
	rp.err.Store(&err)
	rp.pd.Signal(rp.ok)
	rp.pd.CloseRing(rp.rx)
}

// ReadFrame implements eth.Device: it waits for the next frame in the
// receive ring. A restart of the driver is a gap, not an error; a refused
// attach is (the driver's reason).
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
			if e := rp.err.Load(); e != nil {
				return 0, *e
			}
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
// shim's budget and pushes it into the port's transmit ring, waiting while
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
func (rp *ringPort) MAC() net.HardwareAddr { return rp.d.mux().MAC() }

// MTU implements eth.Device.
func (rp *ringPort) MTU() int { return rp.d.mux().MTU() }

// Close implements eth.Device: a blocked ReadFrame returns and the
// attachment ends (the driver detaches, the rings are destroyed with
// their last caps); the device stays. Frames popped and not read are
// freed by the kernel with the shim's incarnation.
func (rp *ringPort) Close() error {
	rp.cancel()
	return nil
}
