package kernel

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Packet buffer geometry. A Buf holds its kernel's buffer size
// (Config.BufSize, by default BufSize bytes) of data after Headroom bytes
// reserved for headers that lower layers prepend. MaxBufSize bounds the
// data size a kernel may be configured with.
const (
	BufSize    = 2048
	Headroom   = 128
	MaxBufSize = 1 << 16
)

// A buffer's owner is one atomic word: ownerFree while it is free (in the
// pool), ownerRing while it is queued in a ring, otherwise the id of the
// incarnation that holds it (PD.bid; an integer, not a pointer, so the
// stores need no GC write barrier). Every transfer is one store or compare-and-swap of that
// word, so the kernel always knows which incarnation holds which buffers
// (to free them when it dies) at no cost beyond the state the double-free
// check needed anyway. Checked always on push and free (pushing or freeing
// a buffer the caller does not hold panics) and, in kerneldebug builds, on
// every access.
const (
	ownerFree uint64 = iota
	ownerRing
	firstBufHolder // the first PD.bid
)

// ownerName describes a buffer owner for a panic message.
func ownerName(o uint64) string {
	switch o {
	case ownerFree:
		return "free"
	case ownerRing:
		return "in a ring"
	}
	return fmt.Sprintf("held by incarnation #%d", o)
}

// Buf is a packet buffer drawn from a component's budget. Its data window
// starts at Headroom with length 0; Prepend grows it into the headroom,
// Extend grows it at the tail. A Buf has exactly one owner, and is charged
// to exactly one budget: its holder's. Pushing it into a ring moves it
// (and its charge) to the ring, whose creator's budget it is charged to
// while queued, and then to whoever pops it; whoever holds it last frees
// it (PD.FreeBuf), which credits the freer's budget. A Buf is not safe for
// concurrent use.
type Buf struct {
	off, end int
	owner    atomic.Uint64 // ownerFree, ownerRing, or the holder's PD.bid
	data     []byte        // Headroom + the kernel's buffer size, made once
	mark     uint8         // SetMark's; 0 in a buffer just allocated
}

// NewBuf returns a buffer of size data bytes (0: BufSize) outside any
// kernel, held by no one: for tests and benchmarks of code that takes
// buffers, not for a component (which draws them from its budget).
func NewBuf(size int) *Buf {
	if size <= 0 {
		size = BufSize
	}
	b := &Buf{data: make([]byte, Headroom+size)}
	b.off, b.end = Headroom, Headroom
	b.owner.Store(firstBufHolder)
	return b
}

func (b *Buf) check() {
	if debug {
		if o := b.owner.Load(); o < firstBufHolder {
			panic(fmt.Sprintf("kernel: use of packet buffer %p after transfer (%s)", b, ownerName(o)))
		}
	}
}

// Bytes returns the data window. The slice aliases the buffer: it must not
// be used after the buffer is pushed or freed.
func (b *Buf) Bytes() []byte {
	b.check()
	return b.data[b.off:b.end]
}

// Len returns the length of the data window.
func (b *Buf) Len() int { return b.end - b.off }

// HeadSpace returns how many bytes Prepend can still add.
func (b *Buf) HeadSpace() int { return b.off }

// TailSpace returns how many bytes Extend can still add.
func (b *Buf) TailSpace() int { return len(b.data) - b.end }

// Reset puts the window at Headroom with length 0.
func (b *Buf) Reset() {
	b.check()
	b.off, b.end = Headroom, Headroom
}

// Mark returns what the last holder that set it said of the packet (a
// layer that delivers it: its congestion level); 0 in a buffer just
// allocated.
func (b *Buf) Mark() uint8 {
	b.check()
	return b.mark
}

// SetMark sets what Mark returns: a byte that travels with the buffer
// through rings, as its window does.
func (b *Buf) SetMark(m uint8) {
	b.check()
	b.mark = m
}

// Size returns how many bytes of data the buffer holds after Headroom:
// its kernel's buffer size.
func (b *Buf) Size() int { return len(b.data) - Headroom }

// SetLen puts the window at [Headroom, Headroom+n). It panics if n is
// negative or larger than Size.
func (b *Buf) SetLen(n int) {
	b.check()
	if n < 0 || n > len(b.data)-Headroom {
		panic(fmt.Sprintf("kernel: Buf.SetLen(%d) out of range [0, %d]", n, len(b.data)-Headroom))
	}
	b.off, b.end = Headroom, Headroom+n
}

