//go:build linux

package shmring

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mapping is one flow's shared memory, mapped in this process.
type Mapping struct {
	mem []byte
	fd  int // the memfd, -1 once closed
	geo Geometry
}

// Create makes a flow's mapping of geometry g (the node's side): a memfd
// sized and sealed against shrinking and growing, mapped here, with its
// header written. The caller hands FD to the program, then may CloseFD.
func Create(g Geometry) (*Mapping, error) {
	if !g.valid() {
		return nil, fmt.Errorf("shmring: geometry %+v: %w", g, ErrInvalid)
	}
	fd, err := unix.MemfdCreate("ouro-flow", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("shmring: memfd_create: %w", err)
	}
	size := g.Size()
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shmring: size the memfd: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shmring: seal the memfd: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shmring: mmap %d bytes: %w", size, err)
	}
	m := &Mapping{mem: mem, fd: fd, geo: g}
	m.word32(0).Store(Magic)
	m.word32(4).Store(Version)
	m.word32(8).Store(uint32(g.Slots))
	m.word32(12).Store(uint32(g.MaxSDU))
	return m, nil
}

// Open maps the memfd fd a node handed over (the program's side) and
// checks that it is a sealed ring mapping of this version whose size
// matches its header. It takes fd: it is closed once mapped (the mapping
// stays) or on error.
func Open(fd int) (*Mapping, error) {
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("shmring: fstat: %w", err)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || seals&(unix.F_SEAL_SHRINK|unix.F_SEAL_GROW) != unix.F_SEAL_SHRINK|unix.F_SEAL_GROW {
		return nil, fmt.Errorf("shmring: the mapping is not sealed against resizing: %w", ErrInvalid)
	}
	if st.Size < headerSize || st.Size > 1<<30 {
		return nil, fmt.Errorf("shmring: mapping of %d bytes: %w", st.Size, ErrInvalid)
	}
	mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shmring: mmap %d bytes: %w", st.Size, err)
	}
	m := &Mapping{mem: mem, fd: -1}
	g := Geometry{Slots: int(m.word32(8).Load()), MaxSDU: int(m.word32(12).Load())}
	if m.word32(0).Load() != Magic || m.word32(4).Load() != Version || !g.valid() || g.Size() != len(mem) {
		unix.Munmap(mem)
		return nil, fmt.Errorf("shmring: header (magic %#x, version %d, %+v) does not describe a %d-byte mapping of version %d: %w",
			m.word32(0).Load(), m.word32(4).Load(), g, len(mem), Version, ErrInvalid)
	}
	m.geo = g
	return m, nil
}

// Geometry returns the mapping's shape.
func (m *Mapping) Geometry() Geometry { return m.geo }

// FD returns the memfd (-1 after CloseFD, and on the program's side).
func (m *Mapping) FD() int { return m.fd }

// CloseFD closes the memfd; the mapping stays.
func (m *Mapping) CloseFD() {
	if m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
}

// Bytes returns the mapped memory: for tests that play a hostile peer.
func (m *Mapping) Bytes() []byte { return m.mem }

// Close unmaps a mapping that no End took, and closes its memfd.
func (m *Mapping) Close() { m.unmap() }

// unmap releases the mapping and the memfd.
func (m *Mapping) unmap() {
	m.CloseFD()
	if m.mem != nil {
		unix.Munmap(m.mem)
		m.mem = nil
	}
}

// word32 and word64 are the shared words at off; off is one of this
// package's constants, aligned and inside the header.
func (m *Mapping) word32(off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&m.mem[off]))
}

func (m *Mapping) word64(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&m.mem[off]))
}

// ring is this process's view of one ring: pointers to its shared words
// and its slots, all computed from the local geometry.
type ring struct {
	head, tail       *atomic.Uint64
	wwait, rwait     *atomic.Uint32 // writer / reader waiting
	pclosed, cclosed *atomic.Uint32 // producer / consumer closed
	slots            []byte         // Slots × slotSize bytes
}

func (m *Mapping) ring(i int) ring {
	h := ringHdrOff + i*ringHdrSize
	ss := m.geo.slotSize()
	base := headerSize + i*m.geo.Slots*ss
	return ring{
		head: m.word64(h), wwait: m.word32(h + 8), pclosed: m.word32(h + 12),
		tail: m.word64(h + consOff), rwait: m.word32(h + consOff + 8), cclosed: m.word32(h + consOff + 12),
		slots: m.mem[base : base+m.geo.Slots*ss : base+m.geo.Slots*ss],
	}
}

