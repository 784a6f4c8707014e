package frct

import (
	"encoding/binary"
	"strings"
)

// HeaderSize is the size of the FRCT header (PCI) in bytes. A packet is the
// header followed, for DATA packets only, by the SDU, and for SACK packets
// only, by the SACK blocks. See docs/wire/frct.md.
const HeaderSize = 16

// SackBlockSize is the size of one SACK block: two seqnos, start and end.
// MaxSackBlocks is the most a packet carries (the sender of an ACK puts in
// as many as it has, up to this and what its packet buffer holds). TCP's
// four come from its 40-byte option space; an FRCT ACK has the SDU's room
// (64 blocks are 512 bytes). They cover the scoreboard of the default
// 256-packet window losing one packet in seven (three hops losing 5% each:
// about 36 holes), so that an ACK sent late, after many arrivals, still
// reports every block, and a lost ACK costs no block for good: with four,
// the blocks between the latest and the lowest went unreported and RACK
// declared them lost.
const (
	SackBlockSize = 8
	MaxSackBlocks = 64
)

// Offsets of the PCI fields (all big-endian).
const (
	flagsOff  = 0  // uint16: Flags
	resvOff   = 2  // uint16: reserved, zero
	windowOff = 4  // uint32: right window edge (first seqno the sender may not send)
	seqnoOff  = 8  // uint32: sequence number
	acknoOff  = 12 // uint32: cumulative ack (next seqno expected)
)

// Flags is the FRCT flags field: which fields of the PCI are meaningful and
// what the packet asks of the peer.
type Flags uint16

// The FRCT flags.
const (
	// FlagData marks a packet carrying an SDU at Seqno.
	FlagData Flags = 1 << iota
	// FlagAck marks Ackno as valid: every seqno before it was received.
	FlagAck
	// FlagFC marks Window as valid: the peer may send seqnos before it.
	FlagFC
	// FlagRdvs asks the peer for a window update (rendezvous): the sender
	// has data but its window is closed.
	FlagRdvs
	// FlagFin marks the end of the sender's data: it occupies Seqno like a
	// DATA packet but carries no SDU.
	FlagFin
	// FlagKeepalive marks a packet sent only to show the sender is alive.
	FlagKeepalive
	// FlagSack marks a packet (never DATA) whose header is followed by
	// 1..MaxSackBlocks SACK blocks: seqno ranges received above Ackno.
	FlagSack

	flagsKnown = FlagData | FlagAck | FlagFC | FlagRdvs | FlagFin | FlagKeepalive | FlagSack
)

var flagNames = [...]string{"DATA", "ACK", "FC", "RDVS", "FIN", "KEEPALIVE", "SACK"}

// String returns the flags as names joined by "|", e.g. "DATA|ACK|FC".
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var b strings.Builder
	for i, name := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(name)
		}
	}
	if rest := f &^ flagsKnown; rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x")
		const hex = "0123456789abcdef"
		for s := 12; s >= 0; s -= 4 {
			b.WriteByte(hex[(rest>>s)&0xf])
		}
	}
	return b.String()
}

// PCI is an FRCT packet, header first, parsed in place. Call IsValid before
// any accessor.
type PCI []byte

// IsValid reports whether p is a well-formed FRCT packet: long enough, the
// reserved field zero, only known flags, DATA not combined with FIN,
// KEEPALIVE or SACK, a payload only on DATA packets, and on SACK packets
// 1..MaxSackBlocks whole blocks after the header and nothing else.
func (p PCI) IsValid() bool {
	if len(p) < HeaderSize {
		return false
	}
	if binary.BigEndian.Uint16(p[resvOff:]) != 0 {
		return false
	}
	f := p.Flags()
	if f&^flagsKnown != 0 {
		return false
	}
	if f&FlagData != 0 {
		return f&(FlagFin|FlagKeepalive|FlagSack) == 0
	}
	if f&FlagSack != 0 {
		n := len(p) - HeaderSize
		return n >= SackBlockSize && n <= MaxSackBlocks*SackBlockSize && n%SackBlockSize == 0
	}
	return len(p) == HeaderSize
}

// Flags returns the flags field.
func (p PCI) Flags() Flags { return Flags(binary.BigEndian.Uint16(p[flagsOff:])) }

// Window returns the right window edge: the first seqno the peer may not send.
func (p PCI) Window() uint32 { return binary.BigEndian.Uint32(p[windowOff:]) }

// Seqno returns the sequence number.
func (p PCI) Seqno() uint32 { return binary.BigEndian.Uint32(p[seqnoOff:]) }

// Ackno returns the cumulative acknowledgement: the next seqno expected.
func (p PCI) Ackno() uint32 { return binary.BigEndian.Uint32(p[acknoOff:]) }

// Payload returns the SDU a DATA packet carries (empty for other packets).
func (p PCI) Payload() []byte {
	if p.Flags()&FlagSack != 0 {
		return p[len(p):]
	}
	return p[HeaderSize:]
}

// SackBlocks returns the number of SACK blocks (0 without FlagSack).
func (p PCI) SackBlocks() int {
	if p.Flags()&FlagSack == 0 {
		return 0
	}
	return (len(p) - HeaderSize) / SackBlockSize
}

// SackBlock returns SACK block i (0 <= i < SackBlocks): every seqno in
// [start, end), in serial-number order, was received.
func (p PCI) SackBlock(i int) (start, end uint32) {
	o := HeaderSize + i*SackBlockSize
	return binary.BigEndian.Uint32(p[o:]), binary.BigEndian.Uint32(p[o+4:])
}

// PutSackBlock writes SACK block i into p, which must hold it; the caller
// sets FlagSack and sizes the packet HeaderSize + n*SackBlockSize.
func (p PCI) PutSackBlock(i int, start, end uint32) {
	o := HeaderSize + i*SackBlockSize
	binary.BigEndian.PutUint32(p[o:], start)
	binary.BigEndian.PutUint32(p[o+4:], end)
}

// Encode writes a header with the given fields into p[:HeaderSize].
func (p PCI) Encode(f Flags, window, seqno, ackno uint32) {
	binary.BigEndian.PutUint16(p[flagsOff:], uint16(f))
	binary.BigEndian.PutUint16(p[resvOff:], 0)
	binary.BigEndian.PutUint32(p[windowOff:], window)
	binary.BigEndian.PutUint32(p[seqnoOff:], seqno)
	binary.BigEndian.PutUint32(p[acknoOff:], ackno)
}

// setAck rewrites the ack and window fields (before a retransmission).
func (p PCI) setAck(window, ackno uint32) {
	binary.BigEndian.PutUint32(p[windowOff:], window)
	binary.BigEndian.PutUint32(p[acknoOff:], ackno)
}
