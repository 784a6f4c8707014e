// Package ipnet carries IP over flows: a Bridge reads IP packets from a
// device (a TUN interface), finds the ouro name that serves each
// packet's destination prefix, and writes the packet as one SDU on a
// flow to that name, allocated on demand and closed when idle; packets
// arriving on the flows peers allocated to the Bridge's own name are
// written to the device. Unchanged TCP/IP programs then reach each other
// across an Ouroboros network (docs/ipnet.md).
//
// Each direction has its own flows: a Bridge writes only on flows it
// allocated and reads only from flows it accepted. A flow is
// best-effort by default (TCP above does its own recovery); a Sealed QoS
// makes the tunnel encrypted between the two nodes.
package ipnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
)

// Device is the IP side: one whole packet per Read and per Write (a TUN
// interface without packet information).
type Device interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
}

// BatchDevice is a Device that moves several packets per call: a TUN
// with offloads reads a TCP super-packet as its segments and writes
// consecutive segments coalesced (TUN). A Bridge uses the batch calls
// where its Device has them.
type BatchDevice interface {
	Device
	// BatchSize is the most packets one call moves.
	BatchSize() int
	// MTU is the largest packet ReadBatch puts in bufs[1:].
	MTU() int
	// Headroom is the room WriteBatch needs before each packet; a
	// device with headroom also coalesces packets into a buffer's spare
	// capacity (up to 64 KB).
	Headroom() int
	// ReadBatch reads packets into bufs (bufs[0] MaxPacket long, the
	// others MTU) and sets sizes; it returns how many.
	ReadBatch(bufs [][]byte, sizes []int) (int, error)
	// WriteBatch writes bufs[i][Headroom():].
	WriteBatch(bufs [][]byte) (int, error)
}

// Runner starts the Bridge's goroutines (in a node, its component's
// kernel PD; a hosted program passes one that runs plain goroutines).
type Runner interface{ Go(f func()) }

// Route sends packets for Prefix to the Bridge serving Name, in the
// QoS Class (ClassDefault: the Bridge's QoS, or as the packet's DSCP
// says when Config.DSCP is set).
type Route struct {
	Prefix netip.Prefix
	Name   string
	Class  Class
}

// Class is the kind of flow a packet travels on: the layers schedule
// voice first, then video, then the rest (flow.Cube). Packets of one
// class to one name share a flow. No class asks for ordering or
// retransmission: IP carries its own.
type Class uint8

// The classes.
const (
	ClassDefault Class = iota // the Bridge's QoS (best effort unless configured)
	ClassVoice                // a delay bound of 50 ms: the voice cube
	ClassVideo                // a delay bound of 100 ms: the video cube
	numClasses
)

var classNames = [numClasses]string{"default", "voice", "video"}

