// Package shmring is the shared-memory data path between a hosted node and
// a program outside it: one flow's SDUs travel through two single-producer
// single-consumer rings in one memory mapping (a sealed memfd) that both
// processes map, with one eventfd per ring and direction for wake-ups.
//
// The node creates the mapping (Create), seals it against resizing and
// hands its fd and the four eventfds to the program over the node socket;
// the program maps it (Open). Ring 0 (ToNode) carries what the program
// writes, ring 1 (ToProgram) what it reads. Each ring has a header of
// four shared words per side and Slots fixed-size slots:
//
//	producer line: head (u64), writer waiting (u32), producer closed (u32)
//	consumer line: tail (u64), reader waiting (u32), consumer closed (u32)
//	slot:          length (u32), mark (u8), pad (3 bytes), data (MaxSDU bytes)
//
// The program is not trusted. The node's End never reads back an index it
// owns from shared memory (it keeps its own copy), bounds every index it
// reads from the program by the ring's size, reads each length once and
// checks it against MaxSDU before copying, and computes every offset from
// its own copy of the geometry: whatever a program writes into the
// mapping, the node never reads or writes outside it, so a program can
// corrupt only its own flows. A bad length costs the SDU (counted in
// Drops); an impossible index breaks the flow (ErrCorrupt, counted too).
// The memfd is sealed (no shrinking or growing), so a program cannot
// make the node's accesses fault by truncating it.
//
// Wake-ups: a reader that finds its ring empty spins a while (adaptively,
// see Spin), then sets its "reader waiting" word, checks the ring once more
// and sleeps on its eventfd; a writer signals the eventfd only when it sees
// that word set (sequentially consistent atomics on both sides make the
// store-then-load pairs safe). A writer that finds the ring full does the
// same with "writer waiting" and the ring's space eventfd; the reader
// signals it once half the ring is free or the ring is empty, so that a
// reader of one SDU at a time does not wake it for every slot (it never
// waits on a reader that waits too: a reader waits only on an empty
// ring).
//
// The format is described in docs/wire/node-socket.md.
package shmring

import "errors"

// Errors. The flow package maps them onto its own.
var (
	// ErrClosed: this end or the other closed the flow (and, for a
	// read, every SDU in flight was read).
	ErrClosed = errors.New("shmring: closed")
	// ErrTimeout: the deadline passed.
	ErrTimeout = errors.New("shmring: deadline passed")
	// ErrTooBig: an SDU longer than the ring's slots.
	ErrTooBig = errors.New("shmring: SDU too big")
	// ErrTruncated: an SDU longer than the caller's buffer (it is read,
	// cut to the buffer).
	ErrTruncated = errors.New("shmring: SDU truncated")
	// ErrCorrupt: the other side wrote an impossible index into the
	// shared header; the flow is broken.
	ErrCorrupt = errors.New("shmring: ring corrupted by the other side")
	// ErrInvalid: a mapping or geometry that is not a ring of this
	// version.
	ErrInvalid = errors.New("shmring: invalid mapping")
	// ErrInterrupted: InterruptRecv woke the receive in progress (or
	// the next one) before an SDU arrived: the caller looks again at
	// what it waits for (a new deadline) and calls again.
	ErrInterrupted = errors.New("shmring: receive interrupted")
	// ErrUnsupported: shared rings need Linux (memfd, eventfd).
	ErrUnsupported = errors.New("shmring: not supported on this system")
)

// Ring geometry and layout. Offsets are in bytes from the mapping's start.
const (
	Magic   = 0x5352554f // "OURS", little-endian
	Version = 1

	// DefaultSlots is the slots per ring the node gives a flow: 16 SDUs
	// in flight per direction, 48 KiB per flow's mapping.
	DefaultSlots = 16
	// MaxSlots bounds the slots per ring.
	MaxSlots = 1 << 12

	headerSize  = 4096 // global header and both rings' headers
	ringHdrOff  = 256  // ring i's header at ringHdrOff + i*ringHdrSize
	ringHdrSize = 256
	consOff     = 128 // the consumer's words, on their own cache lines
	slotHdr     = 8   // length (u32), mark (u8) and pad before each slot's data
	slotMark    = 4   // the mark's offset in a slot (SendMarked, RecvMarked)
)

// Ring indexes.
const (
	ToNode    = 0 // the program writes, the node reads
	ToProgram = 1 // the node writes, the program reads
)

// Geometry is a mapping's shape.
type Geometry struct {
	Slots  int // slots per ring, a power of two
	MaxSDU int // the largest SDU a slot holds
}

// slotSize is the bytes one slot takes: header and data, rounded up to a
// cache line.
func (g Geometry) slotSize() int { return (slotHdr + g.MaxSDU + 63) &^ 63 }

// Size is the mapping's size in bytes.
func (g Geometry) Size() int { return headerSize + 2*g.Slots*g.slotSize() }

func (g Geometry) valid() bool {
	return g.Slots >= 1 && g.Slots <= MaxSlots && g.Slots&(g.Slots-1) == 0 && g.MaxSDU >= 1 && g.MaxSDU <= 1<<16
}

// Stats counts what the other side got wrong, as seen by this end.
type Stats struct {
	Drops   uint64 // slots skipped: a length of 0 or over MaxSDU
	Corrupt uint64 // impossible indexes seen (each breaks the flow)
}
