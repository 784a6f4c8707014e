package ecm

import (
	"encoding/binary"
	"sync/atomic"
)

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

// Notifier is the gadget's sequence on the interrupt IN endpoint: once
// per Init, NetworkConnection (up), then ConnectionSpeedChange at the
// bus's rate, then nothing. Reset starts the sequence over, so that a
// gadget reset without a re-enumeration tells the host again that the
// link is up. The zero value is ready. Next is for one goroutine (the
// endpoint's); Reset may be called from any.
type Notifier struct {
	sent atomic.Int32 // notifications of the sequence sent
}

// Next returns the next notification for the Communications interface
// iface (highSpeed: the bus runs at 480 Mbit/s, else 12), or nil when the
// sequence is done.
func (n *Notifier) Next(iface uint8, highSpeed bool) []byte {
	for {
		sent := n.sent.Load()
		if sent >= 2 {
			return nil
		}
		if !n.sent.CompareAndSwap(sent, sent+1) {
			continue // a Reset came in between
		}
		if sent == 0 {
			return NetworkConnection(iface, true)
		}
		rate := uint32(480_000_000)
		if !highSpeed {
			rate = 12_000_000
		}
		return ConnectionSpeedChange(iface, rate, rate)
	}
}

// Reset starts the sequence over: the next Next is NetworkConnection (up).
func (n *Notifier) Reset() { n.sent.Store(0) }
