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

// SuperDevice is a BatchDevice that also reads and writes TCP
// super-packets whole (a TUN with offloads: TUN.ReadSuper,
// TUN.WriteSuper). A Bridge whose device has headroom uses these to
// read, and to write the super-packets peers send it (super.go).
type SuperDevice interface {
	BatchDevice
	// ReadSuper reads one packet into p (MaxPacket long) and returns
	// its length and, for a TCP super-packet, its segment size (0: a
	// plain packet).
	ReadSuper(p []byte) (n, mss int, err error)
	// WriteSuper writes the TCP super-packet b[Headroom():] whole, its
	// segments mss bytes; it sets its lengths and checksums.
	WriteSuper(b []byte, mss int) error
}

// superDevice returns dev as a SuperDevice where it moves super-packets
// (it has headroom for their offload header).
func superDevice(dev Device) (SuperDevice, bool) {
	sd, ok := dev.(SuperDevice)
	return sd, ok && sd.Headroom() > 0
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
	// AQMTarget is the wait that packets for a flow may stand at before
	// the Bridge drops or marks them (CoDel, aqm.go; default
	// DefaultAQMTarget, negative: no active queue management, only
	// drops when the queue is full), and AQMInterval how long the wait
	// must stay above it first (default DefaultAQMInterval).
	AQMTarget, AQMInterval time.Duration
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
	// Supers are the TCP super-packets read from the device (each
	// carried as one SDU where the flow and the peer take it, else in
	// pieces; PktsOut counts the SDUs).
	Supers      uint64
	Allocs      uint64 // flows allocated
	AllocErrors uint64
	// AQMDrops are, of the drops, those of the active queue management
	// (aqm.go); AQMMarks the packets it marked CE instead.
	AQMDrops, AQMMarks uint64
}

type counters struct {
	pktsOut, bytesOut, drops, tooBig, allocs, allocErrors, supers, aqmDrops, aqmMarks atomic.Uint64
}

// peer is the outgoing side toward one name in one class: a queue and
// the goroutine that allocates and writes its flow. What waits in q is
// a packet behind superHdrLen bytes, which hold a super-packet's prefix
// (a plain packet's first byte there is 0).
type peer struct {
	name  string
	class Class
	q     chan []byte
	// qBytes is the packet bytes waiting in q: a super-packet waits as
	// the tens of SDUs it is cut into, not as one (CoDel's estimate,
	// aqm.go).
	qBytes atomic.Int64
	c      *counters
}

// outFlow is a flow a peer allocated: its port, and the largest
// super-packet SDU the Bridge that accepted it takes (0 until its hello
// arrives: plain packets only).
type outFlow struct {
	port  flow.Port
	takes atomic.Int32
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

	free chan []byte // packet buffers of superHdrLen + pkt bytes
	big  chan []byte // buffers of bigCap bytes, for super-packets
	// bigOut is how many of those are handed out (bigBuf) and not back
	// (putBuf).
	bigOut atomic.Int32
	// pkt is the longest packet a flow of the Bridge carries: the
	// device's MTU where it is above flow.MaxSDU (a jumbo-SDU layer
	// below), else flow.MaxSDU.
	pkt int

	mu    sync.Mutex
	peers map[peerKey]*peer

	noRoute, inPkts, inBytes, inDrops, devErrors atomic.Uint64
	inAQMDrops, inAQMMarks                       atomic.Uint64 // of what peers sent: the layer's marks mapped (aqm.go)
	acceptErrors                                 atomic.Uint64 // Accepts that failed and were tried again
	supersIn                                     atomic.Uint64 // super-packet SDUs received
}

// sendBatch is the most packets a Bridge writes on a flow per call.
const sendBatch = 32

// bigBufs is how many 64 KB buffers for super-packets a Bridge keeps
// free for reuse; maxBigOut is the most it hands out (8 MB): a
// super-packet read while that many wait for their flows is dropped,
// counted as a full queue's packets are.
const (
	bigBufs   = 64
	maxBigOut = 2 * bigBufs
)

