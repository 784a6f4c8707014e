// Package dt is the data-transfer part of a unicast IPCP: the PCI (the
// fixed header every packet in the layer carries), the forward-or-deliver
// decision, the per-QoS-cube scheduler, the packet buffers and their
// bounded pool, and the N-1 ports' receive and transmit loops (Loops),
// which call the IPCP only through Host. It keeps no flows (package fa
// does: the N+1 side of the data path stays with the IPCP) and computes
// no routes (package routing does).
package dt

import (
	"encoding/binary"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// The PCI layout (docs/wire/unicast-dt.md); all fields big-endian. The
// field order is Ouroboros' dt_pci: dst addr, qos cube, ttl, ecn, eid.
const (
	dstOff  = 0  // destination address, 8 bytes
	cubeOff = 8  // QoS cube, 1 byte
	ttlOff  = 9  // time to live, 1 byte
	ecnOff  = 10 // congestion level, 1 byte
	eidOff  = 11 // destination endpoint id, 8 bytes

	// PCILen is the length of the PCI in bytes.
	PCILen = 19
)

// DefaultTTL is the TTL a sender starts with (Ouroboros' default max_ttl
// of 60 hops).
const DefaultTTL = 60

// PCI is the data-transfer header of a unicast layer, parsed in place.
// Call IsValid before any accessor; accessors on a PCI shorter than PCILen
// panic.
type PCI []byte

// IsValid reports whether p is long enough to hold a PCI.
func (p PCI) IsValid() bool { return len(p) >= PCILen }

// Dst returns the destination address.
func (p PCI) Dst() layer.Addr { return layer.Addr(binary.BigEndian.Uint64(p[dstOff:])) }

// SetDst sets the destination address.
func (p PCI) SetDst(a layer.Addr) { binary.BigEndian.PutUint64(p[dstOff:], uint64(a)) }

// Cube returns the QoS cube the packet is scheduled on. It may be out of
// range (>= flow.NumCubes) on a corrupt packet; Decide drops those.
func (p PCI) Cube() flow.Cube { return flow.Cube(p[cubeOff]) }

// SetCube sets the QoS cube.
func (p PCI) SetCube(c flow.Cube) { p[cubeOff] = byte(c) }

// TTL returns the remaining hop count.
func (p PCI) TTL() uint8 { return p[ttlOff] }

// SetTTL sets the remaining hop count.
func (p PCI) SetTTL(t uint8) { p[ttlOff] = t }

// ECN returns the congestion level the path marked (0 none, 255 most;
// see package ca).
func (p PCI) ECN() uint8 { return p[ecnOff] }

// SetECN sets the congestion level.
func (p PCI) SetECN(e uint8) { p[ecnOff] = e }

// RaiseECN sets the congestion level to level if that is higher: a
// forwarder marks the worst congestion on the path.
func (p PCI) RaiseECN(level uint8) {
	if level > p[ecnOff] {
		p[ecnOff] = level
	}
}

// EID returns the destination endpoint id.
func (p PCI) EID() layer.EID { return layer.EID(binary.BigEndian.Uint64(p[eidOff:])) }

// SetEID sets the destination endpoint id.
func (p PCI) SetEID(e layer.EID) { binary.BigEndian.PutUint64(p[eidOff:], uint64(e)) }

// Payload returns what follows the PCI.
func (p PCI) Payload() []byte { return p[PCILen:] }

// Fields is a PCI as values, for writing one.
type Fields struct {
	Dst  layer.Addr
	Cube flow.Cube
	TTL  uint8
	ECN  uint8
	EID  layer.EID
}

// Encode writes f into p, which must be valid.
func (p PCI) Encode(f Fields) {
	p.SetDst(f.Dst)
	p.SetCube(f.Cube)
	p.SetTTL(f.TTL)
	p.SetECN(f.ECN)
	p.SetEID(f.EID)
}

// Decode returns p's fields; p must be valid.
func (p PCI) Decode() Fields {
	return Fields{Dst: p.Dst(), Cube: p.Cube(), TTL: p.TTL(), ECN: p.ECN(), EID: p.EID()}
}

// Prepend writes f into the headroom of buf just before offset start (where
// the payload begins) and returns the new start of the packet,
// start-PCILen. It reports false, writing nothing, if the headroom is
// smaller than PCILen. The caller owns buf; nothing is allocated.
func Prepend(buf []byte, start int, f Fields) (int, bool) {
	if start < PCILen || start > len(buf) {
		return start, false
	}
	start -= PCILen
	PCI(buf[start:]).Encode(f)
	return start, true
}
