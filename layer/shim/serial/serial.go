// Package serial is the serial shim: an IPCP that carries flows over one
// point-to-point byte stream (a UART, a pty, a QEMU chardev socket) to its
// one peer, in COBS frames with a CRC-32C, with credit-based flow control
// and a hello/keepalive handshake. It does no routing and no
// retransmission: a corrupted frame is counted and dropped, and FRCT above
// recovers what the flow's QoS asks for.
//
// The link, written once here (docs/wire/serial.md has the format):
//
//   - receive: one goroutine reads the device into a fixed buffer, splits
//     frames with a Decoder (COBS, CRC) and handles each at once: data goes
//     to the session's engine (Input never blocks), a hello drives the
//     handshake, every frame refreshes liveness, the peer's sequence number
//     and the credit it grants. It never writes to the device.
//   - transmit: each flow's goroutine (in the engine) waits for credit,
//     then writes its frame under wmu. Control messages (eid 0) are queued
//     without blocking and sent by the pump goroutine, ahead of data.
//   - pump: sends hellos and keepalives, credit updates and probes, and
//     queued control messages.
//   - watchdog: ends the session when nothing was heard for DeadTime.
//
// A session is one handshake's lifetime with one peer instance; it owns an
// engine (flow table, allocation protocol, name queries over the link).
// When the link dies, the peer says bye, or the peer restarts, the session
// ends: its engine stops, which closes every flow's port.
package serial

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// Device is the byte stream the shim runs on: a UART driver on bare metal,
// a tty or pty (OpenTTY, OpenPTY), a TCP stream to a QEMU chardev socket
// (DialTCP, ListenTCP), or serialtest's cable. Bytes may be lost or
// corrupted; the framing recovers.
type Device interface {
	// Read blocks until bytes arrive and copies them into p (the caller's
	// buffer, not retained). One reader at a time. After Close it returns
	// an error for good.
	Read(p []byte) (int, error)
	// Write writes all of p (the caller's, not retained) or returns an
	// error. It may block while the transmitter drains. The shim calls it
	// from one goroutine at a time; concurrently with Read.
	Write(p []byte) (int, error)
	// Close releases the device and should unblock a blocked Read (a
	// device that cannot should also be a DeadlineDevice).
	Close() error
}

// DeadlineDevice is a Device whose reads can time out (os.File, net.Conn).
// The receive goroutine then wakes up at least every Keepalive, so that
// Stop works even where Close does not unblock a Read.
type DeadlineDevice interface {
	Device
	SetReadDeadline(t time.Time) error
}

var (
	_ ipcp.IPCP          = (*IPCP)(nil)
	_ ipcp.PeerAllocator = (*IPCP)(nil)
)

// Peer identifies the peer instance of a session: the random nonce of its
// hellos. A restarted peer is a new Peer.
type Peer uint64

// String formats p as 16 hex digits.
func (p Peer) String() string { return fmt.Sprintf("serial:%016x", uint64(p)) }

// DefaultWindow is the default credit: a 4 KiB UART driver ring (the
// Raspberry Pi board's) less room for the uncredited link frames that may
// arrive on top of a full window.
const DefaultWindow = 3584

// Config configures a serial shim IPCP.
type Config struct {
	Layer string // the layer (shim instance) name; required
	Name  string // the IPCP's own name; required
	// Device is the byte stream; required. The IPCP closes it on Stop.
	Device   Device
	HashAlgo layer.HashAlgo // how names are hashed on the wire (both ends must agree)
	// Window is the credit this end grants: bytes of frames (encoded size
	// bound, Cost) the peer may send beyond what this end has processed.
	// Size it to the receive buffer below the shim (UART driver ring).
	// Default DefaultWindow; at least MaxEncoded.
	Window int
	// Keepalive is the hello interval (default 1 s). DeadTime without a
	// valid frame from the peer ends the session (default 4 × Keepalive);
	// it must exceed the time a full Window takes on the line.
	Keepalive time.Duration
	DeadTime  time.Duration
	// ProbeInterval is how long a sender waits for credit before it asks
	// the peer for an update (default 250 ms): a lost credit frame costs
	// at most this.
	ProbeInterval time.Duration
	// QueryTimeout bounds a name query when ctx has no deadline (default 1 s).
	QueryTimeout time.Duration
	// AllocTimeout bounds allocations whose ctx has no deadline (default 10 s).
	AllocTimeout time.Duration
	// RetryBase is the first retransmission timeout of alloc requests and
	// name queries, doubling up to 1 s (default 20 ms; raise it on slow
	// lines so that a request is not resent before it left the wire).
	RetryBase time.Duration
	// CacheTTL is how long a query answer is used (default 60 s).
	CacheTTL time.Duration
	// Runner starts the IPCP's goroutines (in a node, its component's
	// kernel PD); required.
	Runner layer.Runner

	// Signer, if set, lets the shim seal flows (QoS.Sealed): the same
	// exchange and sealing as the udp and eth shims (the shared engine,
	// docs/shims.md "Sealed flows"). Seal seals every flow and refuses
	// unsealed requests; SealPeers, if set, are the only node ids at the
	// other end of a sealed flow; SealTicketLife is how long a resumption
	// ticket lasts (0: the default; negative: never resume); SealAEAD,
	// if set, is the only AEAD sealed flows use (zero: negotiated). Seal
	// and SealPeers need Signer.
	Signer         identity.Signer
	Seal           bool
	SealPeers      []string
	SealTicketLife time.Duration
	SealAEAD       seal.AEAD
}

