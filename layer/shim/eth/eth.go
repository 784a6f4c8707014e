// Package eth is the Ethernet shim: an IPCP that carries flows between
// nodes on one Ethernet segment in raw frames (EtherType 0xA000, Ouroboros'
// DIX mode), resolving names by broadcast queries. It does no routing and
// no reliability; it is not a bridge.
package eth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// Device is the NIC the shim runs on: an AF_PACKET socket hosted
// (OpenPacket), a QEMU socket netdev stream (DialQEMU, ListenQEMU), a
// board's NIC driver on bare metal, or ethtest's fake hub.
type Device interface {
	// ReadFrame blocks until a frame arrives and copies it, from the
	// destination MAC on and without FCS, into b (the caller's buffer, not
	// retained); it returns its length. Frames may carry padding. One
	// reader at a time. A frame that does not fit is dropped with an
	// error; after Close it returns an error for good.
	ReadFrame(b []byte) (int, error)
	// WriteFrame transmits the frame in b (destination MAC on, no FCS).
	// b stays the caller's and is not retained. It may block briefly
	// while the NIC queue is full. Safe for concurrent use, also with
	// ReadFrame.
	WriteFrame(b []byte) error
	// MAC returns the device's address. Constant.
	MAC() net.HardwareAddr
	// MTU returns the largest payload after the Ethernet header. Constant.
	MTU() int
	// Close releases the device and unblocks a blocked ReadFrame.
	Close() error
}

// BatchDevice is a Device that moves several frames per system call (a
// hosted PacketDevice: recvmmsg(2) and sendmmsg(2)). The shim receives in
// batches, each batch's SDUs for one flow delivered as one run, and a
// flow's transmit loop sends its batches in one call, when its device is
// one; any other Device goes a frame at a time.
type BatchDevice interface {
	Device
	// NewFrameBatch returns a batch of up to n frames per call, for one
	// goroutine, or nil if the device cannot give one now.
	NewFrameBatch(n int) FrameBatch
}

// FrameBatch reads and writes frames of its BatchDevice in batches; one
// goroutine at a time, allocating nothing per call.
type FrameBatch interface {
	// ReadFrames blocks until at least one frame arrived, then reads up
	// to len(bufs) of them without waiting, frame i into bufs[i] (from
	// the destination MAC on, without FCS) and its length into lens[i]:
	// -1 for a frame longer than its buffer (cut, so to be dropped). It
	// returns how many; after Close, an error for good.
	ReadFrames(bufs [][]byte, lens []int) (int, error)
	// WriteFrames transmits the frames in order and returns how many
	// were sent, from the first; a count short of len(frames) comes with
	// the error of the next. The frames stay the caller's.
	WriteFrames(frames [][]byte) (int, error)
}

var (
	_ Device                = (*impair.Frames)(nil)
	_ ipcp.IPCP             = (*IPCP)(nil)
	_ ipcp.PeerAllocator    = (*IPCP)(nil)
	_ engine.BatchWire[MAC] = wire{}
)

