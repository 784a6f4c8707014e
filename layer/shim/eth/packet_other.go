//go:build !linux

package eth

import (
	"fmt"
	"net"

	"github.com/ouronet/ouro/flow"
)

// PacketDevice is an AF_PACKET socket; it exists on Linux only.
type PacketDevice struct{}

// OpenPacket fails: AF_PACKET sockets are Linux's.
func OpenPacket(ifname string) (*PacketDevice, error) {
	return nil, fmt.Errorf("eth: AF_PACKET on %q: not on this OS: %w", ifname, flow.ErrInvalid)
}

// ReadFrame implements Device.
func (d *PacketDevice) ReadFrame(b []byte) (int, error) { return 0, net.ErrClosed }

// WriteFrame implements Device.
func (d *PacketDevice) WriteFrame(b []byte) error { return net.ErrClosed }

// MAC implements Device.
func (d *PacketDevice) MAC() net.HardwareAddr { return nil }

// MTU implements Device.
func (d *PacketDevice) MTU() int { return 0 }

// Close implements Device.
func (d *PacketDevice) Close() error { return nil }
