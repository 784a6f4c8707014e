package broadcast

import (
	"encoding/binary"

	"github.com/ouronet/ouro/flow"
)

// Header is the broadcast layer's header in front of every SDU it passes
// between members (docs/layers-dir-broadcast.md):
//
//	 0               1               2               3
//	 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//	+---------------+---------------+-------------------------------+
//	|  version (1)  |      TTL      |         reserved (0)          |
//	+---------------+---------------+-------------------------------+
//	|                        sequence number                        |
//	+---------------------------------------------------------------+
//	|                                                               |
//	+                           origin id                           +
//	|                                                               |
//	+---------------------------------------------------------------+
//	|                         SDU ...                               |
//
// Big-endian. Check IsValid before any accessor.
type Header []byte

// HeaderLen is the length of a Header.
const HeaderLen = 16

// Version is the header version this package writes and accepts.
const Version = 1

// MaxPayload is the largest SDU a member can broadcast: the N-1 flows
// carry flow.MaxSDU bytes, header included.
const MaxPayload = flow.MaxSDU - HeaderLen

const (
	offVersion = 0
	offTTL     = 1
	offSeq     = 4
	offOrigin  = 8
)

// IsValid reports whether h holds a whole header of this version.
func (h Header) IsValid() bool { return len(h) >= HeaderLen && h[offVersion] == Version }

// TTL returns the hops the SDU may still travel.
func (h Header) TTL() uint8 { return h[offTTL] }

// SetTTL sets the TTL.
func (h Header) SetTTL(t uint8) { h[offTTL] = t }

// Seq returns the origin's sequence number of the SDU.
func (h Header) Seq() uint32 { return binary.BigEndian.Uint32(h[offSeq:]) }

// Origin returns the id of the member incarnation that sent the SDU.
func (h Header) Origin() uint64 { return binary.BigEndian.Uint64(h[offOrigin:]) }

// Encode writes a whole header into h (len(h) >= HeaderLen).
func (h Header) Encode(ttl uint8, seq uint32, origin uint64) {
	h[offVersion] = Version
	h[offTTL] = ttl
	h[2], h[3] = 0, 0
	binary.BigEndian.PutUint32(h[offSeq:], seq)
	binary.BigEndian.PutUint64(h[offOrigin:], origin)
}

// Payload returns the SDU after the header.
func (h Header) Payload() []byte { return h[HeaderLen:] }