// bigCap is a super-packet buffer's capacity: room for a prefix and the
// longest packet, and one byte more, which tells it apart from a plain
// packet's buffer of its own (copyBuf).
const bigCap = superHdrLen + MaxPacket + 1

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
	if cfg.AQMTarget == 0 {
		cfg.AQMTarget = DefaultAQMTarget
	}
	if cfg.AQMInterval <= 0 {
		cfg.AQMInterval = DefaultAQMInterval
	}
	cfg.Log = logx.Or(cfg.Log).With("bridge", cfg.Name)
	b := &Bridge{cfg: cfg, byName: make(map[string]*counters), peers: make(map[peerKey]*peer), free: make(chan []byte, 2*cfg.Queue), big: make(chan []byte, bigBufs), pkt: flow.MaxSDU}
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

// copyBuf returns a copy of the plain packet pkt, behind superHdrLen
// zero bytes (the prefix a super-packet has there), in a pooled buffer;
// a packet longer than any flow carries, rare, gets its own (it goes
// only as far as the ICMP "too big" it is answered with).
func (b *Bridge) copyBuf(pkt []byte) []byte {
	var p []byte
	if len(pkt) <= b.pkt {
		select {
		case p = <-b.free:
		default:
			p = make([]byte, superHdrLen+b.pkt)
		}
	} else {
		p = make([]byte, superHdrLen+len(pkt))
	}
	p = p[:cap(p)]
	clear(p[:superHdrLen])
	return p[:superHdrLen+copy(p[superHdrLen:], pkt)]
}

// bigBuf returns a buffer of bigCap bytes.
func (b *Bridge) bigBuf() []byte {
	b.bigOut.Add(1)
	select {
	case p := <-b.big:
		return p[:cap(p)]
	default:
		return make([]byte, bigCap)
	}
}

func (b *Bridge) putBuf(p []byte) {
	switch cap(p) {
	case superHdrLen + b.pkt:
		select {
		case b.free <- p:
		default:
		}
	case bigCap:
		b.bigOut.Add(-1)
		select {
		case b.big <- p:
		default:
		}
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
	if sd, ok := superDevice(b.cfg.Dev); ok {
		return b.readSupers(ctx, wg, sd)
	}
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
			b.dispatch(ctx, wg, b.copyBuf(bufs[i][:sizes[i]]))
		}
	}
}

// readSupers is readLoop over a device that reads super-packets whole:
// each is read into a 64 KB buffer behind room for its prefix, which
// goes to the peer's queue as it is (the next read takes another), a
// plain packet in a copy.
func (b *Bridge) readSupers(ctx context.Context, wg *sync.WaitGroup, sd SuperDevice) error {
	buf := b.bigBuf()
	errs := 0
	for {
		n, mss, err := sd.ReadSuper(buf[superHdrLen:])
		if err != nil {
			if ctx.Err() != nil {
				return nil // the owner closed the device to stop
			}
			// A super-packet of a shape the Bridge does not carry is
			// lost alone; a device that fails read after read has failed.
			if !errors.Is(err, os.ErrClosed) && errs < maxDevErrors {
				errs++
				b.devErrors.Add(1)
				continue
			}
			return fmt.Errorf("ipnet: device: %w", err)
		}
		errs = 0
		if mss == 0 {
			b.dispatch(ctx, wg, b.copyBuf(buf[superHdrLen:superHdrLen+n]))
			continue
		}
		putSuperHdr(buf, mss)
		if b.bigOut.Load() >= maxBigOut { // this buffer stays for the next read
			b.dispatchDrop(ctx, wg, buf[:superHdrLen+n])
			continue
		}
		b.dispatch(ctx, wg, buf[:superHdrLen+n])
		buf = b.bigBuf()
	}
}

// dispatch queues item, a packet behind its prefix (copyBuf's), for the
// peer its route names, or puts it back.
func (b *Bridge) dispatch(ctx context.Context, wg *sync.WaitGroup, item []byte) {
	p := b.peerOf(ctx, wg, item)
	if p == nil {
		b.putBuf(item)
		return
	}
	// Counted before it is queued: the send goroutine may take it
	// before a count made after the send would be.
	n := int64(len(item) - superHdrLen)
	p.qBytes.Add(n)
	select {
	case p.q <- item:
	default:
		p.qBytes.Add(-n)
		p.c.drops.Add(1)
		b.putBuf(item)
	}
}

// dispatchDrop counts item as dropped on its way to its peer (the
// super-packets waiting hold maxBigOut buffers); item stays the caller's.
func (b *Bridge) dispatchDrop(ctx context.Context, wg *sync.WaitGroup, item []byte) {
	if p := b.peerOf(ctx, wg, item); p != nil {
		p.c.drops.Add(1)
	}
}