// Config configures an Ethernet shim IPCP.
type Config struct {
	Layer string // the layer (shim instance) name; required
	Name  string // the IPCP's own name; required
	// Device is the NIC. If nil, Interface is opened with OpenPacket.
	// The IPCP closes it on Stop.
	Device Device
	// Interface is the Linux interface for a hosted AF_PACKET socket.
	Interface string
	// MaxSDU is the largest SDU of the shim's flows (a sealed one's is
	// seal.Overhead less): 0 means flow.MaxSDU; more, up to the device's
	// MTU less ShimLen (a jumbo-frame link), where every member's device
	// takes such frames. Start refuses a device whose MTU is smaller.
	MaxSDU   int
	HashAlgo layer.HashAlgo // how names are hashed on the wire (all members must agree)
	// Impair impairs the transmit side (tests, lab setups).
	Impair impair.Config
	// QueryTimeout bounds a name query when the caller's ctx has no
	// deadline, in Query and in Alloc (default 1 s).
	QueryTimeout time.Duration
	// CacheTTL is how long a query answer is used (default 60 s).
	CacheTTL time.Duration
	// Announce is how often the shim broadcasts the names registered in
	// it, and learns the segment's names and holders from the others'
	// announcements, so that a query for a name nobody announced is
	// answered "not found" as soon as every holder said "not here" (one
	// round trip), or after NegativeWait if one of them does not answer,
	// instead of at the caller's deadline (default DefaultAnnounce;
	// negative: off, and the shim neither answers nor uses "not here").
	Announce time.Duration
	// NegativeWait bounds how long a query for a name nobody announced
	// waits for an answer once the shim has listened for 1.5 announcement
	// periods, when some holder on the segment does not answer "not here"
	// (a shim that predates it, or a lost answer): default 100 ms.
	NegativeWait time.Duration
	// AllocTimeout bounds allocations whose ctx has no deadline (default 10 s).
	AllocTimeout time.Duration
	// RetryBase is the first retransmission timeout of alloc requests and
	// name queries, doubling up to 1 s (default 20 ms).
	RetryBase time.Duration
	// IdleTimeout deallocates a flow that carried nothing either way for
	// this long (default engine.DefaultIdleTimeout, 60 s; negative: never).
	IdleTimeout time.Duration
	// MaxFlowsPerPeer bounds the flows one peer MAC may allocate here
	// (default 256; negative: no bound); MaxPendingPerPeer its requests
	// waiting for the IRM at once (default 16). Requests beyond either are
	// refused as busy and counted in Stats().Drops.PeerLimit.
	MaxFlowsPerPeer   int
	MaxPendingPerPeer int
	// Signer, if set, lets the shim seal flows (QoS.Sealed, docs/shims.md
	// "Sealed flows"): the node's identity (in a node, a signing
	// capability to its signer component). Without it a sealed
	// allocation is refused, both ways.
	Signer identity.Signer
	// Seal seals every flow: those allocated here even if their QoS does
	// not ask, and unsealed requests are refused. Needs Signer.
	Seal bool
	// SealPeers, if not empty, are the only node ids (identity.NameOf) a
	// sealed flow may have at its other end, either way. Needs Signer.
	SealPeers []string
	// SealTicketLife is how long the ticket a sealed allocation leaves
	// both ends stays usable to resume the next one in one round trip
	// (0: 10 minutes; negative: never resume).
	SealTicketLife time.Duration
	// SealAEAD, if set, is the only AEAD sealed flows use (a peer that
	// does not take it fails their key exchange); zero negotiates:
	// AES-256-GCM where both ends have hardware AES, else
	// ChaCha20-Poly1305 (crypto/seal, crypto/kex).
	SealAEAD seal.AEAD
	// Runner starts the IPCP's goroutines (in a node, its component's
	// kernel PD); required.
	Runner layer.Runner
	// Bufs, if set (in a node, its component's kernel PD), gives the
	// node's packet buffers to receive frames into from a BatchDevice:
	// a frame's SDU for a flow whose port moves the node's buffers (the
	// node's ring ports, engine.BufPort) then goes on in the buffer it
	// arrived in instead of being copied (docs/flow.md, "Copies").
	Bufs BufSource
}

// BufSource gives the node's packet buffers, charged to the shim's
// budget (kernel.PD).
type BufSource interface {
	// AllocBufs fills bufs with buffers, as many as the budget has room
	// for, and returns how many.
	AllocBufs(bufs []*kernel.Buf) (int, error)
	// FreeBufs gives back the non-nil entries of bufs and sets them nil.
	FreeBufs(bufs []*kernel.Buf)
	// BufSize is a buffer's size after its headroom.
	BufSize() int
}

// DefaultAnnounce is how often an Ethernet shim announces its names.
const DefaultAnnounce = 2 * time.Second

func announce(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d == 0:
		return DefaultAnnounce
	}
	return d
}

// IPCP is an Ethernet shim IPC process.
type IPCP struct {
	cfg   Config
	eng   *engine.Engine[MAC]
	state layer.Lifecycle

	mu     sync.Mutex // serialises Start and Stop
	dev    Device     // set by Start before the state becomes operational
	mac    MAC
	rxDone chan struct{}
	stop   chan struct{}  // closed by Stop: ends the solicits
	wg     sync.WaitGroup // the solicit goroutine
	abs    absent         // "not here" (absent.go)
}