// LinkStats are the serial link's own counters and state, beyond shim.Stats.
type LinkStats struct {
	State        string `json:"state"`         // "down" (no session) or "up"
	Peer         string `json:"peer"`          // the current peer, if up
	Ups          uint64 `json:"ups"`           // sessions started
	Downs        uint64 `json:"downs"`         // sessions ended (dead, bye, peer restart, stop)
	Dead         uint64 `json:"dead"`          // sessions ended by the keepalive timeout
	PeerRestarts uint64 `json:"peer_restarts"` // sessions ended by a new peer nonce or a peer that lost us
	Byes         uint64 `json:"byes"`          // sessions ended by the peer's bye
	FramesIn     uint64 `json:"frames_in"`     // valid frames received
	FramesOut    uint64 `json:"frames_out"`    // frames written
	BytesIn      uint64 `json:"bytes_in"`      // raw bytes read from the device
	BytesOut     uint64 `json:"bytes_out"`     // raw bytes written
	BadCRC       uint64 `json:"bad_crc"`       // frames dropped: CRC mismatch
	BadCOBS      uint64 `json:"bad_cobs"`      // frames dropped: invalid COBS
	TooLong      uint64 `json:"too_long"`      // runs longer than MaxEncoded discarded
	Short        uint64 `json:"short"`         // frames shorter than a header and CRC
	BadHeader    uint64 `json:"bad_header"`    // unknown version or type, wrong length
	CreditStalls uint64 `json:"credit_stalls"` // times a sender had to wait for credit
	Probes       uint64 `json:"probes"`        // credit requests sent
	CreditSent   uint64 `json:"credit_sent"`   // credit frames sent (updates and answers)
}

type linkCounters struct {
	ups, downs, dead, restarts, byes           atomic.Uint64
	framesIn, framesOut, bytesIn, bytesOut     atomic.Uint64
	badCRC, badCOBS, tooLong, short, badHeader atomic.Uint64
	stalls, probes, creditSent                 atomic.Uint64
}

// Why a session ended.
const (
	endDead = iota
	endBye
	endRestart
	endStop
)

// errLinkDown is the transmit error while no session is up (or another
// than the sender's).
var errLinkDown = fmt.Errorf("serial: link down: %w", flow.ErrPeerGone)

// session is one handshake's lifetime with one peer instance.
type session struct {
	peer Peer
	eng  *engine.Engine[Peer]
	down atomic.Bool
}

// ctlSlots bounds the control messages waiting for credit.
const ctlSlots = 16

type ctlMsg struct {
	s   *session
	n   int
	buf [maxCtl]byte
}

// maxCtl bounds a queued control packet: a control message or a sealed
// flow's key-exchange piece, after the frame's header.
const maxCtl = headroom + max(engine.MaxMsgLen, engine.MaxKexLen)

