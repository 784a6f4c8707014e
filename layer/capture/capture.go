// Package capture records the packets that enter and leave an IPCP or a
// shim, for `ouro capture` and the Wireshark dissector
// (tools/wireshark/ouro.lua). It is the hook the data paths call, the
// bounded ring that holds what they offer, and the record format the
// management command and the pcapng files carry (docs/wire/capture.md).
// It is not a packet filter or a tracing framework: it copies headers
// (up to a snap length) and counts what it could not keep.
//
// Cost, written once here:
//
//   - no capture: a data path calls Point.Session, one atomic load of a
//     nil pointer, and moves on (TestPointOffAllocs);
//   - a capture: Session.Add checks the filter, reads the clock and copies
//     at most Config.Snap bytes into a preallocated slot of a bounded
//     ring (a lock-free multi-producer queue): it never blocks and never
//     allocates; when the ring is full the record is dropped and counted
//     (TestSessionAddAllocs);
//   - the management side (Drain) empties the ring a page at a time.
//
// A session that nobody drains for Config.Idle stops itself (the next
// packet offered notices), so an abandoned capture does not stay armed.
package capture

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
)

// Dir is a packet's direction as the capturing IPCP sees it.
type Dir uint8

// Directions.
const (
	In  Dir = 0 // received: from the N-1 flow (an IPCP) or the device (a shim)
	Out Dir = 1 // sent
)

func (d Dir) String() string {
	if d == Out {
		return "out"
	}
	return "in"
}

// Layer is the kind of IPCP that captured a record.
type Layer uint8

// Layers (docs/wire/capture.md).
const (
	LayerUnicast   Layer = 1
	LayerUDP       Layer = 2
	LayerEth       Layer = 3
	LayerSerial    Layer = 4
	LayerBroadcast Layer = 5
	LayerLocal     Layer = 6 // the local shim, or a test harness's in-process N-1 flows
)

var layerNames = [...]string{LayerUnicast: "unicast", LayerUDP: "udp", LayerEth: "eth", LayerSerial: "serial", LayerBroadcast: "broadcast", LayerLocal: "local"}

func (l Layer) String() string {
	if int(l) < len(layerNames) && layerNames[l] != "" {
		return layerNames[l]
	}
	return fmt.Sprintf("layer(%d)", uint8(l))
}

// Content says what a record's bytes are.
type Content uint8

// Contents (docs/wire/capture.md).
const (
	// PDU: a unicast data-transfer packet as it crosses an N-1 flow: the
	// dt PCI and its payload. Port is the N-1 flow's port (pff.Port).
	PDU Content = 1
	// SDU: a shim's data packet without the shim header: an SDU of one of
	// the shim's flows. Port is the endpoint id in the shim header.
	SDU Content = 2
	// ShimCtl: a shim control message (endpoint id 0; CBOR).
	ShimCtl Content = 3
	// Bcast: a broadcast layer's packet on a neighbour's N-1 flow: the
	// broadcast header and the SDU. Port numbers the IPCP's flows in the
	// order they came up (1, 2, ...).
	Bcast Content = 4
)

// HeaderLen is the length of the record header that precedes every
// captured packet in a pcapng file (link type LinkType) and a Drain page.
const HeaderLen = 16

// Version is the record header's version.
const Version = 1

// LinkType is the pcapng link type of ouro captures: LINKTYPE_USER0
// (https://www.tcpdump.org/linktypes.html, "reserved for private use").
const LinkType = 147

// Header is the record header: what captured a packet and where.
//
//	0 version (1)  1 flags (bit 0: out)  2 layer  3 content
//	4..11 port (big-endian)  12..15 reserved (0)
type Header []byte

// IsValid reports whether h is a whole header of a known version.
func (h Header) IsValid() bool { return len(h) >= HeaderLen && h[0] == Version }

// Dir is the packet's direction.
func (h Header) Dir() Dir { return Dir(h[1] & 1) }

// Layer is the capturing IPCP's kind.
func (h Header) Layer() Layer { return Layer(h[2]) }

// Content is what the packet bytes are.
func (h Header) Content() Content { return Content(h[3]) }

// Port is the N-1 port (unicast) or shim endpoint id.
func (h Header) Port() uint64 { return binary.BigEndian.Uint64(h[4:]) }

// PutHeader writes a header into h[:HeaderLen].
func PutHeader(h []byte, d Dir, l Layer, c Content, port uint64) {
	_ = h[HeaderLen-1]
	h[0], h[1], h[2], h[3] = Version, byte(d&1), byte(l), byte(c)
	binary.BigEndian.PutUint64(h[4:], port)
	clear(h[12:HeaderLen])
}

