package serial

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// Frame layout (docs/wire/serial.md). A frame body is a Header, a
// type-specific part and a CRC-32C; on the wire it is COBS-encoded and
// followed by one 0x00 delimiter.
const (
	Version   = 1  // the version nibble of byte 0
	HeaderLen = 10 // version/type, flags, seq, limit
	DataLen   = HeaderLen + 4
	HelloLen  = HeaderLen + 16 // nonce, seen
	ByeLen    = HeaderLen + 8  // nonce
	CRCLen    = 4
	// MaxBody is the largest frame body: a data header, a full SDU and the CRC.
	MaxBody = DataLen + flow.MaxSDU + CRCLen
	// MaxEncoded is the largest frame on the wire, delimiter included
	// (Cost(MaxBody)); the decoder discards longer runs.
	MaxEncoded = MaxBody + MaxBody/254 + 2
	// Delimiter ends every frame; COBS removes it from the body.
	Delimiter = 0x00
)

// FrameType is the low nibble of a frame's first byte.
type FrameType uint8

// Frame types.
const (
	TypeData   FrameType = 1 // an SDU for an endpoint id, or (eid 0) a shim control message; credited
	TypeHello  FrameType = 2 // handshake and keepalive: nonce, the peer nonce last heard
	TypeCredit FrameType = 3 // only the header: a credit update, or (FlagProbe) a request for one
	TypeBye    FrameType = 4 // the sender is stopping: nonce
)

// FlagProbe in a frame's flags asks the receiver to answer at once with a
// credit frame (the sender is waiting for credit).
const FlagProbe = 0x01

const (
	offVT    = 0
	offFlags = 1
	offSeq   = 2
	offLimit = 6
	offEID   = 10
	offNonce = 10
	offSeen  = 18
)

// Cost is what a frame with a body of n bytes (CRC included) counts against
// the peer's credit: an upper bound of its encoded size on the wire, COBS
// overhead and delimiter included.
func Cost(n int) uint32 { return uint32(n + n/254 + 2) }

// Header is a frame body without its CRC, as the decoder returns it. Check
// IsValid before the accessors.
type Header []byte

// IsValid reports whether h has a known version and type and the length
// that type needs (a data frame: at most flow.MaxSDU bytes of payload).
func (h Header) IsValid() bool {
	if len(h) < HeaderLen || h[offVT]>>4 != Version {
		return false
	}
	switch h.Type() {
	case TypeData:
		return len(h) >= DataLen && len(h) <= DataLen+flow.MaxSDU
	case TypeHello:
		return len(h) == HelloLen
	case TypeCredit:
		return len(h) == HeaderLen
	case TypeBye:
		return len(h) == ByeLen
	}
	return false
}

// Type returns the frame type.
func (h Header) Type() FrameType { return FrameType(h[offVT] & 0x0f) }

// Flags returns the flags byte.
func (h Header) Flags() uint8 { return h[offFlags] }

// Seq returns the sender's credited byte count, this frame included.
func (h Header) Seq() uint32 { return binary.BigEndian.Uint32(h[offSeq:]) }

// Limit returns the credit the sender grants: the receiver may send
// credited frames while its Seq stays at or below Limit.
func (h Header) Limit() uint32 { return binary.BigEndian.Uint32(h[offLimit:]) }

// EID returns a data frame's destination endpoint id (0: control).
func (h Header) EID() uint32 { return binary.BigEndian.Uint32(h[offEID:]) }

// Payload returns a data frame's SDU or control message.
func (h Header) Payload() []byte { return h[DataLen:] }

// Nonce returns a hello's or bye's sender nonce.
func (h Header) Nonce() uint64 { return binary.BigEndian.Uint64(h[offNonce:]) }

// Seen returns a hello's last heard peer nonce (0: none).
func (h Header) Seen() uint64 { return binary.BigEndian.Uint64(h[offSeen:]) }

// SetHeader writes the common header.
func (h Header) SetHeader(t FrameType, flags uint8, seq, limit uint32) {
	h[offVT] = Version<<4 | byte(t)
	h[offFlags] = flags
	binary.BigEndian.PutUint32(h[offSeq:], seq)
	binary.BigEndian.PutUint32(h[offLimit:], limit)
}

// SetEID writes a data frame's endpoint id.
func (h Header) SetEID(eid uint32) { binary.BigEndian.PutUint32(h[offEID:], eid) }

// SetHello writes a hello's nonces.
func (h Header) SetHello(nonce, seen uint64) {
	binary.BigEndian.PutUint64(h[offNonce:], nonce)
	binary.BigEndian.PutUint64(h[offSeen:], seen)
}

