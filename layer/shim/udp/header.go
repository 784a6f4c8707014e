package udp

import "encoding/binary"

// HeaderLen is the length of the UDP shim header.
const HeaderLen = 4

// CtlEID is the reserved endpoint id of control messages.
const CtlEID = 0

// Header is a UDP shim packet as received or built in place: a 4-byte
// big-endian destination endpoint id, then the SDU (docs/wire/shims.md).
// Check IsValid before using the accessors.
type Header []byte

const offEID = 0

// IsValid reports whether h is long enough to hold a header.
func (h Header) IsValid() bool { return len(h) >= HeaderLen }

// EID returns the destination endpoint id (CtlEID: a control message).
func (h Header) EID() uint32 { return binary.BigEndian.Uint32(h[offEID:]) }

// SetEID sets the destination endpoint id.
func (h Header) SetEID(eid uint32) { binary.BigEndian.PutUint32(h[offEID:], eid) }

// Payload returns the SDU or control message after the header.
func (h Header) Payload() []byte { return h[HeaderLen:] }
