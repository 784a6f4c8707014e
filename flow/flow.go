// Package flow is the application API of ouro: flows to names with a QoS
// spec (Flow, Client, net.Conn and net.Listener adapters, event sets), and
// the contracts providers implement (Port, Broker). It is not a layer: it
// never sees addresses, and layers use it exactly as applications do.
package flow

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow/frct"
)

// How a Flow works (the locking is written once, here):
//
//   - Every Flow runs one goroutine, rxLoop (started through the port's
//     Go where it has one: see goer), that reads packets from the port
//     until the port reports ErrClosed: a run of up to rxBatch per read
//     where the port is a BatchPort (one ring operation and one wake-up
//     per run), one at a time otherwise. With FRCT it hands them to the
//     frct.Conn, the run under one lock; without, it queues the run as
//     one rawBatch on rawQ (bounded: when the application does not read,
//     rxLoop stops reading the port and the port's back-pressure reaches
//     the sender). Readers take SDUs out of the batch at the head (rcur,
//     under rmu), so a reader's wake-up and queue operation is paid per
//     run, not per SDU; rawReady counts what is queued or in rcur, for
//     Sets (readers look at rcur and rawQ themselves).
//   - With FRCT, one runtime timer (time.AfterFunc, no goroutine while it
//     waits) fires at frct's Next and writes what frct.Poll says is due:
//     retransmissions, ACKs, window updates, rendezvous, FIN, keepalives.
//   - Application Writes frame SDUs with frct.Send and write them to the
//     port themselves; Reads take SDUs from frct (or rawQ).
//
// Locks: txMu serialises writes to the port and guards txPkt and ctlPkt;
// rmu serialises raw readers and guards rcur; mu guards everything else
// (the frct.Conn included). Order: txMu, then rmu, then mu, then setsMu,
// then a Set's lock. Nobody holds mu across a port call. ReadWith's
// use runs with drmu held where it reads in place, with rwMu held (taken
// before rmu and drmu) where it reads into the Flow's buffer: it must
// not read the Flow itself.
// Waiters (Read, Write, Close) sleep on 1-token channels that whoever
// changes the state they wait for signals.

// DefaultLinger bounds how long Close waits for the peer to acknowledge
// what was sent, with FRCT.
const DefaultLinger = 5 * time.Second

// rxBatch is how many SDUs rxLoop reads from a BatchPort at once: a
// shared ring's slots (shmring.DefaultSlots), half a kernel ring batch.
const rxBatch = 16

// rawQueue is how many runs (of up to rxBatch SDUs) a Flow without FRCT
// queues between its port and its reader. With the run the reader is in
// and the one rxLoop fills, a flow holds at most rawQueue+2 runs' buffers
// (rxBatch × the flow's SDU limit each, made as a backlog needs them:
// 90 KB at most for SDUs of MaxSDU).
const rawQueue = 2

// rawBatch is a run of SDUs rxLoop read from the port in one call, in
// buffers of the port's SDU limit carved from one array.
type rawBatch struct {
	bufs  [rxBatch][]byte
	sizes [rxBatch]int
	n     int // SDUs in it
	next  int // the next to read
}

func newRawBatch(size int) *rawBatch {
	b := new(rawBatch)
	slab := make([]byte, rxBatch*size)
	for i := range b.bufs {
		b.bufs[i] = slab[i*size : (i+1)*size : (i+1)*size]
	}
	return b
}

// ctlWriteTimeout bounds a port write of a control packet or retransmission:
// past it the packet is dropped, and FRCT will send it again if it matters.
const ctlWriteTimeout = time.Second

// Option configures a Flow made by New.
type Option func(*options)

type options struct {
	linger time.Duration
	frct   func(*frct.Config)
}

// WithLinger sets how long Close waits for the peer to acknowledge data
// and the FIN before closing the port (default DefaultLinger).
func WithLinger(d time.Duration) Option { return func(o *options) { o.linger = d } }

// WithFRCT adjusts the FRCT configuration derived from the QoS spec (for
// example the window size) before the flow starts.
func WithFRCT(f func(*frct.Config)) Option { return func(o *options) { o.frct = f } }

// Stats counts what a Flow carried.
type Stats struct {
	SentSDUs    uint64        // SDUs written
	SentBytes   uint64        // bytes of those SDUs
	RecvSDUs    uint64        // SDUs read
	RecvBytes   uint64        // bytes of those SDUs
	Retransmits uint64        // FRCT retransmissions
	Drops       uint64        // packets dropped: malformed, duplicate, out of window, or too big
	Lost        uint64        // SDUs given up on by FRCT's max-gap (loss-tolerant in-order flows)
	RTT         time.Duration // FRCT's smoothed round-trip time
}