// SetNonce writes a bye's nonce.
func (h Header) SetNonce(nonce uint64) { binary.BigEndian.PutUint64(h[offNonce:], nonce) }

// castagnoli is the CRC-32C table (RFC 3720 B.4); immutable after init.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendFrame appends the wire form of the frame body b (CRC-32C appended,
// COBS-encoded, 0x00-terminated) to dst and returns the extended slice. It
// allocates nothing when cap(dst)-len(dst) >= Cost(len(b)+CRCLen).
func AppendFrame(dst, b []byte) []byte {
	var crc [CRCLen]byte
	binary.BigEndian.PutUint32(crc[:], crc32.Checksum(b, castagnoli))
	code := len(dst) // where the current block's code byte goes
	dst = append(dst, 0)
	n := byte(1)
	for _, seg := range [2][]byte{b, crc[:]} {
		for _, c := range seg {
			if c == 0 {
				dst[code] = n
				code, n = len(dst), 1
				dst = append(dst, 0)
				continue
			}
			dst = append(dst, c)
			if n++; n == 0xff {
				dst[code] = n
				code, n = len(dst), 1
				dst = append(dst, 0)
			}
		}
	}
	dst[code] = n
	return append(dst, Delimiter)
}

// Decoder errors. A frame that fails is dropped; the next delimiter
// resynchronises.
var (
	ErrFrameTooLong = errors.New("serial: frame too long")
	ErrCOBS         = errors.New("serial: bad COBS encoding")
	ErrCRC          = errors.New("serial: CRC mismatch")
	ErrShort        = errors.New("serial: frame too short")
)

// Decoder splits a byte stream into frames: it COBS-decodes on the fly
// into a fixed buffer and checks each frame's CRC at its delimiter. Empty
// frames (consecutive delimiters) are skipped silently; a run longer than
// MaxEncoded is discarded up to the next delimiter. The zero value is not
// usable; use NewDecoder. One goroutine at a time.
type Decoder struct {
	buf  []byte
	n    int  // decoded bytes in buf
	left int  // data bytes left in the current COBS block
	zero bool // the current block ends in a zero (its code < 0xff)
	raw  int  // encoded bytes of the current frame
	skip bool // discarding up to the next delimiter
	bad  bool // the current frame is already broken (COBS)
}

// NewDecoder returns a decoder for frames of at most MaxBody bytes.
func NewDecoder() *Decoder { return &Decoder{buf: make([]byte, MaxBody)} }

// Next consumes bytes of p up to and including the next delimiter. It
// returns how many bytes it consumed and, if a frame ended, either its body
// without the CRC (valid until the next call) or why it was dropped. If it
// consumed all of p without a frame ending, body and err are nil. It
// allocates nothing.
func (d *Decoder) Next(p []byte) (n int, body Header, err error) {
	for i, c := range p {
		if c == Delimiter {
			body, err = d.end()
			if body == nil && err == nil { // an empty frame: keep going
				continue
			}
			return i + 1, body, err
		}
		if d.skip {
			continue
		}
		if d.raw++; d.raw > MaxEncoded-1 {
			d.skip = true
			continue
		}
		if d.bad {
			continue
		}
		if d.left > 0 {
			d.buf[d.n] = c
			d.n++
			d.left--
			continue
		}
		// A code byte. The previous block's zero is real: data follows.
		if d.zero {
			if d.n == len(d.buf) {
				d.bad = true
				continue
			}
			d.buf[d.n] = 0
			d.n++
		}
		d.left, d.zero = int(c)-1, c != 0xff
		if d.n+d.left > len(d.buf) {
			d.bad = true // it would decode beyond MaxBody
		}
	}
	return len(p), nil, nil
}

// end finishes the frame at a delimiter and resets the decoder.
func (d *Decoder) end() (Header, error) {
	n, raw, left, skip, bad := d.n, d.raw, d.left, d.skip, d.bad
	d.n, d.left, d.zero, d.raw, d.skip, d.bad = 0, 0, false, 0, false, false
	switch {
	case skip:
		return nil, ErrFrameTooLong
	case raw == 0:
		return nil, nil
	case bad || left != 0:
		return nil, ErrCOBS
	case n < HeaderLen+CRCLen:
		return nil, ErrShort
	}
	b := d.buf[:n-CRCLen]
	if crc32.Checksum(b, castagnoli) != binary.BigEndian.Uint32(d.buf[n-CRCLen:n]) {
		return nil, ErrCRC
	}
	return Header(b), nil
}

// headroom is the engine's headroom: the data frame header.
const headroom = DataLen

// a control message and a key-exchange piece must fit a data frame.
const _ = uint(flow.MaxSDU - engine.MaxMsgLen)
const _ = uint(flow.MaxSDU - engine.MaxKexLen)