// Limits of a session's configuration.
const (
	DefaultSnap  = 256
	MaxSnap      = 1024 // a record must fit one management page (MaxPage)
	DefaultSlots = 1024
	MaxSlots     = 1 << 16
	DefaultIdle  = 30 * time.Second
	// MaxRingBytes bounds a ring's storage (slots × snap), allocated when
	// the capture starts: a board has little memory to spare.
	MaxRingBytes = 8 << 20
)

// Filter selects the packets a session keeps. The zero Filter keeps all.
type Filter struct {
	Dir     Dir  // with HasDir: only this direction
	HasDir  bool //
	Port    uint64
	HasPort bool // only this port / endpoint id
}

func (f Filter) match(d Dir, port uint64) bool {
	return (!f.HasDir || f.Dir == d) && (!f.HasPort || f.Port == port)
}

// Config configures a session. Zero values take the defaults.
type Config struct {
	Snap   int           // bytes kept of each packet (default 256, at most MaxSnap)
	Slots  int           // records the ring holds (rounded up to a power of two; default 1024)
	Idle   time.Duration // stop when not drained for this long (default 30 s)
	Filter Filter
}

// Errors.
var (
	ErrRunning    = fmt.Errorf("capture: a capture is running here: %w", flow.ErrExists)
	ErrNotRunning = fmt.Errorf("capture: no capture is running: %w", flow.ErrNotFound)
)

// Point is where a component offers its packets to a capture: one per
// IPCP or shim. The zero Point is ready and captures nothing. Safe for
// concurrent use.
type Point struct {
	s atomic.Pointer[Session]
}

// Session returns the running session, or nil: the data path's one
// atomic load. Call Add on what it returns.
func (p *Point) Session() *Session {
	if p == nil {
		return nil
	}
	return p.s.Load()
}

// Start arms a capture at the point of an IPCP of kind l. Only one runs
// at a point at a time.
func (p *Point) Start(l Layer, cfg Config) (*Session, error) {
	s, err := newSession(p, l, cfg)
	if err != nil {
		return nil, err
	}
	if !p.s.CompareAndSwap(nil, s) {
		return nil, ErrRunning
	}
	return s, nil
}

// Stop disarms the running capture and returns it (its ring can still be
// drained), or nil.
func (p *Point) Stop() *Session { return p.s.Swap(nil) }

// slot is one ring entry; seq orders producers and the consumer (a
// bounded MPMC queue after D. Vyukov).
type slot struct {
	seq  atomic.Uint64
	at   int64
	n    uint32 // original length
	hdr  [HeaderLen]byte
	c    int // bytes kept
	data []byte
}

// Session is one armed capture: a bounded ring of records.
type Session struct {
	p      *Point
	layer  Layer
	cfg    Config
	epoch  time.Time
	slots  []slot
	mask   uint64
	tail   atomic.Uint64 // next slot producers claim
	head   atomic.Uint64 // next slot Drain reads; written by Drain only
	drainW atomic.Bool   // a Drain in progress: one at a time
	read   atomic.Int64  // ns since epoch of the last Drain

	// Counters.
	Kept, Dropped, Filtered atomic.Uint64
}