// Flow is an allocated flow as an application uses it: whole SDUs over a
// Port, with FRCT when the QoS spec asks for ordering or reliability.
// Read and Write preserve SDU boundaries; *Flow also satisfies net.Conn
// (see conn.go). All methods are safe for concurrent use.
type Flow struct {
	port   Port
	info   Info
	maxSDU int
	linger time.Duration

	txMu   sync.Mutex
	txPkt  []byte // application data packets
	ctlPkt []byte // timer packets

	wwMu  sync.Mutex
	wwBuf []byte // WriteWith's buffer where the port does not take SDUs in place

	rwMu  sync.Mutex
	rwBuf []byte // ReadWith's buffer where the SDU is not read in place

	mu         sync.Mutex
	eng        *frct.Conn // nil without FRCT
	timer      *time.Timer
	timerAt    time.Time // when timer is armed for; zero: not armed
	readDL     time.Time
	writeDL    time.Time
	closing    bool  // Close was called
	portClosed bool  // the port is closed (by Close)
	rxErr      error // why rxLoop ended (the port reported it closed)
	stats      Stats
	rawQ       chan *rawBatch // without FRCT: received runs of SDUs
	rawFree    chan *rawBatch // without FRCT: batches to reuse
	rawSpace   chan struct{}
	rawReady   atomic.Int64 // without FRCT: SDUs in rawQ and rcur not yet read

	rmu  sync.Mutex // serialises raw readers; guards rcur
	rcur *rawBatch  // the batch raw readers take SDUs from

	// Without FRCT, over a port its readers may read themselves (shared
	// rings): direct holds that port while they do, and no rxLoop runs
	// until a Set watches the flow (queueReads). rxStarted is guarded by
	// mu. drmu serialises the readers of the port: direct ones hold it
	// across their read, and an rxLoop started later waits for the one
	// in progress.
	direct    atomic.Pointer[directPort]
	rxStarted bool
	drmu      sync.Mutex
	// A direct ReadWith's use and the length of the SDU it was given,
	// through one function made once (dwUse), so that the port's
	// ReadWith gets the same func value every time and nothing is
	// allocated per SDU. Guarded by drmu.
	dwFn  func(sdu []byte)
	dwLen int
	dwUse func(sdu []byte)

	readable chan struct{} // token: something changed for readers
	writable chan struct{} // token: something changed for writers
	progress chan struct{} // token: something changed for Close
	closedCh chan struct{} // closed by Close
	rxDone   chan struct{} // closed when rxLoop returns

	setsMu sync.Mutex
	sets   []*Set

	closeOnce sync.Once
	closeErr  error
}

// New makes a Flow over port, which it takes ownership of. info.QoS decides
// whether FRCT runs (QoS.NeedsFRCT) and in which mode; both ends of a flow
// must be made with the same QoS. The Flow runs a goroutine until Close.
func New(port Port, info Info, opts ...Option) (*Flow, error) {
	o := options{linger: DefaultLinger}
	for _, opt := range opts {
		opt(&o)
	}
	f := &Flow{
		port:     port,
		info:     info,
		maxSDU:   info.SDULimit(),
		linger:   o.linger,
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
		progress: make(chan struct{}, 1),
		closedCh: make(chan struct{}),
		rxDone:   make(chan struct{}),
	}
	if cfg, ok := frctConfig(info.QoS, info.SDULimit()); ok {
		if o.frct != nil {
			o.frct(&cfg)
		}
		eng, err := frct.New(cfg, time.Now())
		if err != nil {
			return nil, fmt.Errorf("flow: new flow %d: %w: %w", info.ID, ErrInvalid, err)
		}
		f.eng = eng
		f.maxSDU = eng.Config().MaxSDU
		f.txPkt = make([]byte, frct.HeaderSize+f.maxSDU)
		f.ctlPkt = make([]byte, frct.HeaderSize+f.maxSDU)
		f.timer = time.AfterFunc(time.Hour, f.onTimer)
		f.timer.Stop()
	} else {
		f.rawQ = make(chan *rawBatch, rawQueue)
		f.rawFree = make(chan *rawBatch, rawQueue+2) // queued, rcur, rxLoop's
		f.rawSpace = make(chan struct{}, 1)
	}
	if f.eng != nil {
		f.mu.Lock()
		f.armTimer(time.Now()) // keepalives and silence detection
		f.mu.Unlock()
	}
	if d, ok := port.(directReader); ok && f.eng == nil {
		ip, _ := port.(InPlacePort)
		f.direct.Store(&directPort{r: d, ip: ip})
		return f, nil
	}
	f.rxStarted = true
	goVia(port, f.rxLoop)
	return f, nil
}

// directReader is a BatchPort whose reads a raw Flow's readers make
// themselves (the shared rings of a hosted program: ShmPort): each SDU
// is copied once, from the ring into the reader's buffer, and no
// goroutine hands it over. interruptRead makes the read in progress (or
// the next) return errInterrupted, so that a reader sees a new deadline.
type directReader interface {
	BatchPort
	interruptRead()
}

// directPort is a Flow's directReader while its readers read it, and
// the same port as an InPlacePort where it is one (ReadWith reads it in
// place; nil otherwise).
type directPort struct {
	r  directReader
	ip InPlacePort
}

// errInterrupted is what a directReader's read returns when
// interruptRead woke it.
var errInterrupted = errors.New("flow: read interrupted")