// IPCP is a serial shim IPC process.
type IPCP struct {
	cfg    Config
	seal   *engine.SealConfig // nil: flows are not sealed here
	up     ipcp.Upcalls
	nonce  uint64
	epoch  time.Time
	window uint32
	state  layer.Lifecycle
	c      engine.Counters // link-level drops and errors (per-flow counts live in the sessions' engines)
	ls     linkCounters
	dec    *Decoder // the receive goroutine's

	smu                      sync.Mutex // serialises Start and Stop
	quit                     chan struct{}
	wake                     chan struct{} // kicks the pump; buffered 1
	rxDone, pumpDone, wdDone chan struct{}

	lastHeard  atomic.Int64  // ns since epoch of the last valid frame
	rxSeq      atomic.Uint32 // the peer's Seq in the last frame processed
	advertised atomic.Uint32 // the Limit last written
	helloNow   atomic.Bool
	creditNow  atomic.Bool

	mu       sync.Mutex // guards what follows, session transitions
	names    map[string]struct{}
	seen     uint64                  // the peer nonce last heard (0: none), echoed in hellos
	sess     atomic.Pointer[session] // the session up; written under mu
	upCh     chan struct{}           // closed when a session comes up; renewed when it ends
	live     map[*session]struct{}   // sessions whose engines still count
	retired  shim.Stats              // the counters of finished sessions
	retiring sync.WaitGroup

	cmu        sync.Mutex // guards the credit state and the control queue; never held across I/O
	cond       *sync.Cond // on cmu: credit or session changed
	peerLimit  uint32     // the peer's Limit
	reserved   uint32     // credited bytes reserved by senders (≥ txSeq)
	stallSince int64      // ns since epoch a sender began waiting; 0: nobody waits
	ctl        [ctlSlots]ctlMsg
	ctlHead    int
	ctlN       int

	wmu   sync.Mutex // serialises device writes; guards txSeq and wbuf
	txSeq uint32     // our credited byte count
	wbuf  []byte
}

// New checks cfg and returns an IPCP in state "init"; Start starts the link.
func New(cfg Config, up ipcp.Upcalls) (*IPCP, error) {
	if cfg.Layer == "" || cfg.Name == "" {
		return nil, fmt.Errorf("serial: config needs a layer and a name: %w", flow.ErrInvalid)
	}
	if up == nil {
		return nil, fmt.Errorf("serial: %s: no upcalls: %w", cfg.Name, flow.ErrInvalid)
	}
	if cfg.Device == nil {
		return nil, fmt.Errorf("serial: %s: config needs a device: %w", cfg.Name, flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("serial: " + cfg.Name)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Window < MaxEncoded || cfg.Window > 1<<30 {
		return nil, fmt.Errorf("serial: %s: window %d outside [%d, 2^30]: %w", cfg.Name, cfg.Window, MaxEncoded, flow.ErrInvalid)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Keepalive, time.Second)
	def(&cfg.DeadTime, 4*cfg.Keepalive)
	def(&cfg.ProbeInterval, 250*time.Millisecond)
	def(&cfg.QueryTimeout, time.Second)
	if cfg.DeadTime <= cfg.Keepalive {
		return nil, fmt.Errorf("serial: %s: dead time %v not above keepalive %v: %w", cfg.Name, cfg.DeadTime, cfg.Keepalive, flow.ErrInvalid)
	}
	sc, err := engine.SealFrom("serial", cfg.Layer, cfg.Name, cfg.Signer, cfg.Seal, cfg.SealPeers, cfg.SealTicketLife, cfg.SealAEAD)
	if err != nil {
		return nil, err
	}
	var nb [8]byte
	rand.Read(nb[:])
	p := &IPCP{
		cfg:    cfg,
		seal:   sc,
		up:     up,
		nonce:  binary.BigEndian.Uint64(nb[:]) | 1, // never 0: 0 means "none" in hellos
		epoch:  time.Now(),
		window: uint32(cfg.Window),
		dec:    NewDecoder(),
		quit:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		rxDone: make(chan struct{}), pumpDone: make(chan struct{}), wdDone: make(chan struct{}),
		names: make(map[string]struct{}),
		live:  make(map[*session]struct{}),
		wbuf:  make([]byte, 0, MaxEncoded+1),
	}
	p.cond = sync.NewCond(&p.cmu)
	return p, nil
}

// Start starts the receive, pump and watchdog goroutines; the handshake
// begins at once.
func (p *IPCP) Start() error {
	p.smu.Lock()
	defer p.smu.Unlock()
	if !p.state.CompareAndSwap(layer.StateInit, layer.StateOperational) {
		return fmt.Errorf("serial: %s: start in state %s: %w", p.cfg.Name, p.state.Load(), flow.ErrInvalid)
	}
	p.lastHeard.Store(p.now())
	p.helloNow.Store(true)
	p.cfg.Runner.Go(p.rxLoop)
	p.cfg.Runner.Go(p.pump)
	p.cfg.Runner.Go(p.watchdog)
	return nil
}

// Stop deallocates every flow (telling the peer), says bye, closes the
// device and waits for the IPCP's goroutines. Idempotent; an IPCP is not
// restarted.
func (p *IPCP) Stop() {
	p.smu.Lock()
	defer p.smu.Unlock()
	old := p.state.Swap(layer.StateShutdown)
	if old != layer.StateOperational {
		if old == layer.StateInit {
			p.cfg.Device.Close()
		}
		return
	}
	p.mu.Lock()
	s := p.sess.Load()
	p.mu.Unlock()
	if s != nil {
		s.eng.Stop() // queues the deallocs, which the pump flushes
	}
	close(p.quit)
	t := time.NewTimer(max(p.cfg.ProbeInterval, 200*time.Millisecond))
	select {
	case <-p.pumpDone:
	case <-t.C:
	}
	t.Stop()
	if s != nil {
		p.end(s, endStop)
	}
	p.cfg.Device.Close()
	<-p.pumpDone
	<-p.rxDone
	<-p.wdDone
	p.retiring.Wait()
}

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "serial", State: p.state.Load().String()}
}