// New checks cfg and returns an IPCP in state "init"; Start opens the device.
func New(cfg Config, up ipcp.Upcalls) (*IPCP, error) {
	if cfg.Layer == "" || cfg.Name == "" {
		return nil, fmt.Errorf("eth: config needs a layer and a name: %w", flow.ErrInvalid)
	}
	if up == nil {
		return nil, fmt.Errorf("eth: %s: no upcalls: %w", cfg.Name, flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("eth: " + cfg.Name)
	}
	if cfg.Device == nil && cfg.Interface == "" {
		return nil, fmt.Errorf("eth: %s: config needs a device or an interface: %w", cfg.Name, flow.ErrInvalid)
	}
	if err := cfg.Impair.Validate(); err != nil {
		return nil, fmt.Errorf("eth: %s: %w", cfg.Name, err)
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = time.Second
	}
	sc, err := engine.SealFrom("eth", cfg.Layer, cfg.Name, cfg.Signer, cfg.Seal, cfg.SealPeers, cfg.SealTicketLife, cfg.SealAEAD)
	if err != nil {
		return nil, err
	}
	p := &IPCP{cfg: cfg, rxDone: make(chan struct{}), stop: make(chan struct{})}
	p.abs.init()
	eng, err := engine.New(engine.Config[MAC]{
		Kind:              "eth",
		Wire:              wire{p},
		Headroom:          HeaderLen,
		MaxSDU:            cfg.MaxSDU,
		MaxEID:            MaxEID,
		Broadcast:         Broadcast,
		Upcalls:           up,
		HashAlgo:          cfg.HashAlgo,
		Timeout:           cfg.AllocTimeout,
		RetryBase:         cfg.RetryBase,
		CacheTTL:          cfg.CacheTTL,
		Announce:          announce(cfg.Announce),
		NegativeWait:      cfg.NegativeWait,
		IdleTimeout:       cfg.IdleTimeout,
		MaxFlowsPerPeer:   cfg.MaxFlowsPerPeer,
		MaxPendingPerPeer: cfg.MaxPendingPerPeer,
		Runner:            cfg.Runner,
		Seal:              sc,
	})
	if err != nil {
		return nil, fmt.Errorf("eth: %s: %w", cfg.Name, err)
	}
	p.eng = eng
	return p, nil
}

// Start opens the device and starts receiving.
func (p *IPCP) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Load() != layer.StateInit {
		return fmt.Errorf("eth: %s: start in state %s: %w", p.cfg.Name, p.state.Load(), flow.ErrInvalid)
	}
	dev := p.cfg.Device
	if dev == nil {
		d, err := OpenPacket(p.cfg.Interface)
		if err != nil {
			return fmt.Errorf("eth: %s: %w", p.cfg.Name, err)
		}
		dev = d
	}
	mac, err := MACFrom(dev.MAC())
	if err == nil && (mac.IsMulticast() || mac == MAC{}) {
		err = fmt.Errorf("eth: device address %v is not a unicast address", mac)
	}
	if err == nil && dev.MTU() < ShimLen+p.eng.MaxSDU() {
		err = fmt.Errorf("eth: device MTU %d below %d (max SDU %d)", dev.MTU(), ShimLen+p.eng.MaxSDU(), p.eng.MaxSDU())
	}
	if err != nil {
		dev.Close()
		return fmt.Errorf("eth: %s: %w: %w", p.cfg.Name, err, flow.ErrInvalid)
	}
	if p.cfg.Impair.Enabled() {
		ic := p.cfg.Impair
		ic.Runner = p.cfg.Runner
		w, err := impair.WrapFrames(dev, ic)
		if err != nil {
			dev.Close()
			return fmt.Errorf("eth: %s: %w", p.cfg.Name, err)
		}
		dev = w
	}
	p.dev, p.mac = dev, mac
	if p.quickOn() {
		// Until the solicits are answered the holder set counts as
		// complete only after the engine's own warm-up.
		p.abs.mu.Lock()
		p.abs.warmAt = time.Now().Add(3 * announce(p.cfg.Announce) / 2)
		p.abs.solicits = 2
		p.abs.mu.Unlock()
	}
	p.state.Store(layer.StateOperational)
	p.eng.Start()
	p.cfg.Runner.Go(p.rxLoop)
	if p.quickOn() {
		p.wg.Add(1)
		p.cfg.Runner.Go(func() { defer p.wg.Done(); p.solicitLoop(p.stop) })
	}
	return nil
}