// peerOf returns the peer item's packet goes to, counting a super-packet
// on its route; nil, counted, where no route takes it.
func (b *Bridge) peerOf(ctx context.Context, wg *sync.WaitGroup, item []byte) *peer {
	pkt := item[superHdrLen:]
	dst, ok := Dst(pkt)
	var r *Route
	if ok {
		r, ok = b.route(dst)
	}
	if !ok {
		b.noRoute.Add(1)
		return nil
	}
	class := r.Class
	if class == ClassDefault && b.cfg.DSCP {
		d, _ := DSCP(pkt)
		class = ClassOfDSCP(d)
	}
	p := b.peer(ctx, wg, r.Name, class)
	if _, super := superMSS(item); super {
		p.c.supers.Add(1)
	}
	return p
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
	b.cfg.Runner.Go(func() { defer wg.Done(); b.send(ctx, wg, p) })
	return p
}

// send allocates p's flow when packets wait, writes them, and closes the
// flow after Idle without any.
func (b *Bridge) send(ctx context.Context, wg *sync.WaitGroup, p *peer) {
	var (
		batch = make([][]byte, 0, sendBatch)
		run   = make([][]byte, 0, sendBatch) // the packets of batch written in one call
		of    *outFlow
		limit int
		retry time.Time // no allocation before this (the last one failed)
		fails int       // writes failed in a row on of
		cut   cutter
		aqm   = codel{target: b.cfg.AQMTarget, interval: b.cfg.AQMInterval}
	)
	idle := time.NewTimer(b.cfg.Idle)
	defer idle.Stop()
	closeFlow := func() {
		if of != nil {
			of.port.Close() // its listen returns
			of = nil
		}
		fails = 0
	}
	defer closeFlow()
	// write writes sdus on the flow and counts them; after failed writes
	// it gives the flow up.
	write := func(sdus [][]byte) {
		n, err := writeSDUs(of.port, sdus)
		p.c.pktsOut.Add(uint64(n))
		var bytes int
		for _, x := range sdus[:n] {
			bytes += len(x)
		}
		p.c.bytesOut.Add(uint64(bytes))
		aqm.written(n, bytes)
		p.c.drops.Add(uint64(len(sdus) - n))
		if err == nil {
			fails = 0
			return
		}
		fails++
		// A closed flow, or one that took nothing for a while: allocate
		// again for the next packet.
		if !errors.Is(err, flow.ErrBusy) && !errors.Is(err, flow.ErrTimeout) || fails >= maxFailedWrites {
			b.cfg.Log.Warn("flow closed after failed writes", "dst", p.name, "err", err, "failed", fails)
			closeFlow()
		}
	}
	// tooBigFor drops pkt, too long for a flow of limit bytes, and
	// answers it.
	tooBigFor := func(pkt []byte, limit int) {
		p.c.drops.Add(1)
		p.c.tooBig.Add(1)
		if msg := tooBig(pkt, limit); msg != nil { // the sender's path MTU comes down
			b.cfg.Dev.Write(msg)
		}
	}
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
			if of != nil {
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
			var took int64
			for _, x := range batch {
				took += int64(len(x) - superHdrLen)
			}
			p.qBytes.Add(-took)
			idle.Reset(b.cfg.Idle)
			if of == nil && time.Now().After(retry) {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				fp, info, err := b.cfg.Broker.Alloc(actx, p.name, p.class.qos(b.cfg.QoS))
				cancel()
				if err != nil {
					p.c.allocErrors.Add(1)
					retry = time.Now().Add(time.Second)
					b.cfg.Log.Warn("allocation failed, packets to it dropped for 1 s", "dst", p.name, "err", err)
				} else {
					of, limit = &outFlow{port: fp}, info.SDULimit()
					aqm.reset()
					p.c.allocs.Add(1)
					b.cfg.Log.Info("flow allocated", "flow", info.ID, "dst", p.name, "class", p.class.String(), "layer", info.Layer, "sdu_limit", limit, sealedAttr(info))
					wg.Add(1)
					f := of
					b.cfg.Runner.Go(func() { defer wg.Done(); b.listen(f) })
				}
			}
			if of != nil && b.cfg.AQMTarget > 0 {
				batch = b.manage(&aqm, p, of, batch)
			}
			// Runs of plain packets that fit go out in one write each;
			// one too big is answered in its place; a super-packet goes
			// whole or in pieces, in a write of its own.
			for i := 0; i < len(batch); {
				pkt := batch[i][superHdrLen:]
				mss, super := superMSS(batch[i])
				switch {
				case of == nil || ctx.Err() != nil: // stopping: a write to a stuck flow would hold Run up to 1 s each
					p.c.drops.Add(1)
					i++
				case super:
					if sdus, big := cut.pieces(batch[i], mss, limit, int(of.takes.Load())); sdus != nil {
						write(sdus)
					} else if big {
						tooBigFor(pkt, limit)
					} else {
						p.c.drops.Add(1) // not a shape the Bridge cuts (the device checked it)
					}
					i++
				case len(pkt) > limit:
					tooBigFor(pkt, limit)
					i++
				default:
					run = run[:0]
					for ; i < len(batch) && len(run) < cap(run); i++ {
						x := batch[i][superHdrLen:]
						if _, s := superMSS(batch[i]); s || len(x) > limit {
							break
						}
						run = append(run, x)
					}
					write(run)
					clear(run)
				}
			}
			for _, pkt := range batch {
				b.putBuf(pkt)
			}
			clear(batch)
		}
	}
}

