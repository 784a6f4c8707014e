package ecm

import (
	"errors"
	"net"
)

// ErrShortKey is returned by MACs for a key of fewer than 12 bytes.
var ErrShortKey = errors.New("ecm: key shorter than 12 bytes")

// MACs derives the gadget's two station addresses from key (a board's
// unique key, at least 12 bytes): the device's own address from key[0:6]
// and the host's (its iMACAddress) from key[6:12]. Both are made locally
// administered unicast addresses (IEEE 802-2014, 8.2: bit 1 of the first
// octet set, bit 0 clear). Should the two be equal, the host's last bit is
// flipped. The same key always gives the same pair, so the host keeps its
// interface name and configuration across reboots.
func MACs(key []byte) (device, host net.HardwareAddr, err error) {
	if len(key) < 12 {
		return nil, nil, ErrShortKey
	}
	device = local(key[0:6])
	host = local(key[6:12])
	if string(device) == string(host) {
		host[5] ^= 1
	}
	return device, host, nil
}

func local(b []byte) net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	copy(m, b)
	m[0] = m[0]&^0x01 | 0x02
	return m
}