// Extend grows the window by n bytes at the tail and returns them. It
// panics if there is no room.
func (b *Buf) Extend(n int) []byte {
	b.check()
	if n < 0 || n > len(b.data)-b.end {
		panic(fmt.Sprintf("kernel: Buf.Extend(%d) with %d bytes of tailroom", n, len(b.data)-b.end))
	}
	b.end += n
	return b.data[b.end-n : b.end]
}

// Append copies p to the tail of the window, growing it; it returns how
// many bytes fit (all of p unless the buffer is full).
func (b *Buf) Append(p []byte) int {
	b.check()
	n := copy(b.data[b.end:], p)
	b.end += n
	return n
}

// Prepend grows the window by n bytes into the headroom and returns them
// (for a header). It panics if there is not enough headroom.
func (b *Buf) Prepend(n int) []byte {
	b.check()
	if n < 0 || n > b.off {
		panic(fmt.Sprintf("kernel: Buf.Prepend(%d) with %d bytes of headroom", n, b.off))
	}
	b.off -= n
	return b.data[b.off : b.off+n]
}

// Room returns the data window preceded by head bytes of headroom, with
// the buffer's tailroom as its capacity: for a holder that writes a
// header in front of the data and a trailer after it in place (a shim
// sealing and sending an SDU). The slice aliases the buffer, as Bytes'
// does. It panics if head exceeds HeadSpace.
func (b *Buf) Room(head int) []byte {
	b.check()
	if head < 0 || head > b.off {
		panic(fmt.Sprintf("kernel: Buf.Room(%d) with %d bytes of headroom", head, b.off))
	}
	return b.data[b.off-head : b.end : len(b.data)]
}

// Data returns the whole buffer (headroom, window and tailroom) and the
// window's bounds in it, data[off:end]: for a holder that keeps the
// window in a packet type of its own and hands the buffer on (a layer
// forwarding it without a copy; SetWindow puts its window back). The
// slice aliases the buffer, as Bytes' does.
func (b *Buf) Data() (data []byte, off, end int) {
	b.check()
	return b.data, b.off, b.end
}

// SetWindow puts the window at data[off:end] (Data's slice). It panics
// if the bounds are out of range.
func (b *Buf) SetWindow(off, end int) {
	b.check()
	if off < 0 || off > end || end > len(b.data) {
		panic(fmt.Sprintf("kernel: Buf.SetWindow(%d, %d) of %d bytes", off, end, len(b.data)))
	}
	b.off, b.end = off, end
}

// TrimFront strips n bytes from the front of the window (a header). It
// panics if n exceeds Len.
func (b *Buf) TrimFront(n int) {
	b.check()
	if n < 0 || n > b.end-b.off {
		panic(fmt.Sprintf("kernel: Buf.TrimFront(%d) of %d bytes", n, b.end-b.off))
	}
	b.off += n
}

// Truncate shortens the window to n bytes, keeping its start. It panics if
// n exceeds Len.
func (b *Buf) Truncate(n int) {
	b.check()
	if n < 0 || n > b.end-b.off {
		panic(fmt.Sprintf("kernel: Buf.Truncate(%d) of %d bytes", n, b.end-b.off))
	}
	b.end = b.off + n
}

// bufPool is the node's store of packet buffers. Budgets decide who may
// hold how many; the pool only recycles memory.
type bufPool struct {
	size int // each buffer's data bytes after Headroom; set before use
	mu   sync.Mutex
	free []*Buf // guarded by mu
	all  []*Buf // guarded by mu: every buffer ever made (append only)
}

// get fills bufs with free buffers (allocating new ones if the pool is
// empty: only until the budgets' total is reached, since they are reused).
func (p *bufPool) get(bufs []*Buf) {
	p.mu.Lock()
	n := len(p.free)
	k := min(n, len(bufs))
	copy(bufs, p.free[n-k:])
	clear(p.free[n-k:])
	p.free = p.free[:n-k]
	p.mu.Unlock()
	if k == len(bufs) {
		return
	}
	for i := k; i < len(bufs); i++ {
		bufs[i] = &Buf{data: make([]byte, Headroom+p.size)}
	}
	p.mu.Lock()
	p.all = append(p.all, bufs[k:]...)
	p.mu.Unlock()
}

// registry returns every buffer made so far (for a scan by owner).
func (p *bufPool) registry() []*Buf {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all
}

func (p *bufPool) put(bufs []*Buf) {
	p.mu.Lock()
	p.free = append(p.free, bufs...)
	p.mu.Unlock()
}