func (c Class) String() string {
	if c < numClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// qos is the spec of class c's flows; def is the Bridge's QoS.
func (c Class) qos(def flow.QoS) flow.QoS {
	q := def
	switch c {
	case ClassVoice:
		q = flow.QoS{Delay: 50, Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: def.Sealed}
	case ClassVideo:
		q = flow.QoS{Delay: 100, Bandwidth: 100_000_000, Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: def.Sealed}
	}
	return q
}

// ClassOfDSCP is the class of a DSCP value (RFC 4594's service
// classes): EF and CS5 (telephony, signalling) voice; AF4x, CS4, AF3x
// and CS3 (interactive and streaming video) video; the rest default.
func ClassOfDSCP(dscp uint8) Class {
	switch dscp {
	case 46, 40:
		return ClassVoice
	case 32, 34, 36, 38, 24, 26, 28, 30:
		return ClassVideo
	}
	return ClassDefault
}

// DSCP returns an IPv4 or IPv6 packet's DSCP.
func DSCP(pkt []byte) (uint8, bool) {
	if len(pkt) < 2 {
		return 0, false
	}
	switch pkt[0] >> 4 {
	case 4:
		return pkt[1] >> 2, true
	case 6:
		return (pkt[0]&0x0f)<<2 | pkt[1]>>6, true
	}
	return 0, false
}

// ParseRoute parses "PREFIX=NAME" or "PREFIX=NAME@CLASS" (CLASS: voice
// or video; an address alone is a /32 or /128).
func ParseRoute(s string) (Route, error) {
	i := strings.LastIndexByte(s, '=')
	if i < 0 || i == len(s)-1 {
		return Route{}, fmt.Errorf("ipnet: route %q: want PREFIX=NAME[@CLASS]: %w", s, flow.ErrInvalid)
	}
	p, name := s[:i], s[i+1:]
	var class Class
	if j := strings.LastIndexByte(name, '@'); j >= 0 {
		c, ok := classOf(name[j+1:])
		if !ok || j == 0 {
			return Route{}, fmt.Errorf("ipnet: route %q: class %q: want voice or video: %w", s, name[j+1:], flow.ErrInvalid)
		}
		name, class = name[:j], c
	}
	pfx, err := netip.ParsePrefix(p)
	if err != nil {
		a, aerr := netip.ParseAddr(p)
		if aerr != nil {
			return Route{}, fmt.Errorf("ipnet: route %q: %w: %w", s, flow.ErrInvalid, err)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	return Route{Prefix: pfx.Masked(), Name: name, Class: class}, nil
}

func classOf(s string) (Class, bool) {
	for c, n := range classNames {
		if n == s && c != int(ClassDefault) {
			return Class(c), true
		}
	}
	return 0, false
}

// Config configures a Bridge.
type Config struct {
	Broker flow.Broker // required
	Dev    Device      // required
	Runner Runner      // required
	// Name is bound: peers' flows to it carry packets for this side.
	// Required.
	Name   string
	Routes []Route
	// QoS of the flows the Bridge allocates (default best effort); the
	// voice and video classes keep its Sealed.
	QoS flow.QoS
	// DSCP chooses each packet's class by its DSCP (ClassOfDSCP) where
	// its route names none.
	DSCP bool
	// Idle closes a flow that carried nothing this long (default 60 s).
	Idle time.Duration
	// Queue is how many packets wait for a flow being allocated or
	// written, per destination name (default 256); more are dropped.
	Queue int
	// Log logs flows allocated, accepted and closed, with the bridge's
	// name as "bridge"; nil discards.
	Log *slog.Logger
}

// MaxPacket is the largest packet the Bridge reads.
const MaxPacket = 65535

// maxFailedWrites is how many writes in a row may fail on a flow (full,
// timing out) before the Bridge gives it up and allocates another.
const maxFailedWrites = 16

// Stats are a route's counters: those of its name (routes to one name
// share them).
type Stats struct {
	Prefix, Name string
	PktsOut      uint64 // packets sent on its flow
	BytesOut     uint64
	Drops        uint64 // queue full, no flow (allocation failed), too big for the flow, or the flow refused the write
	TooBig       uint64 // of the drops: larger than the flow's SDU limit (answered with ICMP "too big")
	Allocs       uint64 // flows allocated
	AllocErrors  uint64
}

type counters struct {
	pktsOut, bytesOut, drops, tooBig, allocs, allocErrors atomic.Uint64
}

// peer is the outgoing side toward one name in one class: a queue and
// the goroutine that allocates and writes its flow.
type peer struct {
	name  string
	class Class
	q     chan []byte
	c     *counters
}

type peerKey struct {
	name  string
	class Class
}

// Bridge is an IP bridge. Create it with New, run it with Run.
type Bridge struct {
	cfg    Config
	routes []Route // longest prefix first
	byName map[string]*counters

	free chan []byte // packet buffers of pkt bytes
	// pkt is the longest packet a flow of the Bridge carries: the
	// device's MTU where it is above flow.MaxSDU (a jumbo-SDU layer
	// below), else flow.MaxSDU.
	pkt int

	mu    sync.Mutex
	peers map[peerKey]*peer

	noRoute, inPkts, inBytes, inDrops, devErrors atomic.Uint64
	acceptErrors                                 atomic.Uint64 // Accepts that failed and were tried again
}

// sendBatch is the most packets a Bridge writes on a flow per call.
const sendBatch = 32

// maxDevErrors is how many device reads in a row may fail (a
// super-packet the device could not split) before the Bridge stops.
const maxDevErrors = 100

// The pause after a failed Accept: acceptBackoffMin, doubling up to
// acceptBackoffMax while Accept keeps failing.
const (
	acceptBackoffMin = 10 * time.Millisecond
	acceptBackoffMax = time.Second
)

// New checks cfg and returns a Bridge.
func New(cfg Config) (*Bridge, error) {
	if cfg.Broker == nil || cfg.Dev == nil || cfg.Runner == nil || cfg.Name == "" {
		return nil, fmt.Errorf("ipnet: config needs a broker, a device, a runner and a name: %w", flow.ErrInvalid)
	}
	if cfg.QoS == (flow.QoS{}) {
		cfg.QoS = flow.BestEffort()
	}
	if cfg.QoS.NeedsFRCT() {
		return nil, fmt.Errorf("ipnet: QoS with ordering or reliability: IP carries its own (%w)", flow.ErrInvalid)
	}
	if cfg.Idle == 0 {
		cfg.Idle = time.Minute
	}
	if cfg.Queue == 0 {
		cfg.Queue = 256
	}
	cfg.Log = logx.Or(cfg.Log).With("bridge", cfg.Name)
	b := &Bridge{cfg: cfg, byName: make(map[string]*counters), peers: make(map[peerKey]*peer), free: make(chan []byte, 2*cfg.Queue), pkt: flow.MaxSDU}
	if d, ok := cfg.Dev.(interface{ MTU() int }); ok {
		b.pkt = max(b.pkt, min(d.MTU(), flow.MaxJumboSDU))
	}
	b.routes = slices.Clone(cfg.Routes)
	slices.SortStableFunc(b.routes, func(x, y Route) int { return y.Prefix.Bits() - x.Prefix.Bits() })
	for _, r := range b.routes {
		if !r.Prefix.IsValid() || r.Name == "" || r.Class >= numClasses {
			return nil, fmt.Errorf("ipnet: route %v=%q: %w", r.Prefix, r.Name, flow.ErrInvalid)
		}
		if b.byName[r.Name] == nil {
			b.byName[r.Name] = new(counters)
		}
	}
	return b, nil
}

// Dst returns the destination address of an IPv4 or IPv6 packet.
func Dst(pkt []byte) (netip.Addr, bool) {
	if len(pkt) < 1 {
		return netip.Addr{}, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(pkt[16:20])), true
	case 6:
		if len(pkt) < 40 {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(pkt[24:40])), true
	}
	return netip.Addr{}, false
}

// route returns the route to dst.
func (b *Bridge) route(dst netip.Addr) (*Route, bool) {
	for i := range b.routes {
		if b.routes[i].Prefix.Contains(dst) {
			return &b.routes[i], true
		}
	}
	return nil, false
}

// copyBuf returns a copy of pkt in a pooled buffer (a packet larger
// than any flow carries, rare, gets its own: it only goes as far as the
// ICMP "too big" it is answered with).
func (b *Bridge) copyBuf(pkt []byte) []byte {
	if len(pkt) > b.pkt {
		return slices.Clone(pkt)
	}
	var p []byte
	select {
	case p = <-b.free:
	default:
		p = make([]byte, b.pkt)
	}
	return p[:copy(p[:b.pkt], pkt)]
}

func (b *Bridge) putBuf(p []byte) {
	if cap(p) != b.pkt {
		return
	}
	select {
	case b.free <- p:
	default:
	}
}

// Run binds the Bridge's name and moves packets until the device's Read
// fails: to stop it, cancel ctx and close the device (a nil error then).
// It unbinds and closes its flows before returning.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.cfg.Broker.Bind(ctx, b.cfg.Name); err != nil {
		return fmt.Errorf("ipnet: bind %q: %w", b.cfg.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	b.cfg.Runner.Go(func() { defer wg.Done(); b.acceptLoop(ctx, &wg) })
	err := b.readLoop(ctx, &wg)
	cancel()
	uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Second)
	b.cfg.Broker.Unbind(uctx, b.cfg.Name)
	ucancel()
	wg.Wait()
	return err
}

// readLoop moves packets from the device to the peers' queues, a batch
// per read where the device has them.
func (b *Bridge) readLoop(ctx context.Context, wg *sync.WaitGroup) error {
	bd, batch := b.cfg.Dev.(BatchDevice)
	bufs := [][]byte{make([]byte, MaxPacket)}
	if batch {
		seg := max(bd.MTU(), b.pkt)
		for range bd.BatchSize() - 1 {
			bufs = append(bufs, make([]byte, seg))
		}
	}
	sizes := make([]int, len(bufs))
	errs := 0
	for {
		var n int
		var err error
		if batch {
			n, err = bd.ReadBatch(bufs, sizes)
		} else {
			sizes[0], err = b.cfg.Dev.Read(bufs[0])
			n = 1
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // the owner closed the device to stop
			}
			// A super-packet the device could not split is lost alone;
			// a device that fails read after read has failed.
			if batch && !errors.Is(err, os.ErrClosed) && errs < maxDevErrors {
				errs++
				b.devErrors.Add(1)
				continue
			}
			return fmt.Errorf("ipnet: device: %w", err)
		}
		errs = 0
		for i := range n {
			b.dispatch(ctx, wg, bufs[i][:sizes[i]])
		}
	}
}