// Register implements ipcp.IPCP: name answers the peer's queries and accepts
// its flows.
func (p *IPCP) Register(_ context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("serial: register: empty name: %w", flow.ErrInvalid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.names[name]; ok {
		return fmt.Errorf("serial: register %q: %w", name, flow.ErrExists)
	}
	p.names[name] = struct{}{}
	if s := p.sess.Load(); s != nil {
		s.eng.Register(name)
	}
	return nil
}

// Unregister implements ipcp.IPCP.
func (p *IPCP) Unregister(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.names[name]; !ok {
		return fmt.Errorf("serial: unregister %q: %w", name, flow.ErrNotFound)
	}
	delete(p.names, name)
	if s := p.sess.Load(); s != nil {
		s.eng.Unregister(name)
	}
	return nil
}

// Query implements ipcp.IPCP: it asks the peer whether it holds name
// (unless a cached answer is fresh), waiting until ctx ends or
// Config.QueryTimeout — for the link to come up, too, if it is down. No
// answer, or the link still down, is flow.ErrNotFound.
func (p *IPCP) Query(ctx context.Context, name string) error {
	_, err := p.resolve(ctx, name)
	return err
}

func (p *IPCP) resolve(ctx context.Context, name string) (*session, error) {
	if err := p.state.Ready("serial", "query", name); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.QueryTimeout)
		defer cancel()
	}
	s := p.linkUp(ctx)
	if s == nil {
		return nil, fmt.Errorf("serial: query %q: link down: %w (%w)", name, flow.ErrNotFound, flow.ErrPeerGone)
	}
	if _, err := s.eng.Resolve(ctx, name); err != nil {
		return nil, err
	}
	return s, nil
}

// Alloc implements ipcp.IPCP: it asks the peer whether it holds req.Dst,
// then allocates there, retransmitting until ctx ends (Config.AllocTimeout
// without a deadline). The link down is flow.ErrNotFound and
// flow.ErrPeerGone; a refusal flow.ErrNotFound, flow.ErrRefused or
// flow.ErrBusy; silence flow.ErrTimeout.
func (p *IPCP) Alloc(ctx context.Context, req ipcp.AllocReq, port flow.Port) error {
	_, err := p.AllocPeer(ctx, req, port)
	return err
}

// AllocPeer implements ipcp.PeerAllocator: Alloc that also returns, for a
// sealed flow, the verified peer and the smaller SDU limit sealing leaves.
func (p *IPCP) AllocPeer(ctx context.Context, req ipcp.AllocReq, port flow.Port) (ipcp.AllocResult, error) {
	if port == nil {
		return ipcp.AllocResult{}, fmt.Errorf("serial: alloc %q: nil port: %w", req.Dst, flow.ErrInvalid)
	}
	s, err := p.resolve(ctx, req.Dst)
	if err != nil {
		p.c.AllocFailed.Add(1)
		return ipcp.AllocResult{}, fmt.Errorf("serial: alloc: %w", err)
	}
	res, err := s.eng.AllocPeer(ctx, s.peer, req, port)
	if errors.Is(err, flow.ErrNotFound) || errors.Is(err, flow.ErrTimeout) {
		s.eng.Forget(req.Dst)
	}
	return res, err
}

