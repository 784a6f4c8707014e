package ipnet

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// tooBig returns the ICMP message that tells pkt's sender its packet was
// larger than mtu (RFC 1191's "fragmentation needed" for IPv4 with DF
// set, RFC 8201's "packet too big" for IPv6), addressed from pkt's
// destination to its source, or nil where none is due: an IPv4 packet
// the sender lets be fragmented, an ICMP error, a malformed packet.
// The host's stack lowers its path MTU for that destination and sends
// again (TCP at once).
func tooBig(pkt []byte, mtu int) []byte {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		return tooBig4(pkt, mtu)
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		return tooBig6(pkt, mtu)
	}
	return nil
}

func tooBig4(pkt []byte, mtu int) []byte {
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || len(pkt) < ihl || pkt[6]&0x40 == 0 { // no DF: the sender lets it be fragmented
		return nil
	}
	if pkt[9] == 1 && len(pkt) > ihl && !icmp4Query(pkt[ihl]) {
		return nil // never an error about an error
	}
	quote := pkt[:min(len(pkt), 576-28)]
	out := make([]byte, 28+len(quote))
	out[0] = 0x45
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	out[8] = 64 // TTL
	out[9] = 1  // ICMP
	copy(out[12:16], pkt[16:20])
	copy(out[16:20], pkt[12:16])
	binary.BigEndian.PutUint16(out[10:], ^checksum.Checksum(out[:20], 0))
	icmp := out[20:]
	icmp[0], icmp[1] = 3, 4 // destination unreachable: fragmentation needed
	binary.BigEndian.PutUint16(icmp[6:], uint16(mtu))
	copy(icmp[8:], quote)
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
	return out
}

// icmp4Query reports whether an ICMPv4 type is a query (echo, timestamp,
// ...), not an error.
func icmp4Query(t byte) bool { return t == 0 || t == 8 || t == 13 || t == 14 }

func tooBig6(pkt []byte, mtu int) []byte {
	if pkt[6] == 58 && len(pkt) > 40 && pkt[40] < 128 {
		return nil // an ICMPv6 error (types below 128)
	}
	quote := pkt[:min(len(pkt), 1280-48)]
	out := make([]byte, 48+len(quote))
	out[0] = 0x60
	binary.BigEndian.PutUint16(out[4:], uint16(8+len(quote)))
	out[6] = 58 // ICMPv6
	out[7] = 64 // hop limit
	copy(out[8:24], pkt[24:40])
	copy(out[24:40], pkt[8:24])
	icmp := out[40:]
	icmp[0] = 2 // packet too big
	binary.BigEndian.PutUint32(icmp[4:], uint32(mtu))
	copy(icmp[8:], quote)
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, pseudo6(out[8:24], out[24:40], len(icmp))))
	return out
}

// pseudo6 is the checksum of IPv6's pseudo-header for an ICMPv6 message
// of n bytes.
func pseudo6(src, dst []byte, n int) uint16 {
	var b [40]byte
	copy(b[:16], src)
	copy(b[16:32], dst)
	binary.BigEndian.PutUint32(b[32:], uint32(n))
	b[39] = 58
	return checksum.Checksum(b[:], 0)
}