// dispatch queues a copy of pkt for the peer its route names.
func (b *Bridge) dispatch(ctx context.Context, wg *sync.WaitGroup, pkt []byte) {
	dst, ok := Dst(pkt)
	var r *Route
	if ok {
		r, ok = b.route(dst)
	}
	if !ok {
		b.noRoute.Add(1)
		return
	}
	class := r.Class
	if class == ClassDefault && b.cfg.DSCP {
		d, _ := DSCP(pkt)
		class = ClassOfDSCP(d)
	}
	p := b.peer(ctx, wg, r.Name, class)
	buf := b.copyBuf(pkt)
	select {
	case p.q <- buf:
	default:
		p.c.drops.Add(1)
		b.putBuf(buf)
	}
}

// peer returns the outgoing side toward name in class, starting it if
// need be.
func (b *Bridge) peer(ctx context.Context, wg *sync.WaitGroup, name string, class Class) *peer {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := peerKey{name, class}
	if p := b.peers[k]; p != nil {
		return p
	}
	p := &peer{name: name, class: class, q: make(chan []byte, b.cfg.Queue), c: b.byName[name]}
	b.peers[k] = p
	wg.Add(1)
	b.cfg.Runner.Go(func() { defer wg.Done(); b.send(ctx, p) })
	return p
}