// queueReads ends direct reading (a Set watches the flow: readiness is
// what rxLoop queues) and starts rxLoop, once. The direct read in
// progress, if any, is woken; rxLoop reads after it returned.
func (f *Flow) queueReads() {
	f.mu.Lock()
	dp := f.direct.Swap(nil)
	start := dp != nil && !f.portClosed
	if start {
		f.rxStarted = true
	}
	f.mu.Unlock()
	if dp != nil {
		dp.r.interruptRead()
	}
	if start {
		goVia(f.port, func() {
			f.drmu.Lock() // the direct read in progress ends first
			f.drmu.Unlock()
			f.rxLoop()
		})
	}
}

// goer is an optional Port or Broker operation, found by type assertion:
// Go starts f as a goroutine of the component the port or broker belongs
// to (the node's ring ports give their kernel PD's), so that a panic in f is a fault of that
// component, not a crash of the node. Ports and brokers outside a node (a
// hosted program's socket) have none.
type goer interface{ Go(f func()) }

// goVia starts f through x's Go if it has one, else as a plain goroutine:
// the one place where package flow starts goroutines of its own.
func goVia(x any, f func()) {
	if g, ok := x.(goer); ok {
		g.Go(f)
		return
	}
	go f()
}

// frctConfig maps a QoS spec to FRCT, or reports that the flow runs none.
func frctConfig(q QoS, limit int) (frct.Config, bool) {
	if !q.NeedsFRCT() {
		return frct.Config{}, false
	}
	cfg := frct.Config{MaxSDU: limit - frct.HeaderSize, Timeout: q.Timeout}
	switch {
	case q.Reliable() && q.InOrder:
		cfg.Mode = frct.Reliable
	case q.Reliable():
		cfg.Mode = frct.ReliableUnordered
	default:
		cfg.Mode = frct.Ordered
	}
	switch q.MaxGap {
	case MaxGapAny: // any gap is tolerated: wait the default, then skip
	case 0:
		cfg.MaxGap = -1 // no gap is worth waiting for: skip at once
	default:
		cfg.MaxGap = time.Duration(q.MaxGap) * time.Millisecond
	}
	return cfg, true
}

// Info returns what the broker reported about the flow.
func (f *Flow) Info() Info { return f.info }

// Peer returns the verified identity of the node at the other end of a
// sealed flow, or nil on an unsealed one.
func (f *Flow) Peer() *Peer { return f.info.Peer }

// MaxSDU returns the largest SDU Write accepts: MaxSDU, less the FRCT
// header when FRCT runs.
func (f *Flow) MaxSDU() int { return f.maxSDU }

// Stats returns the flow's counters.
func (f *Flow) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	if f.eng != nil {
		e := f.eng.Stats()
		s.SentSDUs, s.SentBytes = e.SentSDUs, e.SentBytes
		s.RecvSDUs, s.RecvBytes = e.RecvSDUs, e.RecvBytes
		s.Retransmits, s.Lost, s.RTT = e.Retransmits, e.Lost, e.RTT
		s.Drops += e.Drops + e.Dups
	}
	return s
}

// signal puts a token in ch without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Errors of a flow, wrapping the package sentinels. net.ErrClosed and
// io.EOF are wrapped too, for code written against net.Conn.
var (
	errLocalClosed = fmt.Errorf("flow: %w (%w)", ErrClosed, net.ErrClosed)
	errPeerClosed  = fmt.Errorf("flow: closed by the peer: %w (%w)", ErrClosed, io.EOF)
	errPeerGone    = fmt.Errorf("flow: %w", ErrPeerGone)
)

// deadlineError is a deadline that passed: it wraps ErrTimeout, is a
// net.Error with Timeout() true, and matches os.ErrDeadlineExceeded.
type deadlineError struct{ op string }

func (e *deadlineError) Error() string        { return "flow: " + e.op + ": " + ErrTimeout.Error() }
func (e *deadlineError) Unwrap() error        { return ErrTimeout }
func (e *deadlineError) Timeout() bool        { return true }
func (e *deadlineError) Temporary() bool      { return true }
func (e *deadlineError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

var (
	errReadTimeout  = &deadlineError{op: "read"}
	errWriteTimeout = &deadlineError{op: "write"}
)

// wait sleeps until a token arrives on ch, the flow is closed, or the
// deadline passes (the zero time: no deadline).
func (f *Flow) wait(ch <-chan struct{}, deadline time.Time, timeout error) error {
	if deadline.IsZero() {
		select {
		case <-ch:
		case <-f.closedCh:
		}
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return timeout
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-f.closedCh:
	case <-t.C:
		return timeout
	}
	return nil
}

// mapPortErr turns a port error into the flow's: deadlines become
// deadlineErrors, the rest keep their wrapping.
func mapPortErr(err error, timeout error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTimeout):
		return timeout
	}
	return fmt.Errorf("flow: %w", err)
}

