package ipnet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// TCP super-packets (docs/ipnet.md, "TCP super-packets"; the SDU format
// in docs/wire/ipnet.md).
//
// A host's TCP hands a TUN with offloads one packet of up to 64 KB whose
// payload is many segments of the connection's MSS (TSO), and takes one
// such packet back (GRO). Where the flow carries SDUs that large, the
// Bridge sends the super-packet whole, as one SDU, behind a 4-byte
// prefix that gives the segment size: one SDU through the network where
// there were dozens, and the far host's stack again handles one packet.
// Where the flow carries less, the super-packet is cut into pieces of as
// many whole segments as fit (each again a super-packet, or a plain
// segment with its checksums complete); a peer that never said it takes
// super-packets gets plain segments only.
//
// A super-packet's SDU: superTag, 0, the segment size (2 bytes, big
// endian), then the IP packet: IPv4 without options beyond its IHL and
// not fragmented, or IPv6 (TCP behind at most maxExtHdrs hop-by-hop or
// destination options headers), carrying TCP. Its
// lengths are those of the whole packet; its TCP checksum is left to
// the receiving side (which writes it to its TUN as checksum-partial,
// or completes each segment's).
//
// A hello SDU, helloTag, 0, then 2 bytes (big endian), is what a Bridge
// writes on a flow it accepts: it takes super-packets SDUs of up to that
// many bytes.
const (
	superTag    = 0xf0
	helloTag    = 0xf1
	superHdrLen = 4
	// minMSS is the smallest segment size a super-packet may have
	// (IPv4's minimum MTU, 576, less 40 bytes of headers): a peer's
	// smaller one is refused rather than cut into thousands of pieces.
	minMSS = 536
	// maxPieces is the most pieces the Bridge cuts a super-packet into:
	// one of 64 KB at minMSS is 123.
	maxPieces = 128
)

// maxExtHdrs is the most IPv6 extension headers a super-packet may have
// before its TCP header.
const maxExtHdrs = 4

// tcp flag bits in the header's 14th byte.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// superShape is a TCP packet's layout: the IP version, its header
// length, the TCP header's, and the segment size of the super-packet it
// is.
type superShape struct {
	v4         bool
	iph, tcph  int
	mss        int
	payloadLen int
}

// hdrs is the length of the IP and TCP headers.
func (s superShape) hdrs() int { return s.iph + s.tcph }

// segments is how many segments of mss bytes the payload makes.
func (s superShape) segments() int { return max(1, (s.payloadLen+s.mss-1)/s.mss) }

// parseSuper checks that pkt is a TCP packet whose headers the Bridge can
// cut and whose length fields agree with len(pkt), and returns its shape
// with segments of mss bytes (at least minMSS). ok is false for anything
// else: another protocol, a fragment, IPv6 extension headers other than
// hop-by-hop and destination options (at most maxExtHdrs), lengths that
// disagree. Its iph is the IP header's length, extension headers
// included.
func parseSuper(pkt []byte, mss int) (s superShape, ok bool) {
	if mss < minMSS || len(pkt) < 1 {
		return s, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return s, false
		}
		s.v4, s.iph = true, int(pkt[0]&0x0f)*4
		if s.iph < 20 || pkt[9] != 6 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) ||
			binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 { // MF or a fragment offset
			return s, false
		}
	case 6:
		if len(pkt) < 40 || int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) {
			return s, false
		}
		// TCP, behind at most maxExtHdrs hop-by-hop or destination
		// options headers (which leave the pseudo-header as it is; a
		// routing header would change its destination).
		nh, off := pkt[6], 40
		for range maxExtHdrs {
			if nh != 0 && nh != 60 || len(pkt) < off+8 {
				break
			}
			nh, off = pkt[off], off+(int(pkt[off+1])+1)*8
		}
		if nh != 6 {
			return s, false
		}
		s.iph = off
	default:
		return s, false
	}
	if len(pkt) < s.iph+20 {
		return s, false
	}
	s.tcph = int(pkt[s.iph+12]>>4) * 4
	if s.tcph < 20 || len(pkt) < s.iph+s.tcph {
		return s, false
	}
	s.mss, s.payloadLen = mss, len(pkt)-s.iph-s.tcph
	return s, true
}

// putSuperHdr writes a super-packet's prefix for segments of mss bytes.
func putSuperHdr(b []byte, mss int) {
	b[0], b[1] = superTag, 0
	binary.BigEndian.PutUint16(b[2:], uint16(mss))
}