// listen reads what comes back on f, an allocated flow: the accepting
// Bridge's hello, which says it takes super-packets. It returns when
// the flow is closed.
func (b *Bridge) listen(f *outFlow) {
	var buf [64]byte
	for {
		n, err := f.port.Read(buf[:], time.Time{})
		if errors.Is(err, flow.ErrTruncated) {
			continue
		}
		if err != nil {
			return
		}
		if m, ok := helloMax(buf[:n]); ok {
			f.takes.Store(int32(m))
		}
	}
}

// cutter cuts super-packets for a flow, in buffers it keeps.
type cutter struct {
	bufs  [][]byte
	sizes [maxPieces]int
	sdus  [][]byte
}

// pieces returns the SDUs that carry the super-packet item (its prefix,
// then the packet) on a flow of limit bytes to a Bridge that takes
// super-packet SDUs of up to takes bytes (0: none): the item itself
// where it fits, else pieces of as many whole segments as fit, each a
// super-packet SDU where it has more than one, else a plain segment.
// nil with big where not even one segment fits the flow, nil alone
// where the packet is not a shape the Bridge cuts. The SDUs are valid
// until the next call.
func (c *cutter) pieces(item []byte, mss, limit, takes int) (sdus [][]byte, big bool) {
	pkt := item[superHdrLen:]
	s, ok := parseSuper(pkt, mss)
	if !ok {
		return nil, false
	}
	slim := min(limit, takes)
	if len(item) <= slim {
		return append(c.sdus[:0], item), false
	}
	if s.hdrs()+mss > limit {
		return nil, true
	}
	per := 1
	if takes > 0 {
		per = max(1, (slim-superHdrLen-s.hdrs())/mss)
	}
	n := c.cut(pkt, s, per, superHdrLen)
	if n == 0 {
		return nil, false
	}
	c.sdus = c.sdus[:0]
	for i := range n {
		piece := c.bufs[i][:superHdrLen+c.sizes[i]]
		if c.sizes[i]-s.hdrs() > mss {
			putSuperHdr(piece, mss)
			c.sdus = append(c.sdus, piece)
		} else {
			c.sdus = append(c.sdus, piece[superHdrLen:])
		}
	}
	return c.sdus, false
}

// cut cuts the super-packet pkt (of shape s) into pieces of per
// segments, each behind off bytes, in c's buffers (made as needed), and
// returns how many; 0 where it has more pieces than c keeps.
func (c *cutter) cut(pkt []byte, s superShape, per, off int) int {
	n := (s.segments() + per - 1) / per
	if n > len(c.sizes) {
		return 0
	}
	size := off + s.hdrs() + per*s.mss
	for len(c.bufs) < n {
		c.bufs = append(c.bufs, nil)
	}
	for i := range n {
		if len(c.bufs[i]) < size {
			c.bufs[i] = make([]byte, size)
		}
	}
	return cutSuper(pkt, s, per, c.bufs[:n], c.sizes[:n], off)
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
		limit := info.SDULimit()
		b.cfg.Runner.Go(func() { defer wg.Done(); b.receive(ctx, port, limit) })
	}
}