// send allocates p's flow when packets wait, writes them, and closes the
// flow after Idle without any.
func (b *Bridge) send(ctx context.Context, p *peer) {
	var (
		batch  = make([][]byte, 0, sendBatch)
		port   flow.Port
		limit  int
		retry  time.Time // no allocation before this (the last one failed)
		failed int       // writes failed in a row on port
	)
	idle := time.NewTimer(b.cfg.Idle)
	defer idle.Stop()
	closeFlow := func() {
		if port != nil {
			port.Close()
			port = nil
		}
		failed = 0
	}
	defer closeFlow()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case pkt := <-p.q:
					b.putBuf(pkt)
				default:
					return
				}
			}
		case <-idle.C:
			if port != nil {
				b.cfg.Log.Debug("flow idle, closed", "dst", p.name, "idle", b.cfg.Idle)
			}
			closeFlow()
		case pkt := <-p.q:
			batch = append(batch[:0], pkt)
		more:
			for len(batch) < sendBatch {
				select {
				case pkt := <-p.q:
					batch = append(batch, pkt)
				default:
					break more
				}
			}
			idle.Reset(b.cfg.Idle)
			if port == nil && time.Now().After(retry) {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				fp, info, err := b.cfg.Broker.Alloc(actx, p.name, p.class.qos(b.cfg.QoS))
				cancel()
				if err != nil {
					p.c.allocErrors.Add(1)
					retry = time.Now().Add(time.Second)
					b.cfg.Log.Warn("allocation failed, packets to it dropped for 1 s", "dst", p.name, "err", err)
				} else {
					port, limit = fp, info.SDULimit()
					p.c.allocs.Add(1)
					b.cfg.Log.Info("flow allocated", "flow", info.ID, "dst", p.name, "class", p.class.String(), "layer", info.Layer, "sdu_limit", limit, sealedAttr(info))
				}
			}
			// Runs of packets that fit go out in one write each; one too
			// big is answered in its place.
			for i := 0; i < len(batch); {
				pkt := batch[i]
				switch {
				case port == nil:
					p.c.drops.Add(1)
					i++
				case len(pkt) > limit:
					p.c.drops.Add(1)
					p.c.tooBig.Add(1)
					if msg := tooBig(pkt, limit); msg != nil { // the sender's path MTU comes down
						b.cfg.Dev.Write(msg)
					}
					i++
				default:
					j := i + 1
					for j < len(batch) && len(batch[j]) <= limit {
						j++
					}
					run := batch[i:j]
					i = j
					n, err := writeSDUs(port, run)
					p.c.pktsOut.Add(uint64(n))
					for _, x := range run[:n] {
						p.c.bytesOut.Add(uint64(len(x)))
					}
					p.c.drops.Add(uint64(len(run) - n))
					if err == nil {
						failed = 0
						break
					}
					failed++
					// A closed flow, or one that took nothing for a while:
					// allocate again for the next packet.
					if !errors.Is(err, flow.ErrBusy) && !errors.Is(err, flow.ErrTimeout) || failed >= maxFailedWrites {
						b.cfg.Log.Warn("flow closed after failed writes", "dst", p.name, "err", err, "failed", failed)
						closeFlow()
					}
				}
			}
			for _, pkt := range batch {
				b.putBuf(pkt)
			}
			clear(batch)
		}
	}
}