// Stats returns the IPCP's counters, summed over its sessions.
func (p *IPCP) Stats() shim.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := addStats(p.retired, p.c.Snapshot())
	for s := range p.live {
		st = addStats(st, s.eng.C.Snapshot())
	}
	return st
}

// Flows lists the open flows.
func (p *IPCP) Flows() []shim.FlowInfo {
	if s := p.sess.Load(); s != nil {
		return s.eng.Flows()
	}
	return []shim.FlowInfo{}
}

// Link returns the link's state and counters.
func (p *IPCP) Link() LinkStats {
	l := &p.ls
	st := LinkStats{
		State: "down",
		Ups:   l.ups.Load(), Downs: l.downs.Load(), Dead: l.dead.Load(),
		PeerRestarts: l.restarts.Load(), Byes: l.byes.Load(),
		FramesIn: l.framesIn.Load(), FramesOut: l.framesOut.Load(),
		BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(),
		BadCRC: l.badCRC.Load(), BadCOBS: l.badCOBS.Load(), TooLong: l.tooLong.Load(),
		Short: l.short.Load(), BadHeader: l.badHeader.Load(),
		CreditStalls: l.stalls.Load(), Probes: l.probes.Load(), CreditSent: l.creditSent.Load(),
	}
	if s := p.sess.Load(); s != nil {
		st.State, st.Peer = "up", s.peer.String()
	}
	return st
}

func (p *IPCP) now() int64 { return int64(time.Since(p.epoch)) }

func (p *IPCP) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// ---- sessions

// start begins a session with peer. Called with mu held.
func (p *IPCP) start(peer Peer) {
	s := &session{peer: peer}
	eng, err := engine.New(engine.Config[Peer]{
		Kind:      "serial",
		Wire:      wire{p, s},
		Headroom:  headroom,
		Broadcast: peer,
		Upcalls:   p.up,
		HashAlgo:  p.cfg.HashAlgo,
		Timeout:   p.cfg.AllocTimeout,
		RetryBase: p.cfg.RetryBase,
		CacheTTL:  p.cfg.CacheTTL,
		Runner:    p.cfg.Runner,
		Seal:      p.seal,
	})
	if err != nil {
		panic(err) // only a nil Runner, which New refused
	}
	s.eng = eng
	s.eng.Start()
	for name := range p.names {
		s.eng.Register(name)
	}
	p.live[s] = struct{}{}
	p.sess.Store(s)
	if p.upCh != nil {
		close(p.upCh)
		p.upCh = nil
	}
	p.ls.ups.Add(1)
}