// NewEventfds makes the four eventfds of a flow (non-blocking,
// close-on-exec), in the order NewEnd takes them: ring 0's data and
// space, ring 1's data and space.
func NewEventfds() ([4]int, error) {
	var fds [4]int
	for i := range fds {
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			for _, f := range fds[:i] {
				unix.Close(f)
			}
			return [4]int{}, fmt.Errorf("shmring: eventfd: %w", err)
		}
		fds[i] = fd
	}
	return fds, nil
}

// MaxSpin bounds how long a program's reader or writer spins before it
// sleeps (adaptively: it spins only as long as recent waits suggest the
// other side answers within the bound). $OURO_SHM_SPIN sets it (a Go
// duration; 0 never spins). NewEnd reads it for a Program end.
//
// By default neither side spins. A spin yields the processor in a loop
// (runtime.Gosched): to the program's own goroutines, not to the process
// it waits for. Under a flood every wait is short, so the adaptive spin
// stayed on, up to 50 µs at each of tens of thousands of waits a second,
// on the cores the node needed to fill or empty the ring: the perf
// server spent twice the CPU per SDU it does without, the routers 10–25%
// more (docs/benchmarks.md, "Waits that do not spin"). In one process,
// too, a round trip and a flood through a flow's rings were as fast or
// faster with neither end spinning (BenchmarkPortRTT, BenchmarkPortFlood).
var MaxSpin = spinFromEnv("OURO_SHM_SPIN", 0)

// NodeMaxSpin is MaxSpin for the node's ends; $OURO_SHM_NODE_SPIN (in
// the node's environment) sets it.
var NodeMaxSpin = spinFromEnv("OURO_SHM_NODE_SPIN", 0)

func spinFromEnv(name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			return d
		}
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			return time.Duration(n) * time.Microsecond
		}
	}
	return def
}

// End is one side of a flow's rings: it consumes one ring and produces
// into the other. Recv and Send are safe for concurrent use with each
// other and with Shutdown, PeerGone and Release; one receiver and one
// sender at a time.
type End struct {
	m      *Mapping
	rx, tx ring
	mask   uint64
	slots  uint64
	ss     int // slot size
	maxSDU int

	// eventfds: rxData (waited on by Recv), rxSpace (signalled after
	// Recv freed slots), txData (signalled after Send), txSpace (waited on
	// by Send).
	rxData, rxSpace, txData, txSpace *evfd
	fds                              [4]int
	files                            [4]*evfd // the same, in NewEventfds's order

	maxSpin time.Duration // MaxSpin or NodeMaxSpin, as NewEnd found it
	side    Side

	rmu    sync.Mutex // serialises receivers; guards rtail, rspin
	rtail  uint64     // the consumer index: this end's own copy
	rspin  time.Duration
	wmu    sync.Mutex // serialises senders; guards whead, wspin
	whead  uint64     // the producer index: this end's own copy
	wspin  time.Duration
	broken atomic.Bool // an impossible index was seen
	rint   atomic.Bool // InterruptRecv: the receive ends with ErrInterrupted

	closed   atomic.Bool // Shutdown
	peerGone atomic.Bool // PeerGone
	released bool        // set with rmu and wmu held

	drops, corrupt atomic.Uint64
}

// Side says which side an End is.
type Side int

// The sides.
const (
	Node    Side = iota // consumes ToNode, produces ToProgram
	Program             // consumes ToProgram, produces ToNode
)

// NewEnd returns side's End over m with the four eventfds (as
// NewEventfds orders them). It takes m and the eventfds: Release frees
// them. On the node's side, FDs returns the eventfds to hand over until
// Release.
func NewEnd(m *Mapping, side Side, evfds [4]int) (*End, error) {
	var files [4]*evfd
	for i, fd := range evfds {
		if err := unix.SetNonblock(fd, true); err != nil {
			for _, f := range files[:i] {
				f.close()
			}
			for _, f := range evfds[i:] {
				unix.Close(f)
			}
			m.unmap()
			return nil, fmt.Errorf("shmring: eventfd: %w", err)
		}
		files[i] = newEvfd(fd)
	}
	return newEnd(m, side, files, evfds), nil
}