// Read reads one SDU into p and returns its length, blocking until one
// arrives or the read deadline passes. An SDU longer than p is consumed:
// ErrTruncated with n = len(p). After Close: an error wrapping ErrClosed
// and net.ErrClosed. After the peer closed, once everything sent was read:
// an error wrapping ErrClosed and io.EOF. A dead peer (no answer for the
// QoS timeout): ErrPeerGone.
func (f *Flow) Read(p []byte) (int, error) {
	if f.eng == nil {
		return f.readRaw(p, nil, nil)
	}
	var (
		one   = [1][]byte{p}
		sizes [1]int
	)
	n, err := f.readBatch(one[:], sizes[:])
	if n == 1 {
		return sizes[0], err
	}
	return 0, err
}

// ReadBatch reads a run of SDUs: it blocks like Read until one arrives or
// the read deadline passes, then copies the SDUs that are ready, at most
// len(bufs) and without blocking again, into bufs[i], sets sizes[i] and
// returns how many. The caller owns bufs; len(sizes) >= len(bufs)
// (ErrInvalid otherwise). SDU boundaries are kept: one SDU per buffer. An
// SDU longer than its buffer is consumed, cut to it, and ends the batch:
// it is the last one counted and the error wraps ErrTruncated. Otherwise
// the error is non-nil only with n = 0, and is Read's (ErrTimeout,
// ErrClosed, io.EOF, ErrPeerGone). Without FRCT a batch costs one lock
// and, when the reader waited, one wake-up, not one per SDU; it
// allocates nothing.
func (f *Flow) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("flow: read batch of %d buffers with %d sizes: %w", len(bufs), len(sizes), ErrInvalid)
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	return f.readBatch(bufs, sizes)
}

func (f *Flow) readBatch(bufs [][]byte, sizes []int) (int, error) {
	if f.eng == nil {
		return f.readRaw(nil, bufs, sizes)
	}
	for {
		f.mu.Lock()
		if f.closing {
			f.mu.Unlock()
			return 0, errLocalClosed
		}
		now := time.Now()
		n := 0
		var err error
		for n < len(bufs) {
			var k int
			k, err = f.eng.Read(now, bufs[n])
			if err != nil && !errors.Is(err, frct.ErrTruncated) {
				break
			}
			sizes[n] = k
			n++
			if err != nil || !f.eng.Readable(now) {
				break
			}
		}
		if n > 0 {
			if f.eng.Readable(now) {
				signal(f.readable) // for the next reader
			}
			f.armTimer(now) // a window update may be due
			f.mu.Unlock()
			if errors.Is(err, frct.ErrTruncated) {
				return n, fmt.Errorf("flow: read: %w", ErrTruncated)
			}
			return n, nil
		}
		switch {
		case errors.Is(err, frct.ErrFinished):
			f.mu.Unlock()
			f.notifySets()
			return 0, errPeerClosed
		case errors.Is(err, frct.ErrPeerGone):
			f.mu.Unlock()
			return 0, errPeerGone
		case f.rxErr != nil:
			// The port closed under us without a FIN.
			f.mu.Unlock()
			return 0, errPeerClosed
		}
		dl := f.readDL
		f.mu.Unlock()
		if err := f.wait(f.readable, dl, errReadTimeout); err != nil {
			return 0, err
		}
	}
}

// readRaw is Read (into p, bufs nil) or ReadBatch without FRCT. A
// single read keeps p out of the batch slices, which would then escape
// through the directReader interface and cost an allocation per Read.
func (f *Flow) readRaw(p []byte, bufs [][]byte, sizes []int) (int, error) {
	var (
		one  [1][]byte
		size [1]int
	)
	for {
		if f.direct.Load() != nil {
			if n, err, again := f.readDirect(p, bufs, sizes); !again {
				return n, err
			}
			if f.direct.Load() != nil {
				continue // interrupted: a new deadline
			}
		}
		f.mu.Lock()
		closing, rxErr, dl := f.closing, f.rxErr, f.readDL
		f.mu.Unlock()
		if closing {
			return 0, errLocalClosed
		}
		// rxErr was read first: it is set after rxLoop queued its last
		// run, so an empty queue now means everything was read.
		if p != nil || bufs == nil {
			one[0] = p
			if n, err := f.takeRaw(one[:], size[:]); n > 0 {
				return size[0], err
			}
		} else if n, err := f.takeRaw(bufs, sizes); n > 0 {
			return n, err
		}
		if rxErr != nil {
			return 0, errPeerClosed
		}
		if err := f.wait(f.readable, dl, errReadTimeout); err != nil {
			return 0, err
		}
	}
}

// directDeadline is the read deadline a direct read waits until, or
// errLocalClosed once the flow is closing.
func (f *Flow) directDeadline() (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return time.Time{}, errLocalClosed
	}
	return f.readDL, nil
}