// linkUp waits until a session is up or ctx ends: just after Start, or
// while a peer reboots, a query waits for the link rather than failing.
func (p *IPCP) linkUp(ctx context.Context) *session {
	for {
		p.mu.Lock()
		s := p.sess.Load()
		if s != nil || p.state.Load() != layer.StateOperational {
			p.mu.Unlock()
			return s
		}
		if p.upCh == nil {
			p.upCh = make(chan struct{})
		}
		ch := p.upCh
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
}

// end ends session s (if it is still the current one): its engine stops in
// the background, closing every flow.
func (p *IPCP) end(s *session, why int) {
	p.mu.Lock()
	ok := p.endLocked(s, why)
	p.mu.Unlock()
	if ok {
		p.afterEnd()
	}
}

// endLocked takes s down; the caller calls afterEnd after unlocking mu.
func (p *IPCP) endLocked(s *session, why int) bool {
	if p.sess.Load() != s {
		return false
	}
	p.sess.Store(nil)
	s.down.Store(true)
	p.ls.downs.Add(1)
	switch why {
	case endDead:
		p.ls.dead.Add(1)
		p.seen = 0
	case endBye:
		p.ls.byes.Add(1)
		p.seen = 0
	case endRestart:
		p.ls.restarts.Add(1)
	}
	p.retiring.Add(1)
	p.cfg.Runner.Go(func() {
		defer p.retiring.Done()
		s.eng.Stop()
		s.eng.Wait()
		st := s.eng.C.Snapshot()
		st.FlowsActive = 0
		p.mu.Lock()
		delete(p.live, s)
		p.retired = addStats(p.retired, st)
		p.mu.Unlock()
	})
	return true
}

// afterEnd wakes the senders waiting for credit (they fail) and announces
// the new state.
func (p *IPCP) afterEnd() {
	p.cmu.Lock()
	p.cond.Broadcast()
	p.cmu.Unlock()
	p.helloNow.Store(true)
	p.kick()
}

// onHello runs the handshake: the link is up with peer n once n says it
// has heard us (seen is our nonce).
func (p *IPCP) onHello(n, seen uint64) {
	p.mu.Lock()
	if p.state.Load() != layer.StateOperational {
		p.mu.Unlock()
		return
	}
	ended := false
	s := p.sess.Load()
	if s != nil && (Peer(n) != s.peer || seen != p.nonce) {
		// The peer restarted (a new nonce), or it lost our session.
		ended = p.endLocked(s, endRestart)
		s = nil
	}
	announce := false
	if p.seen != n {
		p.seen = n
		announce = true
	}
	if s == nil && seen == p.nonce {
		p.start(Peer(n))
		announce = true
	}
	p.mu.Unlock()
	if ended {
		p.afterEnd()
	}
	if announce {
		p.helloNow.Store(true)
		p.kick()
	}
}

func (p *IPCP) onBye(n uint64) {
	p.mu.Lock()
	s := p.sess.Load()
	ended := s != nil && s.peer == Peer(n) && p.endLocked(s, endBye)
	if p.seen == n {
		p.seen = 0
	}
	p.mu.Unlock()
	if ended {
		p.afterEnd()
	}
}

// watchdog ends a session that went silent, and forgets a silent
// candidate peer so that our hellos restart the handshake.
func (p *IPCP) watchdog() {
	defer close(p.wdDone)
	t := time.NewTicker(max(p.cfg.DeadTime/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.quit:
			return
		}
		if p.now()-p.lastHeard.Load() <= int64(p.cfg.DeadTime) {
			continue
		}
		if s := p.sess.Load(); s != nil {
			p.end(s, endDead)
		}
		p.mu.Lock()
		p.seen = 0
		p.mu.Unlock()
	}
}

// ---- receive

func (p *IPCP) rxLoop() {
	defer close(p.rxDone)
	buf := make([]byte, 4096)
	dd, _ := p.cfg.Device.(DeadlineDevice)
	backoff := time.Duration(0)
	for {
		if dd != nil {
			dd.SetReadDeadline(time.Now().Add(p.cfg.Keepalive))
		}
		n, err := p.cfg.Device.Read(buf)
		if n > 0 {
			p.ls.bytesIn.Add(uint64(n))
			p.feed(buf[:n])
		}
		if err == nil {
			backoff = 0
			continue
		}
		if p.state.Load() == layer.StateShutdown || errors.Is(err, net.ErrClosed) ||
			errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		p.c.RxError.Add(1)
		backoff = min(max(2*backoff, 100*time.Microsecond), 50*time.Millisecond)
		time.Sleep(backoff)
	}
}

// feed decodes the frames in b and handles them; it allocates nothing for
// data frames.
func (p *IPCP) feed(b []byte) {
	for len(b) > 0 {
		k, h, err := p.dec.Next(b)
		b = b[k:]
		switch {
		case err == nil && h != nil:
			p.input(h)
		case err == nil:
		case errors.Is(err, ErrCRC):
			p.ls.badCRC.Add(1)
			p.c.Malformed.Add(1)
		case errors.Is(err, ErrCOBS):
			p.ls.badCOBS.Add(1)
			p.c.Malformed.Add(1)
		case errors.Is(err, ErrFrameTooLong):
			p.ls.tooLong.Add(1)
			p.c.Malformed.Add(1)
		default:
			p.ls.short.Add(1)
			p.c.Malformed.Add(1)
		}
	}
}

// input handles one frame whose CRC matched.
func (p *IPCP) input(h Header) {
	if !h.IsValid() {
		p.ls.badHeader.Add(1)
		p.c.Malformed.Add(1)
		return
	}
	p.ls.framesIn.Add(1)
	p.lastHeard.Store(p.now())
	seq := h.Seq()
	p.rxSeq.Store(seq)
	if int32(seq+p.window-p.advertised.Load()) >= int32(p.window/4) || h.Flags()&FlagProbe != 0 {
		p.creditNow.Store(true)
		p.kick()
	}
	p.setLimit(h.Limit())
	switch h.Type() {
	case TypeData:
		s := p.sess.Load()
		if s == nil {
			p.c.NotForUs.Add(1) // no session: the handshake is not complete
			return
		}
		s.eng.Input(h.Payload(), s.peer, h.EID())
	case TypeHello:
		p.onHello(h.Nonce(), h.Seen())
	case TypeBye:
		p.onBye(h.Nonce())
	}
}

// setLimit records the credit the peer grants and wakes the senders.
func (p *IPCP) setLimit(l uint32) {
	p.cmu.Lock()
	if l == p.peerLimit {
		p.cmu.Unlock()
		return
	}
	p.peerLimit = l
	ctl := p.ctlN > 0
	p.cond.Broadcast()
	p.cmu.Unlock()
	if ctl {
		p.kick()
	}
}

// ---- transmit

// wire puts a session's engine packets on the link.
type wire struct {
	p *IPCP
	s *session
}

// Send implements engine.Wire: control messages are queued for the pump
// (never blocking, so the receive goroutine may send); data waits for
// credit and is written at once.
func (w wire) Send(pkt []byte, dst Peer, eid uint32) error {
	p, s := w.p, w.s
	if s.down.Load() || dst != s.peer {
		return errLinkDown
	}
	if eid == 0 {
		return p.enqueue(s, pkt)
	}
	h := Header(pkt)
	h.SetEID(eid)
	cost := Cost(len(pkt) + CRCLen)
	if err := p.acquire(s, cost); err != nil {
		return err
	}
	return p.write(h, TypeData, 0, cost, false)
}

var errCtlFull = fmt.Errorf("serial: control queue full: %w", flow.ErrBusy)

// enqueue copies a control packet into the queue and kicks the pump.
func (p *IPCP) enqueue(s *session, pkt []byte) error {
	p.cmu.Lock()
	if p.ctlN == ctlSlots || len(pkt) > len(p.ctl[0].buf) {
		p.cmu.Unlock()
		return errCtlFull
	}
	m := &p.ctl[(p.ctlHead+p.ctlN)%ctlSlots]
	m.s, m.n = s, copy(m.buf[:], pkt)
	p.ctlN++
	p.cmu.Unlock()
	p.kick()
	return nil
}

// acquire reserves cost bytes of the peer's credit for a data frame of s,
// waiting while there is not enough or control messages are queued.
func (p *IPCP) acquire(s *session, cost uint32) error {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	for {
		if s.down.Load() {
			return errLinkDown
		}
		if p.ctlN == 0 && int32(p.peerLimit-(p.reserved+cost)) >= 0 {
			p.reserved += cost
			p.stallSince = 0
			return nil
		}
		if p.stallSince == 0 {
			p.stallSince = max(p.now(), 1)
			p.ls.stalls.Add(1)
		}
		p.cond.Wait()
	}
}

// write finishes the header of body (type, flags, our Seq advanced by
// cost, the Limit we grant), encodes the frame and writes it. lead puts a
// delimiter first, ending any garbage at the receiver.
func (p *IPCP) write(body Header, t FrameType, flags uint8, cost uint32, lead bool) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.txSeq += cost
	lim := p.rxSeq.Load() + p.window
	body.SetHeader(t, flags, p.txSeq, lim)
	b := p.wbuf[:0]
	if lead {
		b = append(b, Delimiter)
	}
	b = AppendFrame(b, body)
	p.advertised.Store(lim)
	n, err := p.cfg.Device.Write(b)
	p.ls.bytesOut.Add(uint64(n))
	if err != nil {
		return fmt.Errorf("serial: write: %w", err)
	}
	p.ls.framesOut.Add(1)
	return nil
}