// newEnd is an End over m and the eventfds files (whose descriptors are
// fds), as NewEnd makes it.
func newEnd(m *Mapping, side Side, files [4]*evfd, fds [4]int) *End {
	rxi, txi, spin := ToNode, ToProgram, NodeMaxSpin
	if side == Program {
		rxi, txi, spin = ToProgram, ToNode, MaxSpin
	}
	e := &End{
		m: m, rx: m.ring(rxi), tx: m.ring(txi),
		slots: uint64(m.geo.Slots), mask: uint64(m.geo.Slots - 1), ss: m.geo.slotSize(), maxSDU: m.geo.MaxSDU,
		rxData: files[rxi*2], rxSpace: files[rxi*2+1], txData: files[txi*2], txSpace: files[txi*2+1],
		fds: fds, files: files, maxSpin: spin, side: side,
	}
	// Pick up where the shared words are, trusting nothing: the first
	// use checks them like any other.
	e.rtail = e.rx.tail.Load()
	e.whead = e.tx.head.Load()
	return e
}

// FDs returns the eventfds, in NewEventfds's order, for handing over;
// they stay this End's (valid until Release).
func (e *End) FDs() [4]int { return e.fds }

// MaxSDU is the largest SDU a slot holds.
func (e *End) MaxSDU() int { return e.maxSDU }

// Stats returns what the other side got wrong so far.
func (e *End) Stats() Stats { return Stats{Drops: e.drops.Load(), Corrupt: e.corrupt.Load()} }

// Shutdown closes this end: both rings are marked closed by this side
// (the other side's Recv returns ErrClosed once it drained, its Send at
// once) and every waiter on either side is woken. Idempotent.
func (e *End) Shutdown() {
	if e.closed.Swap(true) {
		return
	}
	e.rx.cclosed.Store(1)
	e.tx.pclosed.Store(1)
	e.rxData.signal()
	e.rxSpace.signal()
	e.txData.signal()
	e.txSpace.signal()
}

// PeerGone tells this end that the other side is gone (its process, as
// the node socket tells): Recv returns what is in the ring, then
// ErrClosed; Send returns ErrClosed.
func (e *End) PeerGone() {
	if e.peerGone.Swap(true) {
		return
	}
	e.rxData.signal()
	e.txSpace.signal()
}

// InterruptRecv makes the Recv, RecvBatch or Ready in progress return
// ErrInterrupted, or the next one if none is in progress, unless it finds
// an SDU first: for a reader whose deadline changed while it waited.
func (e *End) InterruptRecv() {
	e.rint.Store(true)
	// Only a receive asleep on the eventfd needs the signal (a system
	// call): one that is about to sleep sets the flag first and then
	// sees rint (the same pairing as the writer's, see wait).
	if e.rx.rwait.Load() != 0 {
		e.rxData.signal()
	}
}

// Release shuts the end down, waits for the Recv and Send in progress to
// return, then unmaps the memory and closes the eventfds. Idempotent.
func (e *End) Release() {
	if k := e.Detach(); k != nil {
		k.Release()
	}
}

// Kept is a flow's mapping and eventfds kept past the End that used them
// (Detach), for the next flow between the same program and node (Renew),
// which then costs neither side a memfd, a mapping or eventfds; or to be
// freed (Release). A node keeps only rings whose program closed its flow
// and said it keeps them too, and only for that program: whatever the
// program writes into them can reach only its own flows, as before.
type Kept struct {
	m     *Mapping
	files [4]*evfd
	fds   [4]int
	side  Side
}

// Detach ends e as Release does (Shutdown, then waiting for the calls in
// progress to return) but keeps its mapping and eventfds in the Kept it
// returns: e stays closed for good. Nil if e was already released or
// detached.
func (e *End) Detach() *Kept {
	e.Shutdown()
	e.rmu.Lock()
	e.wmu.Lock()
	defer e.wmu.Unlock()
	defer e.rmu.Unlock()
	if e.released {
		return nil
	}
	e.released = true
	return &Kept{m: e.m, files: e.files, fds: e.fds, side: e.side}
}

// Geometry returns the kept rings' shape.
func (k *Kept) Geometry() Geometry { return k.m.geo }