// readDirect reads the port itself (direct mode), waiting until the read
// deadline: one SDU into p where bufs is nil (n is then its length),
// else a run into bufs. again: the flow left direct mode, or the read
// was interrupted (a new deadline): the caller looks again.
func (f *Flow) readDirect(p []byte, bufs [][]byte, sizes []int) (n int, err error, again bool) {
	f.drmu.Lock()
	defer f.drmu.Unlock()
	dl, err := f.directDeadline()
	if err != nil {
		return 0, err, false
	}
	dp := f.direct.Load()
	if dp == nil {
		return 0, nil, true
	}
	d := dp.r
	var bytes int
	if bufs == nil {
		bytes, err = d.Read(p, dl)
		if err == nil || errors.Is(err, ErrTruncated) {
			n = 1
		}
	} else if n, err = d.ReadBatch(bufs, sizes, dl); n > 0 {
		for _, s := range sizes[:n] {
			bytes += s
		}
	}
	if n > 0 {
		f.mu.Lock()
		f.stats.RecvSDUs += uint64(n)
		f.stats.RecvBytes += uint64(bytes)
		f.mu.Unlock()
		if bufs == nil {
			n = bytes
		}
		if errors.Is(err, ErrTruncated) {
			return n, fmt.Errorf("flow: read: %w", ErrTruncated), false
		}
		return n, nil, false
	}
	err, again = f.directErr(err, dl)
	return 0, err, again
}

// directErr maps the error of a direct read that returned no SDU, made
// with deadline dl, to the flow's. again: the read was interrupted or
// its deadline moved meanwhile, and the caller looks again. Called with
// drmu held.
func (f *Flow) directErr(err error, dl time.Time) (_ error, again bool) {
	switch {
	case errors.Is(err, errInterrupted):
		return nil, true
	case errors.Is(err, ErrTimeout):
		if dl.IsZero() || time.Now().Before(dl) {
			return nil, true // the deadline moved meanwhile
		}
		return errReadTimeout, false
	}
	f.mu.Lock()
	closing := f.closing
	if f.rxErr == nil && !closing {
		f.rxErr = err
	}
	f.mu.Unlock()
	if closing {
		return errLocalClosed, false
	}
	signal(f.writable)
	signal(f.progress)
	return errPeerClosed, false
}

// ReadWith reads one SDU and calls use with it (use gets the SDU's bytes
// and must not keep them), blocking as Read does until the read
// deadline, which SetReadDeadline moves for a ReadWith that waits as for
// a Read. Without FRCT, over a port whose SDUs can be read where they
// lie (a hosted program's shared rings: InPlacePort), use gets the SDU
// in the ring the node wrote it into, so it is not copied out first
// (docs/flow.md, "Copies"); otherwise the SDU is read as Read reads it
// into a buffer of the Flow's, made once, that use then gets. use is
// called once when ReadWith returns nil, and not at all when it returns
// an error, which is Read's (ErrTimeout, ErrClosed, io.EOF,
// ErrPeerGone); the one exception is an SDU longer than MaxSDU(), which
// no port delivers: use gets it cut, and the error wraps ErrTruncated.
// use must not call the Flow's Read, ReadBatch, ReadWith or Close.
// ReadWith allocates nothing per SDU where use is the same func value
// each time.
func (f *Flow) ReadWith(use func(sdu []byte)) error {
	for f.eng == nil {
		if dp := f.direct.Load(); dp == nil || dp.ip == nil {
			break
		}
		if err, again := f.readDirectWith(use); !again {
			return err
		}
	}
	f.rwMu.Lock()
	defer f.rwMu.Unlock()
	if f.rwBuf == nil {
		f.rwBuf = make([]byte, f.maxSDU)
	}
	n, err := f.Read(f.rwBuf)
	if err == nil || errors.Is(err, ErrTruncated) {
		use(f.rwBuf[:n])
	}
	return err
}

// readDirectWith is ReadWith in direct mode over an InPlacePort: the
// port's ReadWith, waiting until the read deadline. again: as
// readDirect's.
func (f *Flow) readDirectWith(use func(sdu []byte)) (err error, again bool) {
	f.drmu.Lock()
	defer f.drmu.Unlock()
	dl, err := f.directDeadline()
	if err != nil {
		return err, false
	}
	dp := f.direct.Load()
	if dp == nil {
		return nil, true
	}
	if f.dwUse == nil {
		f.dwUse = f.directUse
	}
	f.dwFn, f.dwLen = use, -1
	err = dp.ip.ReadWith(f.dwUse, dl)
	n := f.dwLen
	f.dwFn = nil
	if n >= 0 { // use had the SDU
		f.mu.Lock()
		f.stats.RecvSDUs++
		f.stats.RecvBytes += uint64(n)
		f.mu.Unlock()
		return nil, false
	}
	return f.directErr(err, dl)
}

// directUse is what a direct ReadWith gives the port: it notes the SDU's
// length and hands it to the reader's use. Called with drmu held.
func (f *Flow) directUse(sdu []byte) {
	f.dwLen = len(sdu)
	f.dwFn(sdu)
}