// pump sends hellos, credit frames and queued control messages.
func (p *IPCP) pump() {
	defer close(p.pumpDone)
	tick := time.NewTicker(max(min(p.cfg.Keepalive, p.cfg.ProbeInterval)/2, time.Millisecond))
	defer tick.Stop()
	body := make([]byte, maxCtl)
	lastHello, lastProbe := int64(-1<<62), int64(-1<<62)
	for {
		quit := false
		select {
		case <-p.wake:
		case <-tick.C:
		case <-p.quit:
			quit = true
		}
		now := p.now()
		if p.helloNow.Swap(false) || now-lastHello >= int64(p.cfg.Keepalive) {
			lastHello = now
			p.mu.Lock()
			seen := p.seen
			p.mu.Unlock()
			h := Header(body[:HelloLen])
			h.SetHello(p.nonce, seen)
			p.linkWrite(h, TypeHello, 0, true)
		}
		if p.creditNow.Swap(false) {
			p.ls.creditSent.Add(1)
			p.linkWrite(Header(body[:HeaderLen]), TypeCredit, 0, false)
		}
		p.sendCtl(body)
		if p.stalled(now) && now-lastProbe >= int64(p.cfg.ProbeInterval) {
			lastProbe = now
			p.ls.probes.Add(1)
			p.linkWrite(Header(body[:HeaderLen]), TypeCredit, FlagProbe, false)
		}
		if quit {
			h := Header(body[:ByeLen])
			h.SetNonce(p.nonce)
			p.linkWrite(h, TypeBye, 0, true)
			return
		}
	}
}