// writeSDUs writes sdus on port, in one call where it is a
// flow.BatchPort, and returns how many it wrote; the rest were refused
// with the error.
func writeSDUs(port flow.Port, sdus [][]byte) (int, error) {
	deadline := time.Now().Add(time.Second)
	if bp, ok := port.(flow.BatchPort); ok {
		return bp.WriteBatch(sdus, deadline)
	}
	for i, sdu := range sdus {
		if err := port.Write(sdu, deadline); err != nil {
			return i, err
		}
	}
	return len(sdus), nil
}

// sealedAttr names the verified peer of a sealed flow as "sealed_with"
// (an empty attribute, left out, for an unsealed one).
func sealedAttr(info flow.Info) slog.Attr {
	if info.Peer == nil {
		return slog.Attr{}
	}
	return slog.String("sealed_with", info.Peer.String())
}

// acceptLoop takes the flows peers allocate to this Bridge's name and
// writes what they carry to the device.
//
// An Accept that fails (a flow the node could not hand over, a request
// refused) is counted and tried again after a pause that doubles to
// acceptBackoffMax; only the end of ctx or of the broker itself
// (flow.ErrClosed, net.ErrClosed) ends the loop: a loop that ended at
// the first failure would leave every later allocation to this name
// failing until the bridge restarted.
func (b *Bridge) acceptLoop(ctx context.Context, wg *sync.WaitGroup) {
	backoff := time.Duration(0)
	for {
		port, info, err := b.cfg.Broker.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, flow.ErrClosed) || errors.Is(err, net.ErrClosed) {
				b.cfg.Log.Error("accept failed: the node is gone", "err", err)
				return
			}
			b.acceptErrors.Add(1)
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			b.cfg.Log.Warn("accept failed, trying again", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		b.cfg.Log.Info("flow accepted", "flow", info.ID, "from", orDash(info.Remote), "layer", info.Layer, sealedAttr(info))
		wg.Add(1)
		b.cfg.Runner.Go(func() { defer wg.Done(); b.receive(ctx, port) })
	}
}

// receive writes the packets of one accepted flow to the device.
func (b *Bridge) receive(ctx context.Context, port flow.Port) {
	stop := context.AfterFunc(ctx, func() { port.Close() })
	defer stop()
	defer port.Close()
	if bd, ok := b.cfg.Dev.(BatchDevice); ok {
		if bp, ok := port.(flow.BatchPort); ok {
			b.receiveBatch(bp, bd)
		} else {
			b.receivePipe(port, bd)
		}
		return
	}
	buf := make([]byte, b.pkt)
	for {
		n, err := port.Read(buf, time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrTruncated) {
				b.inDrops.Add(1)
				continue
			}
			return
		}
		if _, ok := Dst(buf[:n]); !ok {
			b.inDrops.Add(1)
			continue
		}
		if _, err := b.cfg.Dev.Write(buf[:n]); err != nil {
			b.inDrops.Add(1)
			continue
		}
		b.inPkts.Add(1)
		b.inBytes.Add(uint64(n))
	}
}