// takeRaw copies the SDUs that are queued, at most len(bufs), without
// waiting.
func (f *Flow) takeRaw(bufs [][]byte, sizes []int) (int, error) {
	f.rmu.Lock()
	n, bytes, truncated, freed := 0, 0, false, false // freed: a run left rawQ
	for n < len(bufs) && !truncated {
		b := f.rcur
		if b == nil {
			select {
			case b = <-f.rawQ:
				f.rcur = b
				freed = true // room in rawQ for rxLoop
			default:
			}
			if b == nil {
				break
			}
		}
		for b.next < b.n && n < len(bufs) {
			sdu := b.bufs[b.next][:b.sizes[b.next]]
			c := copy(bufs[n], sdu)
			sizes[n] = c
			bytes += len(sdu)
			b.next++
			n++
			if c < len(sdu) {
				truncated = true
				break
			}
		}
		if b.next == b.n {
			f.rcur = nil
			select {
			case f.rawFree <- b:
			default:
			}
		}
	}
	more := (f.rcur != nil && f.rcur.next < f.rcur.n) || len(f.rawQ) > 0
	f.rmu.Unlock()
	if n == 0 {
		return 0, nil
	}
	f.rawReady.Add(int64(-n))
	f.mu.Lock()
	f.stats.RecvSDUs += uint64(n)
	f.stats.RecvBytes += uint64(bytes)
	f.mu.Unlock()
	if more {
		signal(f.readable) // for the next reader
	}
	if freed {
		signal(f.rawSpace)
	}
	if truncated {
		return n, fmt.Errorf("flow: read: %w", ErrTruncated)
	}
	return n, nil
}

// Write sends p as one SDU, blocking while the flow's window (with FRCT)
// or its port (without) is full, until the write deadline. It returns
// len(p) once the SDU is committed: with FRCT in a reliable mode it will
// be retransmitted until acknowledged. len(p) > MaxSDU() is ErrTooBig.
// After Close: ErrClosed; once the peer closed: ErrClosed; when the peer
// is dead: ErrPeerGone.
func (f *Flow) Write(p []byte) (int, error) {
	if len(p) > f.maxSDU {
		return 0, fmt.Errorf("flow: write of %d bytes, flow max %d: %w", len(p), f.maxSDU, ErrTooBig)
	}
	if f.eng == nil {
		return f.writeRaw(p)
	}
	for {
		f.txMu.Lock()
		f.mu.Lock()
		if err := f.writeState(); err != nil {
			f.mu.Unlock()
			f.txMu.Unlock()
			return 0, err
		}
		now := time.Now()
		n, err := f.eng.Send(now, p, f.txPkt)
		if err == nil {
			if f.eng.CanSend() {
				signal(f.writable) // for the next writer
			}
			f.armTimer(now)
			f.mu.Unlock()
			// No deadline: the SDU is committed. The port drains as long
			// as the peer's flow runs; Close unblocks us otherwise.
			werr := f.port.Write(f.txPkt[:n], time.Time{})
			f.txMu.Unlock()
			if werr != nil && !errors.Is(werr, ErrClosed) {
				return 0, mapPortErr(werr, errWriteTimeout)
			}
			if werr != nil {
				return 0, errPeerClosed
			}
			return len(p), nil
		}
		if !errors.Is(err, frct.ErrWindowFull) {
			f.mu.Unlock()
			f.txMu.Unlock()
			return 0, fmt.Errorf("flow: write: %w", err)
		}
		f.armTimer(now) // the rendezvous timer
		dl := f.writeDL
		f.mu.Unlock()
		f.txMu.Unlock()
		if err := f.wait(f.writable, dl, errWriteTimeout); err != nil {
			return 0, err
		}
	}
}

// writeState returns why a write cannot proceed, or nil. Called with mu held.
func (f *Flow) writeState() error {
	switch {
	case f.closing:
		return errLocalClosed
	case f.eng != nil && f.eng.Err() != nil:
		return errPeerGone
	case f.rxErr != nil:
		return errPeerClosed
	}
	return nil
}

func (f *Flow) writeRaw(p []byte) (int, error) {
	f.mu.Lock()
	err, dl := f.writeState(), f.writeDL
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if err := f.port.Write(p, dl); err != nil {
		return 0, f.writeErr(err)
	}
	f.mu.Lock()
	f.stats.SentSDUs++
	f.stats.SentBytes += uint64(len(p))
	f.mu.Unlock()
	return len(p), nil
}

// WriteWith writes one SDU of n bytes that fill writes (fill gets n
// bytes and must not keep them), blocking as Write does until the write
// deadline. Without FRCT, over a port that takes SDUs in place (a hosted
// program's shared rings: InPlacePort), fill writes straight into the
// ring the node reads, so the SDU is not copied in between (docs/flow.md,
// "Copies"); otherwise fill writes into a buffer that Write then sends.
// n must be 1 to MaxSDU() (else ErrTooBig).
func (f *Flow) WriteWith(n int, fill func(sdu []byte)) error {
	if n <= 0 || n > f.maxSDU {
		return fmt.Errorf("flow: write of %d bytes, flow max %d: %w", n, f.maxSDU, ErrTooBig)
	}
	ip, ok := f.port.(InPlacePort)
	if f.eng != nil || !ok {
		f.wwMu.Lock()
		defer f.wwMu.Unlock()
		if f.wwBuf == nil {
			f.wwBuf = make([]byte, f.maxSDU)
		}
		buf := f.wwBuf[:n]
		fill(buf)
		_, err := f.Write(buf)
		return err
	}
	f.mu.Lock()
	err, dl := f.writeState(), f.writeDL
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if err := ip.WriteWith(n, fill, dl); err != nil {
		return f.writeErr(err)
	}
	f.mu.Lock()
	f.stats.SentSDUs++
	f.stats.SentBytes += uint64(n)
	f.mu.Unlock()
	return nil
}