// linkWrite writes an uncredited link frame, counting a failure.
func (p *IPCP) linkWrite(h Header, t FrameType, flags uint8, lead bool) {
	if err := p.write(h, t, flags, 0, lead); err != nil {
		p.c.TxError.Add(1)
	}
}

// sendCtl writes the queued control messages the peer's credit allows.
func (p *IPCP) sendCtl(body []byte) {
	for {
		p.cmu.Lock()
		if p.ctlN == 0 {
			p.cmu.Unlock()
			return
		}
		m := &p.ctl[p.ctlHead]
		if m.s != p.sess.Load() { // its session ended: the message is moot
			p.popCtl()
			p.cmu.Unlock()
			continue
		}
		cost := Cost(m.n + CRCLen)
		if int32(p.peerLimit-(p.reserved+cost)) < 0 {
			if p.stallSince == 0 {
				p.stallSince = max(p.now(), 1)
				p.ls.stalls.Add(1)
			}
			p.cmu.Unlock()
			return
		}
		p.reserved += cost
		n := copy(body, m.buf[:m.n])
		p.popCtl()
		p.cmu.Unlock()
		if err := p.write(Header(body[:n]), TypeData, 0, cost, false); err != nil {
			p.c.TxError.Add(1)
		}
	}
}

// popCtl drops the queue's head and, once it is empty, lets data go.
// Called with cmu held.
func (p *IPCP) popCtl() {
	p.ctl[p.ctlHead].s = nil
	p.ctlHead = (p.ctlHead + 1) % ctlSlots
	p.ctlN--
	if p.ctlN == 0 {
		p.stallSince = 0
		p.cond.Broadcast()
	}
}

// stalled reports whether a sender has waited for credit for a probe
// interval.
func (p *IPCP) stalled(now int64) bool {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	return p.stallSince != 0 && now-p.stallSince >= int64(p.cfg.ProbeInterval)
}

// addStats sums two counter snapshots.
func addStats(a, b shim.Stats) shim.Stats {
	a.PacketsIn += b.PacketsIn
	a.BytesIn += b.BytesIn
	a.PacketsOut += b.PacketsOut
	a.BytesOut += b.BytesOut
	a.CtlIn += b.CtlIn
	a.CtlOut += b.CtlOut
	a.FlowsOut += b.FlowsOut
	a.FlowsIn += b.FlowsIn
	a.FlowsActive += b.FlowsActive
	a.AllocRetries += b.AllocRetries
	a.AllocFailed += b.AllocFailed
	a.FlowsExpired += b.FlowsExpired
	a.NamesAnnounced += b.NamesAnnounced
	a.NamesHeard += b.NamesHeard
	a.QuickNotFound += b.QuickNotFound
	a.KexFailed += b.KexFailed
	a.SealResumed += b.SealResumed
	a.SealNoTicket += b.SealNoTicket
	a.RxStalls += b.RxStalls
	d, e := &a.Drops, b.Drops
	d.Malformed += e.Malformed
	d.NotForUs += e.NotForUs
	d.UnknownFlow += e.UnknownFlow
	d.Pending += e.Pending
	d.WrongPeer += e.WrongPeer
	d.RxFull += e.RxFull
	d.Truncated += e.Truncated
	d.TxError += e.TxError
	d.RxError += e.RxError
	d.Busy += e.Busy
	d.PeerLimit += e.PeerLimit
	d.Tampered += e.Tampered
	d.Replayed += e.Replayed
	d.SocketOverflow += e.SocketOverflow
	return a
}
