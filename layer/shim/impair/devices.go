package impair

import (
	"net"
	"net/netip"
)

// PacketConn is the udp shim's device interface (udp.Device), restated here
// so that the shim can import this package: a UDP socket.
type PacketConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// FrameDevice is the eth shim's device interface (eth.Device), restated
// here so that the shim can import this package: an Ethernet NIC.
type FrameDevice interface {
	ReadFrame(b []byte) (int, error)
	WriteFrame(b []byte) error
	MAC() net.HardwareAddr
	MTU() int
	Close() error
}

// UDPConn is a PacketConn whose writes go through a Stage.
type UDPConn struct {
	PacketConn
	st *Stage[netip.AddrPort]
}

var _ PacketConn = (*UDPConn)(nil)

// WrapUDP impairs what is written to c. Reads pass through. Closing the
// result closes the stage and c.
func WrapUDP(c PacketConn, cfg Config) (*UDPConn, error) {
	st, err := NewStage(cfg, func(b []byte, a netip.AddrPort) error {
		_, err := c.WriteToUDPAddrPort(b, a)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &UDPConn{PacketConn: c, st: st}, nil
}

// WriteToUDPAddrPort impairs and sends b; a dropped packet reports success.
func (u *UDPConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if err := u.st.Write(b, addr); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Close stops the stage and closes the socket.
func (u *UDPConn) Close() error {
	u.st.Close()
	return u.PacketConn.Close()
}

// Stats returns the stage's counters.
func (u *UDPConn) Stats() Stats { return u.st.Stats() }

// Frames is a FrameDevice whose writes go through a Stage.
type Frames struct {
	FrameDevice
	st *Stage[struct{}]
}

var _ FrameDevice = (*Frames)(nil)

// WrapFrames impairs what is written to d. Reads pass through. Closing the
// result closes the stage and d.
func WrapFrames(d FrameDevice, cfg Config) (*Frames, error) {
	st, err := NewStage(cfg, func(b []byte, _ struct{}) error { return d.WriteFrame(b) })
	if err != nil {
		return nil, err
	}
	return &Frames{FrameDevice: d, st: st}, nil
}

// WriteFrame impairs and sends b; a dropped frame reports success.
func (f *Frames) WriteFrame(b []byte) error { return f.st.Write(b, struct{}{}) }

// Close stops the stage and closes the device.
func (f *Frames) Close() error {
	f.st.Close()
	return f.FrameDevice.Close()
}

// Stats returns the stage's counters.
func (f *Frames) Stats() Stats { return f.st.Stats() }