// Renew returns a new End over k's mapping and eventfds, on the side k
// was detached from; k must not be used after. The node's side, whose
// rings they are, first empties both rings (their indexes, wait flags
// and closed flags back to zero) before it tells the program that the
// next flow uses them. The program's End picks the rings up as the node
// left them, checking every index as always. A signal meant for the ends
// before, still counted in an eventfd, costs the new one at most one
// wake-up that finds nothing, as any wait allows for (draining the four
// counters cost each side four system calls a flow).
func (k *Kept) Renew() *End {
	if k.side == Node {
		for i := range 2 {
			r := k.m.ring(i)
			r.head.Store(0)
			r.tail.Store(0)
			r.wwait.Store(0)
			r.rwait.Store(0)
			r.pclosed.Store(0)
			r.cclosed.Store(0)
		}
	}
	return newEnd(k.m, k.side, k.files, k.fds)
}

// Release frees k's mapping and eventfds.
func (k *Kept) Release() {
	for _, f := range k.files {
		f.close()
	}
	k.m.unmap()
}

// readable reports whether Recv would not wait: an SDU is in the ring,
// the flow ended, or the receive was interrupted.
func (e *End) readable() bool {
	return e.rx.head.Load() != e.rtail || e.closed.Load() || e.peerGone.Load() || e.rx.pclosed.Load() != 0 || e.rint.Load()
}

// next returns the slot at the consumer's index and the length of the
// SDU in it, without waiting. The length is read once (the other side
// may change it under us); a slot of an impossible length is skipped,
// counted as a drop, the index moved past it. The slot is nil when the
// ring is empty, or at an impossible producer index (ErrCorrupt). The
// caller moves the index past the slot it takes. Called with rmu held.
func (e *End) next() ([]byte, int, error) {
	for {
		head := e.rx.head.Load()
		avail := head - e.rtail
		if avail == 0 {
			return nil, 0, nil
		}
		if avail > e.slots {
			e.corrupt.Add(1)
			e.broken.Store(true)
			return nil, 0, fmt.Errorf("shmring: producer index %d with consumer at %d in a ring of %d: %w", head, e.rtail, e.slots, ErrCorrupt)
		}
		off := int(e.rtail&e.mask) * e.ss
		slot := e.rx.slots[off : off+e.ss : off+e.ss]
		l := int((*atomic.Uint32)(unsafe.Pointer(&slot[0])).Load())
		if l == 0 || l > e.maxSDU {
			e.rtail++
			e.drops.Add(1)
			continue
		}
		return slot, l, nil
	}
}

// take moves up to len(bufs) SDUs out of the ring without waiting, and
// with marks not nil each one's mark. Called with rmu held.
func (e *End) take(bufs [][]byte, sizes []int, marks []uint8) (int, error) {
	start, n := e.rtail, 0
	var err error
	for n < len(bufs) {
		var slot []byte
		var l int
		if slot, l, err = e.next(); slot == nil {
			break
		}
		e.rtail++
		c := copy(bufs[n], slot[slotHdr:slotHdr+l])
		sizes[n] = c
		if marks != nil {
			marks[n] = slot[slotMark]
		}
		n++
		if c < l {
			err = fmt.Errorf("shmring: SDU of %d bytes into %d: %w", l, c, ErrTruncated)
			break
		}
	}
	if e.rtail != start {
		e.freed()
	}
	return n, err
}

// freed publishes the consumer index after slots were taken. Called with
// rmu held.
func (e *End) freed() {
	e.rx.tail.Swap(e.rtail) // a swap, not a store: see wait
	// A writer that waits for room is woken once half the ring is free
	// (or it emptied), not at every slot a reader of one SDU at a time
	// frees: it then writes a run, not one SDU per wake-up. It never
	// waits on a reader that waits too: a reader waits only for an
	// empty ring, and emptying it wakes.
	if e.rx.wwait.Load() != 0 && e.rx.head.Load()-e.rtail <= e.slots/2 {
		e.rxSpace.signal()
	}
}

// takeWith calls use with the next SDU where it lies in its slot, without
// waiting, then frees the slot; it returns 1, or 0 with the ring empty.
// Called with rmu held.
func (e *End) takeWith(use func(sdu []byte)) (int, error) {
	start := e.rtail
	slot, l, err := e.next()
	if slot != nil {
		use(slot[slotHdr : slotHdr+l : slotHdr+l])
		e.rtail++
	}
	if e.rtail != start {
		e.freed()
	}
	if slot == nil {
		return 0, err
	}
	return 1, nil
}