// Stop deallocates every flow (telling the peers), closes the device and
// waits for the IPCP's goroutines. Idempotent; an IPCP is not restarted.
func (p *IPCP) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.state.Swap(layer.StateShutdown)
	if old != layer.StateShutdown {
		close(p.stop)
	}
	p.wg.Wait()
	p.eng.Stop()
	if old == layer.StateOperational {
		p.dev.Close()
		<-p.rxDone
	}
	p.eng.Wait()
}

// MAC returns the device's address (valid after Start).
func (p *IPCP) MAC() MAC { return p.mac }

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "eth", State: p.state.Load().String()}
}

// Register implements ipcp.IPCP: name answers queries and accepts flows.
func (p *IPCP) Register(_ context.Context, name string) error {
	if err := p.eng.Register(name); err != nil {
		return err
	}
	p.abs.mu.Lock()
	p.abs.names[layer.HashName(p.cfg.HashAlgo, name)] = true
	p.abs.mu.Unlock()
	return nil
}

// Unregister implements ipcp.IPCP.
func (p *IPCP) Unregister(_ context.Context, name string) error {
	if err := p.eng.Unregister(name); err != nil {
		return err
	}
	p.abs.mu.Lock()
	delete(p.abs.names, layer.HashName(p.cfg.HashAlgo, name))
	p.abs.mu.Unlock()
	return nil
}

// Heard returns those of names that other shims on the segment announce
// (Config.Announce): their holders are reachable directly over this shim.
func (p *IPCP) Heard(names []string) []string { return p.eng.Heard(names) }

// Query implements ipcp.IPCP: it broadcasts a name query (unless a cached
// answer is fresh) and waits for a holder's answer until ctx ends, or
// Config.QueryTimeout if ctx has no deadline. No answer is flow.ErrNotFound;
// so is "not here" from every holder the shim knows on the segment, as
// soon as the last of them answers (docs/shims.md, "Names on a segment").
func (p *IPCP) Query(ctx context.Context, name string) error {
	_, err := p.resolve(ctx, name)
	return err
}

func (p *IPCP) resolve(ctx context.Context, name string) (MAC, error) {
	if err := p.state.Ready("eth", "query", name); err != nil {
		return MAC{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.QueryTimeout)
		defer cancel()
	}
	h := layer.HashName(p.cfg.HashAlgo, name)
	qctx, w := p.watch(ctx, h)
	if w == nil {
		return p.eng.Resolve(ctx, name)
	}
	defer p.unwatch(h, w)
	mac, err := p.eng.Resolve(qctx, name)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(qctx), errAbsent) {
		p.abs.mu.Lock()
		p.abs.quick++
		p.abs.mu.Unlock()
		return MAC{}, quickNotFound(name)
	}
	return mac, err
}

// Alloc implements ipcp.IPCP: it resolves req.Dst by a name query, then
// asks the holder, retransmitting until ctx ends (Config.AllocTimeout
// without a deadline). A refusal maps to flow.ErrNotFound, flow.ErrRefused
// or flow.ErrBusy; silence to flow.ErrTimeout.
func (p *IPCP) Alloc(ctx context.Context, req ipcp.AllocReq, port flow.Port) error {
	_, err := p.AllocPeer(ctx, req, port)
	return err
}

