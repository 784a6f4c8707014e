package eth

import (
	"encoding/binary"
	"fmt"
	"net"
)

// EtherType is the EtherType of shim frames: Ouroboros' DIX mode value.
const EtherType = 0xA000

// Frame layout sizes (docs/wire/shims.md).
const (
	MACLen     = 6
	EthLen     = 2*MACLen + 2 // destination, source, EtherType
	ShimLen    = 4            // endpoint id, SDU length
	HeaderLen  = EthLen + ShimLen
	MinFrame   = 60            // IEEE 802.3 minimum without FCS; shorter frames are padded
	CtlEID     = 0             // the reserved endpoint id of control frames
	MaxEID     = 0xFFFF        // endpoint ids are 16 bits
	DefaultMTU = 1500          // payload bytes after the Ethernet header
	maxFrame   = EthLen + 9000 // the largest frame read (jumbo)
)

const (
	offDst  = 0
	offSrc  = 6
	offType = 12
	offEID  = 14
	offLen  = 16
)

// MAC is an Ethernet address as a comparable value.
type MAC [MACLen]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// MACFrom converts a 6-byte hardware address.
func MACFrom(a net.HardwareAddr) (MAC, error) {
	var m MAC
	if len(a) != MACLen {
		return m, fmt.Errorf("eth: hardware address %v is not 6 bytes", a)
	}
	copy(m[:], a)
	return m, nil
}

// String formats m as aa:bb:cc:dd:ee:ff.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// IsMulticast reports whether m is a group address (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 == 1 }

// Frame is an Ethernet frame of the shim, from the destination MAC on (no
// FCS): Ethernet header, 2-byte endpoint id, 2-byte SDU length, SDU,
// padding. All fields are big-endian. Check IsValid before the shim
// accessors; the Ethernet accessors need len(f) >= EthLen.
type Frame []byte

// IsValid reports whether f holds a shim header and the SDU its length
// field announces (padding after it is allowed).
func (f Frame) IsValid() bool {
	return len(f) >= HeaderLen && int(f.Len()) <= len(f)-HeaderLen
}

// Dst returns the destination MAC.
func (f Frame) Dst() (m MAC) { copy(m[:], f[offDst:]); return m }

// Src returns the source MAC.
func (f Frame) Src() (m MAC) { copy(m[:], f[offSrc:]); return m }

// EtherType returns the EtherType.
func (f Frame) EtherType() uint16 { return binary.BigEndian.Uint16(f[offType:]) }

// EID returns the destination endpoint id (CtlEID: a control frame).
func (f Frame) EID() uint16 { return binary.BigEndian.Uint16(f[offEID:]) }

// Len returns the SDU length.
func (f Frame) Len() uint16 { return binary.BigEndian.Uint16(f[offLen:]) }

// Payload returns the SDU, without padding.
func (f Frame) Payload() []byte { return f[HeaderLen : HeaderLen+int(f.Len())] }

// SetHeader writes the whole header for an SDU of n bytes.
func (f Frame) SetHeader(dst, src MAC, eid uint16, n int) {
	copy(f[offDst:], dst[:])
	copy(f[offSrc:], src[:])
	binary.BigEndian.PutUint16(f[offType:], EtherType)
	binary.BigEndian.PutUint16(f[offEID:], eid)
	binary.BigEndian.PutUint16(f[offLen:], uint16(n))
}