// Recv waits until an SDU arrives or the deadline passes (the zero time:
// no deadline) and copies it into b. An SDU longer than b is cut:
// ErrTruncated with n = len(b).
func (e *End) Recv(b []byte, deadline time.Time) (int, error) {
	var sizes [1]int
	n, err := e.RecvBatch([][]byte{b}, sizes[:], deadline)
	if n == 1 {
		return sizes[0], err
	}
	return 0, err
}

// RecvBatch waits like Recv for the first SDU, then takes the SDUs that
// are ready, at most len(bufs), into bufs[i] with sizes[i] set. A
// truncated SDU ends the batch (counted, with ErrTruncated). Otherwise the
// error is non-nil only with n = 0.
func (e *End) RecvBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error) {
	return e.recv(bufs, sizes, nil, nil, true, deadline)
}

// RecvWith waits like Recv for an SDU and calls use with it where it
// lies in the ring, then frees its slot: the SDU is not copied out. use
// must not keep the slice (the slot is the writer's again once RecvWith
// returns) and must not call RecvWith. A program's end only: a node
// copies what a program wrote before it acts on it, since the program
// can change it at any time (ErrInvalid on the node's end).
func (e *End) RecvWith(use func(sdu []byte), deadline time.Time) error {
	if e.side != Program {
		return fmt.Errorf("shmring: RecvWith on the node's end: %w", ErrInvalid)
	}
	_, err := e.recv(nil, nil, nil, use, true, deadline)
	return err
}

// RecvMarked is RecvBatch that also gives each SDU's mark (SendMarked's)
// in marks[i]: what a node says of the packet's congestion. It takes at
// most len(marks) SDUs.
func (e *End) RecvMarked(bufs [][]byte, sizes []int, marks []uint8, deadline time.Time) (int, error) {
	return e.recv(bufs[:min(len(bufs), len(marks))], sizes, marks, nil, true, deadline)
}

// recv waits for the first SDU (or the end of the flow, or the deadline),
// then takes what is ready into bufs (or the first to use, where use is
// not nil), or with take false only counts it (Ready).
func (e *End) recv(bufs [][]byte, sizes []int, marks []uint8, use func([]byte), take bool, deadline time.Time) (int, error) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	for {
		if e.released || e.closed.Load() {
			return 0, ErrClosed
		}
		if e.broken.Load() {
			return 0, ErrCorrupt
		}
		if !take {
			if avail := e.rx.head.Load() - e.rtail; avail > 0 {
				return int(min(avail, e.slots)), nil // RecvBatch checks the index
			}
		} else if use != nil {
			if n, err := e.takeWith(use); n > 0 || err != nil {
				return n, err
			}
		} else if n, err := e.take(bufs, sizes, marks); n > 0 || err != nil {
			return n, err
		}
		if e.rint.Load() && e.rint.Swap(false) {
			return 0, ErrInterrupted
		}
		if e.peerGone.Load() || e.rx.pclosed.Load() != 0 {
			// Drained what was sent before the close.
			if e.rx.head.Load() == e.rtail {
				return 0, ErrClosed
			}
			continue
		}
		if err := e.wait(e.rxData, e.rx.rwait, e.readable, &e.rspin, deadline); err != nil {
			return 0, err
		}
	}
}

// Ready waits like RecvBatch until an SDU is in the ring, the flow ended
// or the deadline passed, and returns how many SDUs wait, taking none:
// a reader that receives into buffers it must first obtain (the node's
// kernel buffers, from a budget) obtains only as many as there are. The
// count is at most the ring's slots; some may still be dropped by the
// RecvBatch that takes them (an impossible length). With n = 0 the error
// is what RecvBatch would return.
func (e *End) Ready(deadline time.Time) (int, error) {
	return e.recv(nil, nil, nil, nil, false, deadline)
}

// Room waits like SendBatch until the ring has a free slot, the flow
// ended or the deadline passed, and returns how many slots are free,
// filling none: a writer that holds what it sends in buffers it must give
// back (the node's kernel buffers) takes only as many as a SendBatch can
// then queue without waiting. With n = 0 the error is what SendBatch
// would return.
func (e *End) Room(deadline time.Time) (int, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	for {
		free, err := e.txFree()
		if err != nil {
			return 0, err
		}
		if free > 0 {
			return int(free), nil
		}
		if err := e.wait(e.txSpace, e.tx.wwait, e.writable, &e.wspin, deadline); err != nil {
			return 0, err
		}
	}
}

