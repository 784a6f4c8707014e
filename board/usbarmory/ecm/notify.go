package ecm

import "encoding/binary"

// Notifications on the interrupt IN endpoint (ECM 1.2, 6.3 Table 11). Each
// is an 8-byte header shaped like a setup packet (CDC 1.2, 6.3 Table 21:
// bmRequestType 0xA1, class, interface recipient, device to host) and its
// data.
const (
	NotifyNetworkConnection     = 0x00
	NotifyConnectionSpeedChange = 0x2a

	notifyRequestType = 0xa1
	notifyHeaderLen   = 8
)

// NetworkConnection is the NetworkConnection notification (ECM 1.2,
// 6.3.1): wValue 1 when the link is up, 0 when down; wIndex the
// Communications interface; no data.
func NetworkConnection(iface uint8, up bool) []byte {
	b := make([]byte, notifyHeaderLen)
	b[0] = notifyRequestType
	b[1] = NotifyNetworkConnection
	if up {
		b[2] = 1
	}
	binary.LittleEndian.PutUint16(b[4:], uint16(iface))
	return b
}

// ConnectionSpeedChange is the ConnectionSpeedChange notification (ECM
// 1.2, 6.3.3; data as CDC 1.2, 6.3.3 Table 30): wLength 8, then the
// downstream and upstream bit rates in bits per second.
func ConnectionSpeedChange(iface uint8, down, up uint32) []byte {
	b := make([]byte, notifyHeaderLen+8)
	b[0] = notifyRequestType
	b[1] = NotifyConnectionSpeedChange
	binary.LittleEndian.PutUint16(b[4:], uint16(iface))
	binary.LittleEndian.PutUint16(b[6:], 8)
	binary.LittleEndian.PutUint32(b[8:], down)
	binary.LittleEndian.PutUint32(b[12:], up)
	return b
}