func newSession(p *Point, l Layer, cfg Config) (*Session, error) {
	if cfg.Snap == 0 {
		cfg.Snap = DefaultSnap
	}
	if cfg.Slots == 0 {
		cfg.Slots = DefaultSlots
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.Snap < 0 || cfg.Snap > MaxSnap {
		return nil, fmt.Errorf("capture: snap %d: want 1 to %d: %w", cfg.Snap, MaxSnap, flow.ErrInvalid)
	}
	if cfg.Slots < 0 || cfg.Slots > MaxSlots {
		return nil, fmt.Errorf("capture: slots %d: want 1 to %d: %w", cfg.Slots, MaxSlots, flow.ErrInvalid)
	}
	n := 1
	for n < cfg.Slots {
		n <<= 1
	}
	if n*cfg.Snap > MaxRingBytes {
		return nil, fmt.Errorf("capture: %d slots of %d bytes: more than %d bytes: %w", n, cfg.Snap, MaxRingBytes, flow.ErrInvalid)
	}
	s := &Session{p: p, layer: l, cfg: cfg, epoch: time.Now(), slots: make([]slot, n), mask: uint64(n - 1)}
	store := make([]byte, n*cfg.Snap)
	for i := range s.slots {
		s.slots[i].seq.Store(uint64(i))
		s.slots[i].data = store[i*cfg.Snap : (i+1)*cfg.Snap : (i+1)*cfg.Snap]
	}
	return s, nil
}

// Config returns the session's configuration, defaults applied.
func (s *Session) Config() Config { return s.cfg }

// Add offers a packet: it is copied (up to the snap length) into the
// ring, or counted as dropped if the ring is full, or as filtered. It
// never blocks and allocates nothing; pkt is not retained. Safe for
// concurrent use.
func (s *Session) Add(d Dir, c Content, port uint64, pkt []byte) {
	if !s.cfg.Filter.match(d, port) {
		s.Filtered.Add(1)
		return
	}
	now := time.Since(s.epoch)
	if int64(now)-s.read.Load() > int64(s.cfg.Idle) {
		s.p.s.CompareAndSwap(s, nil) // abandoned: disarm
		s.Dropped.Add(1)
		return
	}
	for {
		pos := s.tail.Load()
		sl := &s.slots[pos&s.mask]
		seq := sl.seq.Load()
		switch dif := int64(seq - pos); {
		case dif == 0:
			if !s.tail.CompareAndSwap(pos, pos+1) {
				continue
			}
			sl.at = s.epoch.UnixNano() + int64(now)
			sl.n = uint32(len(pkt))
			PutHeader(sl.hdr[:], d, s.layer, c, port)
			sl.c = copy(sl.data, pkt)
			sl.seq.Store(pos + 1)
			s.Kept.Add(1)
			return
		case dif < 0: // full
			s.Dropped.Add(1)
			return
		}
		// another producer claimed pos: retry with the new tail
	}
}

// Page framing (docs/wire/capture.md): each record is
//
//	time (8, ns since 1970, big-endian) | length (4: the packet's, before
//	snapping) | kept (2) | header (16) | kept bytes
const recHead = 8 + 4 + 2

// MaxPage is the most Drain puts in one page: with its base64 text and
// the answer's table it fits a management answer (kernel.MaxPayload).
const MaxPage = 1200

// Drain appends whole records from the ring to dst until the ring is
// empty or another would pass max bytes, and returns dst and how many
// records it took. One Drain runs at a time (others return at once).
func (s *Session) Drain(dst []byte, max int) ([]byte, int) {
	if !s.drainW.CompareAndSwap(false, true) {
		return dst, 0
	}
	defer s.drainW.Store(false)
	s.read.Store(int64(time.Since(s.epoch)))
	k := 0
	for {
		head := s.head.Load()
		sl := &s.slots[head&s.mask]
		if sl.seq.Load() != head+1 {
			return dst, k
		}
		if len(dst)+recHead+HeaderLen+sl.c > max {
			return dst, k
		}
		dst = binary.BigEndian.AppendUint64(dst, uint64(sl.at))
		dst = binary.BigEndian.AppendUint32(dst, sl.n)
		dst = binary.BigEndian.AppendUint16(dst, uint16(sl.c))
		dst = append(dst, sl.hdr[:]...)
		dst = append(dst, sl.data[:sl.c]...)
		sl.seq.Store(head + s.mask + 1)
		s.head.Store(head + 1)
		k++
	}
}

// Pending is about how many records wait in the ring (those being
// written included).
func (s *Session) Pending() int { return int(s.tail.Load() - s.head.Load()) }

// Record is one captured packet, as a page carries it.
type Record struct {
	Time   time.Time
	Len    int    // the packet's length before snapping
	Header Header // HeaderLen bytes
	Data   []byte // the kept bytes
}

// ErrMalformed is returned for a page that does not parse.
var ErrMalformed = fmt.Errorf("capture: malformed page: %w", flow.ErrInvalid)

// DecodePage parses a page made by Drain. The records' slices point into
// b. It accepts at most MaxPageRecords records.
func DecodePage(b []byte) ([]Record, error) {
	var out []Record
	for len(b) > 0 {
		if len(b) < recHead+HeaderLen {
			return nil, fmt.Errorf("%w: %d bytes left, want at least %d", ErrMalformed, len(b), recHead+HeaderLen)
		}
		if len(out) >= MaxPageRecords {
			return nil, fmt.Errorf("%w: more than %d records", ErrMalformed, MaxPageRecords)
		}
		at := int64(binary.BigEndian.Uint64(b))
		n := binary.BigEndian.Uint32(b[8:])
		c := int(binary.BigEndian.Uint16(b[12:]))
		h := Header(b[recHead : recHead+HeaderLen])
		b = b[recHead+HeaderLen:]
		switch {
		case !h.IsValid():
			return nil, fmt.Errorf("%w: header version %d", ErrMalformed, h[0])
		case c > len(b) || c > MaxSnap:
			return nil, fmt.Errorf("%w: record of %d bytes, %d left", ErrMalformed, c, len(b))
		case uint32(c) > n:
			return nil, fmt.Errorf("%w: kept %d of a %d-byte packet", ErrMalformed, c, n)
		}
		out = append(out, Record{Time: time.Unix(0, at), Len: int(n), Header: h, Data: b[:c:c]})
		b = b[c:]
	}
	return out, nil
}

// MaxPageRecords bounds the records of one page (each takes at least 30
// bytes of MaxPage).
const MaxPageRecords = MaxPage / (recHead + HeaderLen)