// AllocPeer implements ipcp.PeerAllocator: Alloc that also returns a
// sealed flow's verified peer and its largest SDU.
func (p *IPCP) AllocPeer(ctx context.Context, req ipcp.AllocReq, port flow.Port) (ipcp.AllocResult, error) {
	if port == nil {
		return ipcp.AllocResult{}, fmt.Errorf("eth: alloc %q: nil port: %w", req.Dst, flow.ErrInvalid)
	}
	dst, err := p.resolve(ctx, req.Dst)
	if err != nil {
		p.eng.C.AllocFailed.Add(1)
		return ipcp.AllocResult{}, fmt.Errorf("eth: alloc: %w", err)
	}
	res, err := p.eng.AllocPeer(ctx, dst, req, port)
	if errors.Is(err, flow.ErrNotFound) || errors.Is(err, flow.ErrTimeout) {
		p.eng.Forget(req.Dst) // the holder moved or vanished: ask again next time
	}
	return res, err
}

// Stats returns the IPCP's counters.
func (p *IPCP) Stats() shim.Stats {
	s := p.eng.C.Snapshot()
	p.abs.mu.Lock()
	s.QuickNotFound += p.abs.quick
	p.abs.mu.Unlock()
	return s
}

// Flows lists the open flows.
func (p *IPCP) Flows() []shim.FlowInfo { return p.eng.Flows() }

// Capture answers the capture management command (layer/capture.Cmd).
func (p *IPCP) Capture(args map[string]string) (ipcp.MgmtResp, error) {
	return p.eng.Capture(p.cfg.Name, args)
}

// wire puts the engine's packets on the device.
type wire struct{ p *IPCP }

// Send implements engine.Wire.
func (w wire) Send(pkt []byte, dst MAC, eid uint32) error {
	return w.p.dev.WriteFrame(w.frame(pkt, dst, eid))
}

// frame writes the header for eid in front of the payload pkt[HeaderLen:]
// and pads the frame to MinFrame where pkt has the room (the engine's
// buffers always do).
func (w wire) frame(pkt []byte, dst MAC, eid uint32) []byte {
	n := len(pkt) - HeaderLen
	Frame(pkt).SetHeader(dst, w.p.mac, uint16(eid), n)
	if len(pkt) < MinFrame && cap(pkt) >= MinFrame {
		pkt = pkt[:MinFrame]
		clear(pkt[HeaderLen+n:])
	}
	return pkt
}

// NewBatchSender implements engine.BatchWire: a flow's transmit loop
// sends each batch in one call when the device is a BatchDevice (not
// behind the impairment stage, which takes frames one at a time).
func (w wire) NewBatchSender() engine.BatchSender[MAC] {
	bd, ok := w.p.dev.(BatchDevice)
	if !ok {
		return nil
	}
	fb := bd.NewFrameBatch(engine.TxBatch)
	if fb == nil {
		return nil
	}
	return &batchSender{w: w, fb: fb, frames: make([][]byte, 0, engine.TxBatch)}
}

// batchSender is a flow's engine.BatchSender over a FrameBatch.
type batchSender struct {
	w      wire
	fb     FrameBatch
	frames [][]byte // the call's frames, padded (the packets' slices stay the engine's)
}

// SendBatch implements engine.BatchSender.
func (s *batchSender) SendBatch(pkts [][]byte, dst MAC, eid uint32) (int, error) {
	s.frames = s.frames[:0]
	for _, p := range pkts {
		s.frames = append(s.frames, s.w.frame(p, dst, eid))
	}
	n, err := s.fb.WriteFrames(s.frames)
	clear(s.frames)
	return n, err
}

// rxBatch is how many frames the receive loop takes per system call from
// a BatchDevice.
const rxBatch = engine.TxBatch