// writable reports whether Send would not wait: a free slot, or the
// flow ended.
func (e *End) writable() bool {
	return e.whead-e.tx.tail.Load() != e.slots || e.closed.Load() || e.peerGone.Load() || e.tx.cclosed.Load() != 0
}

// Send waits until the ring has room or the deadline passes, then copies
// p into it.
func (e *End) Send(p []byte, deadline time.Time) error {
	_, err := e.SendBatch([][]byte{p}, deadline)
	return err
}

// SendBatch copies sdus into the ring in order, waiting for room until
// the deadline, and returns how many it queued; it stops at the first it
// cannot queue, with that SDU's error (ErrTooBig for that one alone). The
// other side is woken once per batch, if it sleeps.
func (e *End) SendBatch(sdus [][]byte, deadline time.Time) (int, error) {
	return e.send(sdus, nil, deadline)
}

// SendMarked is SendBatch that gives each SDU a mark (marks[i], 0 where
// marks is shorter) for the reader's RecvMarked: the node's side of a
// program's ring says there what a layer said of the packet's
// congestion (kernel.Buf.Mark). A reader that does not ask ignores it.
func (e *End) SendMarked(sdus [][]byte, marks []uint8, deadline time.Time) (int, error) {
	return e.send(sdus, marks, deadline)
}

func (e *End) send(sdus [][]byte, marks []uint8, deadline time.Time) (int, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	n, published := 0, e.whead
	defer func() {
		if e.whead != published {
			e.publish()
		}
	}()
	for n < len(sdus) {
		if err := e.sendable(); err != nil {
			return n, err
		}
		p := sdus[n]
		if len(p) > e.maxSDU || len(p) == 0 {
			if len(p) == 0 {
				n++ // nothing to carry (a zero length is not an SDU)
				continue
			}
			return n, fmt.Errorf("shmring: SDU of %d bytes (max %d): %w", len(p), e.maxSDU, ErrTooBig)
		}
		slot, err := e.nextSlot(&published, deadline)
		if err != nil {
			return n, err
		}
		(*atomic.Uint32)(unsafe.Pointer(&slot[0])).Store(uint32(len(p)))
		slot[slotMark] = 0
		if n < len(marks) {
			slot[slotMark] = marks[n]
		}
		copy(slot[slotHdr:], p)
		e.whead++
		n++
	}
	return n, nil
}

// sendable reports why nothing can be sent, or nil. Called with wmu held.
func (e *End) sendable() error {
	if e.released || e.closed.Load() || e.peerGone.Load() || e.tx.cclosed.Load() != 0 {
		return ErrClosed
	}
	if e.broken.Load() {
		return ErrCorrupt
	}
	return nil
}

// txFree returns how many slots of the ring this end writes are free, or
// why nothing can be sent (sendable, or the other side's impossible
// consumer index: ErrCorrupt). Called with wmu held.
func (e *End) txFree() (uint64, error) {
	if err := e.sendable(); err != nil {
		return 0, err
	}
	tail := e.tx.tail.Load()
	used := e.whead - tail
	if used > e.slots {
		e.corrupt.Add(1)
		e.broken.Store(true)
		return 0, fmt.Errorf("shmring: consumer index %d with producer at %d in a ring of %d: %w", tail, e.whead, e.slots, ErrCorrupt)
	}
	return e.slots - used, nil
}

// nextSlot returns the slot at the producer's head once the ring has a
// free one, waiting until the deadline; before a wait it publishes what
// was written since *published. Called with wmu held.
func (e *End) nextSlot(published *uint64, deadline time.Time) ([]byte, error) {
	for {
		free, err := e.txFree()
		if err != nil {
			return nil, err
		}
		if free > 0 {
			off := int(e.whead&e.mask) * e.ss
			return e.tx.slots[off : off+e.ss : off+e.ss], nil
		}
		if e.whead != *published {
			e.publish()
			*published = e.whead
		}
		if err := e.wait(e.txSpace, e.tx.wwait, e.writable, &e.wspin, deadline); err != nil {
			return nil, err
		}
	}
}