// superMSS returns the segment size of a super-packet SDU, and false
// where sdu is not one.
func superMSS(sdu []byte) (int, bool) {
	if len(sdu) < superHdrLen || sdu[0] != superTag || sdu[1] != 0 {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(sdu[2:])), true
}

// hello returns the SDU that says a Bridge takes super-packet SDUs of up
// to max bytes.
func hello(max int) []byte {
	return []byte{helloTag, 0, byte(max >> 8), byte(max)}
}

// helloMax returns what a hello SDU says, and false where sdu is not one.
func helloMax(sdu []byte) (int, bool) {
	if len(sdu) != superHdrLen || sdu[0] != helloTag || sdu[1] != 0 {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(sdu[2:])), true
}

// fixHeaders sets pkt's IP length fields for its length, IPv4's header
// checksum, and the TCP checksum field to the pseudo-header's sum
// (checksum-partial: what the kernel completes over the TCP header and
// payload, per segment).
func fixHeaders(pkt []byte, s superShape) {
	n := len(pkt)
	if s.v4 {
		binary.BigEndian.PutUint16(pkt[2:], uint16(n))
		pkt[10], pkt[11] = 0, 0
		binary.BigEndian.PutUint16(pkt[10:], ^checksum.Checksum(pkt[:s.iph], 0))
	} else {
		binary.BigEndian.PutUint16(pkt[4:], uint16(n-40))
	}
	binary.BigEndian.PutUint16(pkt[s.iph+16:], pseudoSum(pkt, s, n-s.iph))
}

// pseudoSum is the checksum of pkt's TCP pseudo-header for a TCP length
// of n bytes.
func pseudoSum(pkt []byte, s superShape, n int) uint16 {
	var addrs []byte
	if s.v4 {
		addrs = pkt[12:20]
	} else {
		addrs = pkt[8:40]
	}
	var tail [4]byte
	binary.BigEndian.PutUint16(tail[0:], 6) // zero, protocol
	binary.BigEndian.PutUint16(tail[2:], uint16(n))
	return checksum.Checksum(tail[:], checksum.Checksum(addrs, 0))
}

// completeTCP sets pkt's TCP checksum over its pseudo-header, TCP header
// and payload.
func completeTCP(pkt []byte, s superShape) {
	tcp := pkt[s.iph:]
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:], ^checksum.Checksum(tcp, pseudoSum(pkt, s, len(tcp))))
}

// cutSuper cuts the super-packet in (of shape s) into pieces of at most
// per segments each, written to out[i][off:] with sizes[i] their
// lengths, and returns how many; out must have room (off + the headers +
// per segments each) for as many pieces as it takes, or cutSuper returns
// 0. A piece of one segment is a plain TCP packet with its checksums
// complete; one of more is a super-packet of mss-byte segments whose TCP
// checksum is left partial (fixHeaders). Each piece's headers are in's,
// its sequence number advanced, IPv4's identification advanced by the
// segments before it, FIN and PSH only on the last piece, CWR only on
// the first: what the kernel's segmentation does per segment.
func cutSuper(in []byte, s superShape, per int, out [][]byte, sizes []int, off int) int {
	per = max(per, 1)
	pieces := (s.segments() + per - 1) / per
	if pieces > len(out) {
		return 0
	}
	h := s.hdrs()
	step := per * s.mss
	seq := binary.BigEndian.Uint32(in[s.iph+4:])
	var id uint16
	if s.v4 {
		id = binary.BigEndian.Uint16(in[4:])
	}
	flags := in[s.iph+13]
	for i := range pieces {
		start := h + i*step
		end := min(start+step, len(in))
		if len(out[i]) < off+h+end-start {
			return 0
		}
		p := out[i][off : off+h+end-start]
		copy(p, in[:h])
		copy(p[h:], in[start:end])
		binary.BigEndian.PutUint32(p[s.iph+4:], seq+uint32(i*step))
		if s.v4 {
			binary.BigEndian.PutUint16(p[4:], id+uint16(i*per))
		}
		f := flags
		if i > 0 {
			f &^= tcpCWR
		}
		if i < pieces-1 {
			f &^= tcpFIN | tcpPSH
		}
		p[s.iph+13] = f
		fixHeaders(p, s)
		if end-start <= s.mss {
			completeTCP(p, s)
		}
		sizes[i] = len(p)
	}
	return pieces
}