// receive writes the packets of one accepted flow, whose SDUs are at
// most limit bytes, to the device. It first says, on the flow, that it
// takes super-packets as long as the flow carries (hello).
func (b *Bridge) receive(ctx context.Context, port flow.Port, limit int) {
	stop := context.AfterFunc(ctx, func() { port.Close() })
	defer stop()
	defer port.Close()
	size := max(b.pkt, min(limit, flow.MaxJumboSDU)) // the longest SDU read
	if err := port.Write(hello(size), time.Now().Add(time.Second)); err != nil {
		b.cfg.Log.Debug("hello not sent: the peer sends plain packets only", "err", err)
	}
	if bd, ok := b.cfg.Dev.(BatchDevice); ok {
		if bp, ok := port.(flow.BatchPort); ok {
			b.receiveBatch(bp, bd, size)
		} else {
			b.receivePipe(port, bd, size)
		}
		return
	}
	buf := make([]byte, size)
	var cut cutter
	for {
		n, err := port.Read(buf, time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrTruncated) {
				b.inDrops.Add(1)
				continue
			}
			return
		}
		if mss, ok := superMSS(buf[:n]); ok {
			for _, pkt := range b.unsuper(buf[:n], mss, 0, &cut) {
				b.writeOne(pkt)
			}
			continue
		}
		if _, ok := Dst(buf[:n]); !ok {
			b.inDrops.Add(1)
			continue
		}
		b.writeOne(buf[:n])
	}
}

// writeOne writes pkt to the device, counted.
func (b *Bridge) writeOne(pkt []byte) {
	if _, err := b.cfg.Dev.Write(pkt); err != nil {
		b.inDrops.Add(1)
		return
	}
	b.inPkts.Add(1)
	b.inBytes.Add(uint64(len(pkt)))
}

// unsuper returns the segments of the super-packet SDU sdu (mss-byte
// segments), each behind h bytes of room, for a device that does not
// take super-packets; nil, counted as a drop, where sdu is not a
// super-packet the Bridge cuts. They are valid until the next call.
func (b *Bridge) unsuper(sdu []byte, mss, h int, cut *cutter) [][]byte {
	pkt := sdu[superHdrLen:]
	s, ok := parseSuper(pkt, mss)
	n := 0
	if ok {
		n = cut.cut(pkt, s, 1, h)
	}
	if n == 0 {
		b.inDrops.Add(1)
		return nil
	}
	b.supersIn.Add(1)
	cut.sdus = cut.sdus[:0]
	for i := range n {
		cut.sdus = append(cut.sdus, cut.bufs[i][:h+cut.sizes[i]])
	}
	return cut.sdus
}

// writeSuper writes the super-packet SDU buf[h:h+n] (h: dev's headroom)
// to dev: whole where dev takes super-packets, else as its segments.
func (b *Bridge) writeSuper(dev BatchDevice, buf []byte, h, n, mss int, cut *cutter) {
	if sd, ok := superDevice(dev); ok && h >= superHdrLen {
		// The offload header goes where the prefix and the room before
		// it were.
		pkt := buf[h+superHdrLen : h+n]
		if _, ok := parseSuper(pkt, mss); !ok {
			b.inDrops.Add(1)
			return
		}
		b.supersIn.Add(1)
		if err := sd.WriteSuper(buf[superHdrLen:h+n], mss); err != nil {
			b.inDrops.Add(1)
			return
		}
		b.inPkts.Add(1)
		b.inBytes.Add(uint64(len(pkt)))
		return
	}
	segs := b.unsuper(buf[h:h+n], mss, h, cut)
	if len(segs) == 0 {
		return
	}
	if _, err := dev.WriteBatch(segs); err != nil {
		b.inDrops.Add(uint64(len(segs)))
		return
	}
	b.inPkts.Add(uint64(len(segs)))
	for _, x := range segs {
		b.inBytes.Add(uint64(len(x) - h))
	}
}