// SendWith writes one SDU of n bytes where the reader will take it: it
// waits like Send for a free slot, calls fill with the slot's first n
// bytes for the caller to write the SDU there (so it is not copied in),
// and publishes it. fill must not keep the slice and must not call
// SendWith. n must be 1 to MaxSDU.
func (e *End) SendWith(n int, fill func(sdu []byte), deadline time.Time) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if err := e.sendable(); err != nil {
		return err
	}
	if n <= 0 || n > e.maxSDU {
		return fmt.Errorf("shmring: SDU of %d bytes (1 to %d): %w", n, e.maxSDU, ErrTooBig)
	}
	published := e.whead
	slot, err := e.nextSlot(&published, deadline)
	if err != nil {
		return err
	}
	slot[slotMark] = 0
	fill(slot[slotHdr : slotHdr+n : slotHdr+n])
	(*atomic.Uint32)(unsafe.Pointer(&slot[0])).Store(uint32(n))
	e.whead++
	e.publish()
	return nil
}

// publish makes the SDUs written so far visible and wakes the reader if
// it said it sleeps. Called with wmu held.
func (e *End) publish() {
	e.tx.head.Swap(e.whead) // a swap, not a store: see wait
	if e.tx.rwait.Load() != 0 {
		e.txData.signal()
	}
}

// wait waits until ready() or the deadline: it spins up to *spin, then
// announces it sleeps (flag), checks once more and sleeps on ev. It
// adapts *spin, up to the end's bound (MaxSpin, NodeMaxSpin): a sleep
// shorter than the bound means spinning would have paid, a longer one
// that it would not.
//
// The waiter writes flag, then reads the ring's index; the other side
// writes the index, then reads flag (publish, take): at least one of the
// two sees the other's write only if neither write can be passed by the
// read after it. Both writes are swaps, not stores. Go's atomic stores
// are sequentially consistent, but under the race detector they become
// release stores (plain moves on amd64) that a later load may pass, and
// then about one wake-up in 20,000-60,000 was lost (TestWakeupsNotLost);
// a swap stays a locked read-modify-write there. On amd64 a Go store is
// the same XCHG instruction as a swap, so this costs nothing.
func (e *End) wait(ev *evfd, flag *atomic.Uint32, ready func() bool, spin *time.Duration, deadline time.Time) error {
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return ErrTimeout
	}
	if *spin > 0 {
		start := time.Now()
		for {
			if ready() {
				*spin += *spin / 8
				if *spin > e.maxSpin {
					*spin = e.maxSpin
				}
				return nil
			}
			if time.Since(start) >= *spin {
				break
			}
			runtime.Gosched()
		}
	}
	flag.Swap(1) // a swap, not a store: see above
	if ready() {
		flag.Store(0)
		return nil
	}
	start := time.Now()
	err := ev.wait(deadline)
	flag.Store(0)
	if slept := time.Since(start); slept < e.maxSpin && err == nil {
		*spin = max(*spin, slept+slept/4)
		if *spin > e.maxSpin {
			*spin = e.maxSpin
		}
	} else {
		*spin /= 2
		if *spin < time.Microsecond {
			*spin = 0
		}
	}
	return err
}

// evfd is an eventfd in the runtime's poller, so that waiting on it parks
// a goroutine rather than a thread and honours deadlines.
type evfd struct {
	f  *os.File
	rc interface {
		Write(func(fd uintptr) bool) error
	}
	dl  time.Time // the read deadline last set
	buf [8]byte
}

func newEvfd(fd int) *evfd {
	f := os.NewFile(uintptr(fd), "ouro-eventfd")
	e := &evfd{f: f}
	if rc, err := f.SyscallConn(); err == nil {
		e.rc = rc
	}
	return e
}

var one = [8]byte{1}

// signal adds one to the counter without ever blocking: a counter the
// other side filled up (it can, it holds the fd) is already a wake-up.
func (e *evfd) signal() {
	if e.rc == nil {
		return
	}
	e.rc.Write(func(fd uintptr) bool {
		unix.Write(int(fd), one[:])
		return true
	})
}

// wait reads the counter (resetting it), waiting until it is non-zero or
// the deadline passes. Called by the eventfd's one waiter.
func (e *evfd) wait(deadline time.Time) error {
	if !deadline.Equal(e.dl) {
		if err := e.f.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("shmring: wait: %w", ErrClosed)
		}
		e.dl = deadline
	}
	_, err := e.f.Read(e.buf[:])
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case errors.Is(err, os.ErrClosed):
		return ErrClosed
	}
	return fmt.Errorf("shmring: wait: %w", err)
}

func (e *evfd) close() { e.f.Close() }