// writeErr maps a port's write error to the flow's.
func (f *Flow) writeErr(err error) error {
	if errors.Is(err, ErrClosed) {
		f.mu.Lock()
		err = f.writeState()
		f.mu.Unlock()
		if err == nil {
			err = errPeerClosed
		}
		return err
	}
	return mapPortErr(err, errWriteTimeout)
}

// WriteBatch writes sdus in order, each as one SDU, blocking as Write
// does until the write deadline, and returns how many it wrote; the
// caller keeps sdus. It stops at the first SDU it cannot write: n <
// len(sdus) comes with that SDU's error, as Write's (ErrTooBig for
// sdus[n] alone, when it is longer than MaxSDU(); ErrTimeout, ErrClosed,
// ErrPeerGone). Without FRCT, over a BatchPort (a hosted program's
// shared rings, a node's kernel rings), the run is one port operation:
// one ring operation and at most one wake-up of the other side, and no
// allocation. With FRCT each SDU goes through the window in turn, as
// Write.
func (f *Flow) WriteBatch(sdus [][]byte) (int, error) {
	k := len(sdus)
	for i, p := range sdus {
		if len(p) > f.maxSDU {
			k = i
			break
		}
	}
	var (
		n   int
		err error
	)
	if f.eng == nil {
		n, err = f.writeRawBatch(sdus[:k])
	} else {
		for _, p := range sdus[:k] {
			if _, err = f.Write(p); err != nil {
				break
			}
			n++
		}
	}
	if err == nil && k < len(sdus) {
		err = fmt.Errorf("flow: write of %d bytes, flow max %d: %w", len(sdus[k]), f.maxSDU, ErrTooBig)
	}
	return n, err
}

// writeRawBatch writes sdus, none longer than maxSDU, to the port.
func (f *Flow) writeRawBatch(sdus [][]byte) (int, error) {
	f.mu.Lock()
	err, dl := f.writeState(), f.writeDL
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n := 0
	if bp, ok := f.port.(BatchPort); ok {
		n, err = bp.WriteBatch(sdus, dl)
	} else {
		for _, p := range sdus {
			if err = f.port.Write(p, dl); err != nil {
				break
			}
			n++
		}
	}
	if n > 0 {
		bytes := 0
		for _, p := range sdus[:n] {
			bytes += len(p)
		}
		f.mu.Lock()
		f.stats.SentSDUs += uint64(n)
		f.stats.SentBytes += uint64(bytes)
		f.mu.Unlock()
	}
	if err != nil {
		return n, f.writeErr(err)
	}
	return n, nil
}

// SetDeadline sets the read and write deadlines; see net.Conn.
func (f *Flow) SetDeadline(t time.Time) error {
	f.SetReadDeadline(t)
	return f.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read calls, pending ones included.
// The zero time means none.
func (f *Flow) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.readDL = t
	f.mu.Unlock()
	signal(f.readable) // let a blocked reader re-evaluate
	if dp := f.direct.Load(); dp != nil {
		dp.r.interruptRead()
	}
	return nil
}

// SetWriteDeadline sets the deadline for Write calls: pending ones
// waiting for the FRCT window included; without FRCT, from the next Write.
func (f *Flow) SetWriteDeadline(t time.Time) error {
	f.mu.Lock()
	f.writeDL = t
	f.mu.Unlock()
	signal(f.writable)
	return nil
}

// rxLoop reads the port until it closes: runs of up to rxBatch SDUs
// where the port is a BatchPort.
func (f *Flow) rxLoop() {
	defer close(f.rxDone)
	bp, _ := f.port.(BatchPort)
	var b *rawBatch // with FRCT: the one batch, reused
	size := f.info.SDULimit()
	if f.eng != nil {
		b = newRawBatch(size)
	}
	for {
		if f.eng == nil {
			select {
			case b = <-f.rawFree:
			default:
				b = newRawBatch(size)
			}
		}
		var (
			n   int
			err error
		)
		if bp != nil {
			n, err = bp.ReadBatch(b.bufs[:], b.sizes[:], time.Time{})
		} else if b.sizes[0], err = f.port.Read(b.bufs[0], time.Time{}); err == nil || errors.Is(err, ErrTruncated) {
			n = 1
		}
		if n == 0 && errors.Is(err, errInterrupted) {
			// A deadline set or a Set joined while the flow was read
			// directly: nothing for this loop.
			err = nil
		}
		if errors.Is(err, ErrTruncated) {
			// Longer than any SDU a flow carries: the last of the run.
			n--
			f.mu.Lock()
			f.stats.Drops++
			f.mu.Unlock()
			err = nil
		}
		if err != nil {
			f.mu.Lock()
			f.rxErr = err
			f.mu.Unlock()
			signal(f.readable)
			signal(f.writable)
			signal(f.progress)
			f.notifySets()
			return
		}
		if n == 0 {
			if f.eng == nil {
				select {
				case f.rawFree <- b:
				default:
				}
			}
			continue
		}
		if f.eng == nil {
			b.n, b.next = n, 0
			if !f.queueRaw(b) {
				return
			}
			continue
		}
		now := time.Now()
		f.mu.Lock()
		for i := range n {
			f.eng.Receive(now, b.bufs[i][:b.sizes[i]])
		}
		readable := f.eng.Readable(now)
		if f.eng.CanSend() {
			signal(f.writable)
		}
		if f.closing {
			signal(f.progress)
		}
		f.armTimer(now)
		f.mu.Unlock()
		if readable {
			signal(f.readable)
			f.notifySets()
		}
	}
}