// receiveBatch writes the packets of one accepted flow to the device a
// batch at a time: what the flow has ready, up to the device's batch,
// in one write (which, on a TUN with offloads, coalesces a TCP flow's
// consecutive segments: each buffer has room for a super-packet); a
// super-packet SDU in a write of its own.
func (b *Bridge) receiveBatch(port flow.BatchPort, dev BatchDevice, size int) {
	h, n := dev.Headroom(), dev.BatchSize()
	bsize := h + size
	if h > 0 {
		bsize = h + max(size, MaxPacket)
	}
	store := make([][]byte, n) // store[i][h:] is SDU i
	sdus := make([][]byte, n)
	for i := range store {
		store[i] = make([]byte, bsize)
		sdus[i] = store[i][h : h+size]
	}
	sizes := make([]int, n)
	w := batchWriter{b: b, dev: dev, h: h, out: make([][]byte, 0, n)}
	mr, _ := port.(markReader)
	var marks []uint8
	var acc uint32 // the layer's marks summed (passMarked)
	if mr != nil && b.cfg.AQMTarget > 0 {
		marks = make([]uint8, n)
	}
	for {
		var k int
		var err error
		if marks != nil {
			k, err = mr.ReadMarked(sdus, sizes, marks, time.Time{})
		} else {
			k, err = port.ReadBatch(sdus, sizes, time.Time{})
		}
		if errors.Is(err, flow.ErrTruncated) { // the last one: not a packet
			b.inDrops.Add(1)
			k--
		} else if err != nil {
			return
		}
		for i := range k {
			if marks != nil && !b.passMarked(&acc, marks[i], sdus[i][:sizes[i]]) {
				continue
			}
			w.add(store[i], sizes[i])
		}
		w.flush()
	}
}

// batchWriter gathers the packets for one device write; a super-packet
// is written in its place, after those before it.
type batchWriter struct {
	b     *Bridge
	dev   BatchDevice
	h     int
	out   [][]byte
	bytes uint64
	cut   cutter
}

// add adds the SDU buf[h:h+n].
func (w *batchWriter) add(buf []byte, n int) {
	sdu := buf[w.h : w.h+n]
	if mss, ok := superMSS(sdu); ok {
		w.flush()
		w.b.writeSuper(w.dev, buf, w.h, n, mss, &w.cut)
		return
	}
	if _, ok := Dst(sdu); !ok {
		w.b.inDrops.Add(1)
		return
	}
	w.out = append(w.out, buf[:w.h+n])
	w.bytes += uint64(n)
}

// flush writes what add gathered.
func (w *batchWriter) flush() {
	if len(w.out) == 0 {
		return
	}
	if _, err := w.dev.WriteBatch(w.out); err != nil {
		w.b.inDrops.Add(uint64(len(w.out)))
	} else {
		w.b.inPkts.Add(uint64(len(w.out)))
		w.b.inBytes.Add(w.bytes)
	}
	clear(w.out)
	w.out, w.bytes = w.out[:0], 0
}

// receivePipe is receiveBatch for a port without batch calls: one
// goroutine reads SDU after SDU into a ring of buffers while this one
// writes what has arrived, in one batch, so the device still coalesces.
func (b *Bridge) receivePipe(port flow.Port, dev BatchDevice, size int) {
	h, n := dev.Headroom(), dev.BatchSize()
	bsize := h + size
	if h > 0 {
		bsize = h + max(size, MaxPacket)
	}
	type sdu struct{ i, n int }
	store := make([][]byte, n)
	free, full := make(chan int, n), make(chan sdu, n)
	for i := range store {
		store[i] = make([]byte, bsize)
		free <- i
	}
	done := make(chan struct{})
	b.cfg.Runner.Go(func() {
		defer close(done)
		defer close(full)
		for i := range free {
			k, err := port.Read(store[i][h:h+size], time.Time{})
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
	w := batchWriter{b: b, dev: dev, h: h, out: make([][]byte, 0, n)}
	taken := make([]int, 0, n)
	for x := range full {
		taken = taken[:0]
		for {
			taken = append(taken, x.i)
			w.add(store[x.i], x.n)
			var more bool
			select {
			case x, more = <-full:
			default:
			}
			if !more {
				break
			}
		}
		w.flush()
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
			Allocs: c.allocs.Load(), AllocErrors: c.allocErrors.Load(), Supers: c.supers.Load(),
			AQMDrops: c.aqmDrops.Load(), AQMMarks: c.aqmMarks.Load(),
		})
	}
	return routes, b.noRoute.Load(), b.inPkts.Load(), b.inBytes.Load(), b.inDrops.Load()
}

// SupersIn returns how many TCP super-packet SDUs peers sent the Bridge
// (each written to the device whole, or as its segments).
func (b *Bridge) SupersIn() uint64 { return b.supersIn.Load() }