// receiveBatch writes the packets of one accepted flow to the device a
// batch at a time: what the flow has ready, up to the device's batch,
// in one write (which, on a TUN with offloads, coalesces a TCP flow's
// consecutive segments: each buffer has room for a super-packet).
func (b *Bridge) receiveBatch(port flow.BatchPort, dev BatchDevice) {
	h, n := dev.Headroom(), dev.BatchSize()
	size := h + b.pkt
	if h > 0 {
		size = h + MaxPacket
	}
	store := make([][]byte, n) // store[i][h:] is SDU i
	sdus := make([][]byte, n)
	for i := range store {
		store[i] = make([]byte, size)
		sdus[i] = store[i][h : h+b.pkt]
	}
	sizes := make([]int, n)
	out := make([][]byte, 0, n)
	for {
		k, err := port.ReadBatch(sdus, sizes, time.Time{})
		if errors.Is(err, flow.ErrTruncated) { // the last one: not a packet
			b.inDrops.Add(1)
			k--
		} else if err != nil {
			return
		}
		out = out[:0]
		var bytes uint64
		for i := range k {
			if _, ok := Dst(sdus[i][:sizes[i]]); !ok {
				b.inDrops.Add(1)
				continue
			}
			out = append(out, store[i][:h+sizes[i]])
			bytes += uint64(sizes[i])
		}
		if len(out) == 0 {
			continue
		}
		if _, err := dev.WriteBatch(out); err != nil {
			b.inDrops.Add(uint64(len(out)))
			continue
		}
		b.inPkts.Add(uint64(len(out)))
		b.inBytes.Add(bytes)
	}
}

// receivePipe is receiveBatch for a port without batch calls: one
// goroutine reads SDU after SDU into a ring of buffers while this one
// writes what has arrived, in one batch, so the device still coalesces.
func (b *Bridge) receivePipe(port flow.Port, dev BatchDevice) {
	h, n := dev.Headroom(), dev.BatchSize()
	size := h + b.pkt
	if h > 0 {
		size = h + MaxPacket
	}
	type sdu struct{ i, n int }
	store := make([][]byte, n)
	free, full := make(chan int, n), make(chan sdu, n)
	for i := range store {
		store[i] = make([]byte, size)
		free <- i
	}
	done := make(chan struct{})
	b.cfg.Runner.Go(func() {
		defer close(done)
		defer close(full)
		for i := range free {
			k, err := port.Read(store[i][h:h+b.pkt], time.Time{})
			switch {
			case errors.Is(err, flow.ErrTruncated):
				b.inDrops.Add(1)
				free <- i
			case err != nil:
				return
			default:
				full <- sdu{i, k}
			}
		}
	})
	defer func() { <-done }()
	defer port.Close() // the reader returns
	out := make([][]byte, 0, n)
	taken := make([]int, 0, n)
	for x := range full {
		out, taken = out[:0], taken[:0]
		var bytes uint64
		for {
			taken = append(taken, x.i)
			if _, ok := Dst(store[x.i][h : h+x.n]); ok {
				out = append(out, store[x.i][:h+x.n])
				bytes += uint64(x.n)
			} else {
				b.inDrops.Add(1)
			}
			var more bool
			select {
			case x, more = <-full:
			default:
			}
			if !more {
				break
			}
		}
		if len(out) > 0 {
			if _, err := dev.WriteBatch(out); err != nil {
				b.inDrops.Add(uint64(len(out)))
			} else {
				b.inPkts.Add(uint64(len(out)))
				b.inBytes.Add(bytes)
			}
		}
		for _, i := range taken {
			free <- i
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// DevErrors is how many device reads failed and were passed over (a
// super-packet the device could not split).
func (b *Bridge) DevErrors() uint64 { return b.devErrors.Load() }

// AcceptErrors returns how many Accepts failed and were tried again.
func (b *Bridge) AcceptErrors() uint64 { return b.acceptErrors.Load() }

// Stats returns each route's counters, in route order (longest prefix
// first), and the Bridge's: packets with no route, and those received.
func (b *Bridge) Stats() (routes []Stats, noRoute, in, inBytes, inDrops uint64) {
	for _, r := range b.routes {
		c := b.byName[r.Name]
		routes = append(routes, Stats{
			Prefix: r.Prefix.String(), Name: r.Name,
			PktsOut: c.pktsOut.Load(), BytesOut: c.bytesOut.Load(), Drops: c.drops.Load(), TooBig: c.tooBig.Load(),
			Allocs: c.allocs.Load(), AllocErrors: c.allocErrors.Load(),
		})
	}
	return routes, b.noRoute.Load(), b.inPkts.Load(), b.inBytes.Load(), b.inDrops.Load()
}