// queueRaw queues a received run for the reader, waiting for room (which
// stops the port from being read: back-pressure). It returns false when
// the flow was closed meanwhile.
func (f *Flow) queueRaw(b *rawBatch) bool {
	for {
		select {
		case f.rawQ <- b:
			// Counted once queued (a reader may take it first: the count
			// is then below zero for a moment, which only Sets read).
			f.rawReady.Add(int64(b.n))
			signal(f.readable)
			f.notifySets()
			return true
		default:
		}
		select {
		case <-f.rawSpace:
		case <-f.closedCh:
			return false
		}
	}
}

// armTimer (re)arms the FRCT timer for frct's next deadline, if that is
// earlier than what it is armed for. Called with mu held.
func (f *Flow) armTimer(now time.Time) {
	if f.portClosed {
		return
	}
	next := f.eng.Next(now)
	if next.IsZero() || (!f.timerAt.IsZero() && !next.Before(f.timerAt)) {
		return
	}
	f.timerAt = next
	f.timer.Reset(next.Sub(now))
}

// onTimer runs when the FRCT timer fires: it writes what is due.
func (f *Flow) onTimer() {
	f.txMu.Lock()
	defer f.txMu.Unlock()
	f.mu.Lock()
	f.timerAt = time.Time{}
	for !f.portClosed {
		now := time.Now()
		n := f.eng.Poll(now, f.ctlPkt)
		if n == 0 {
			break
		}
		f.mu.Unlock()
		err := f.port.Write(f.ctlPkt[:n], now.Add(ctlWriteTimeout))
		f.mu.Lock()
		if err != nil && !errors.Is(err, ErrTimeout) {
			break // closed: rxLoop will see it too
		}
	}
	if f.portClosed {
		f.mu.Unlock()
		return
	}
	now := time.Now()
	dead := f.eng.Err() != nil
	readable := f.eng.Readable(now) // a gap may have been skipped
	if f.eng.CanSend() {
		signal(f.writable)
	}
	f.armTimer(now)
	f.mu.Unlock()
	if dead {
		signal(f.writable)
		signal(f.progress)
	}
	if readable || dead {
		signal(f.readable)
		f.notifySets()
	}
}

// Close closes the flow. With FRCT it first sends a FIN after the data
// and waits, up to the linger bound, until the peer acknowledged
// everything; then it closes the port and waits for the flow's goroutine
// to end. Pending and later Reads and Writes return ErrClosed. Close is
// idempotent; it returns an error wrapping ErrTimeout if the linger bound
// passed with data unacknowledged.
func (f *Flow) Close() error {
	f.closeOnce.Do(func() { f.closeErr = f.close() })
	return f.closeErr
}

// abort closes the flow without lingering: for flows nobody accepted.
func (f *Flow) abort() {
	f.mu.Lock()
	f.linger = 0
	f.mu.Unlock()
	f.Close()
}

func (f *Flow) close() error {
	f.mu.Lock()
	f.closing = true
	close(f.closedCh)
	var err error
	if f.eng != nil {
		now := time.Now()
		f.eng.Close(now)
		f.armTimer(now)
		deadline := now.Add(f.linger)
		for !f.eng.Done() && f.rxErr == nil {
			d := time.Until(deadline)
			if d <= 0 {
				err = fmt.Errorf("flow: close: %d SDUs unacknowledged after %v: %w", f.eng.Unacked(), f.linger, ErrTimeout)
				break
			}
			f.mu.Unlock()
			t := time.NewTimer(d)
			select {
			case <-f.progress:
			case <-t.C:
			}
			t.Stop()
			f.mu.Lock()
		}
	}
	f.portClosed = true
	started := f.rxStarted
	f.mu.Unlock()
	if f.timer != nil {
		f.timer.Stop()
	}
	f.port.Close()
	if started { // a direct reader returns by itself once the port is closed
		<-f.rxDone
	}
	// A timer callback that fired before Stop finishes under txMu.
	f.txMu.Lock()
	f.txMu.Unlock()
	signal(f.readable)
	signal(f.writable)
	f.notifySets()
	return err
}