func (p *IPCP) rxLoop() {
	defer close(p.rxDone)
	size := max(p.dev.MTU()+EthLen+4, 2048) // room for a VLAN tag
	var fb FrameBatch
	if bd, ok := p.dev.(BatchDevice); ok {
		fb = bd.NewFrameBatch(rxBatch)
	}
	count := 1
	if fb != nil {
		count = rxBatch
	}
	bufs, lens := make([][]byte, count), make([]int, count)
	own := make([][]byte, count)
	for i := range own {
		own[i] = make([]byte, size)
	}
	copy(bufs, own)
	// A batch's SDUs for one flow go to its port in one write.
	rb := p.eng.NewRxBatch(rxBatch)
	// Frames land in the node's buffers where it gives them: ks[i] is
	// the one bufs[i] lies in (nil: own[i], for lack of budget).
	var ks, fresh []*kernel.Buf
	if src := p.cfg.Bufs; src != nil && fb != nil && src.BufSize() >= size {
		ks, fresh = make([]*kernel.Buf, count), make([]*kernel.Buf, count)
		rb.SetFreer(src.FreeBufs)
		defer src.FreeBufs(ks)
	}
	backoff := time.Duration(0)
	for {
		var n int
		var err error
		if ks != nil {
			p.refill(ks, fresh, bufs, own)
		}
		if fb != nil {
			n, err = fb.ReadFrames(bufs, lens)
		} else {
			lens[0], err = p.dev.ReadFrame(bufs[0])
			n = 1
		}
		if err != nil {
			if p.state.Load() == layer.StateShutdown || errors.Is(err, net.ErrClosed) ||
				errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			p.eng.C.RxError.Add(1)
			if errors.Is(err, syscall.ENETDOWN) {
				// The interface went down (AF_PACKET reports it once): the
				// link's flows are gone, and saying so now lets an upper
				// layer fail over at once rather than after its hellos.
				p.eng.LinkDown()
			}
			backoff = min(max(2*backoff, 100*time.Microsecond), 50*time.Millisecond)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		for i := range n {
			if lens[i] < 0 {
				p.eng.C.Malformed.Add(1)
				continue
			}
			var k *kernel.Buf
			if ks != nil {
				k = ks[i]
			}
			if p.input(bufs[i][:lens[i]], k, rb) {
				ks[i] = nil // the batch's now
			}
		}
		// The buffers are reused by the next read: deliver now.
		rb.Flush()
	}
}

// refill gives each receive slot whose buffer was handed on a new one
// from the node (bufs[i] its data after the headroom), or the loop's own
// (own[i]) while the budget has none.
func (p *IPCP) refill(ks, fresh []*kernel.Buf, bufs, own [][]byte) {
	want := 0
	for _, k := range ks {
		if k == nil {
			want++
		}
	}
	if want == 0 {
		return
	}
	got, _ := p.cfg.Bufs.AllocBufs(fresh[:want])
	for i, k := range ks {
		if k != nil {
			continue
		}
		if got == 0 {
			bufs[i] = own[i]
			continue
		}
		got--
		k, fresh[got] = fresh[got], nil
		ks[i] = k
		data, _, _ := k.Data()
		bufs[i] = data[kernel.Headroom:]
	}
}

// input filters one received frame, which lies in k if k is not nil, and
// hands it to rb; it reports whether rb took k. It allocates nothing for
// data.
func (p *IPCP) input(b []byte, k *kernel.Buf, rb *engine.RxBatch[MAC]) bool {
	faultinject.Check("eth/input", b)
	f := Frame(b)
	if len(f) < EthLen {
		p.eng.C.Malformed.Add(1)
		return false
	}
	dst, src := f.Dst(), f.Src()
	if f.EtherType() != EtherType || (dst != p.mac && dst != Broadcast) || src == p.mac {
		p.eng.C.NotForUs.Add(1)
		return false
	}
	if !f.IsValid() || src.IsMulticast() {
		p.eng.C.Malformed.Add(1)
		return false
	}
	if dst == Broadcast && f.EID() != CtlEID {
		p.eng.C.Malformed.Add(1) // data is never broadcast
		return false
	}
	if f.EID() == CtlEID && !p.ethControl(f.Payload(), src) {
		return false
	}
	return rb.InputBuf(f.Payload(), k, src, uint32(f.EID()))
}

// MaxSDU implements ipcp.SDULimiter: the largest SDU of the shim's
// unsealed flows (Config.MaxSDU).
func (p *IPCP) MaxSDU() int { return p.eng.MaxSDU() }
