package eth

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/ouronet/ouro/flow"
)

// packet(7) socket options (linux/if_packet.h).
const (
	solPacket            = 263 // SOL_PACKET
	packetIgnoreOutgoing = 23  // PACKET_IGNORE_OUTGOING, Linux 4.20+
)

// PacketDevice is a hosted NIC: an AF_PACKET raw socket bound to one
// interface and the shim's EtherType (packet(7)). It needs root or
// CAP_NET_RAW. Reads and writes go through the Go poller, so Close
// unblocks a blocked ReadFrame.
type PacketDevice struct {
	f   *os.File
	mac net.HardwareAddr
	mtu int
}

var _ Device = (*PacketDevice)(nil)

// htons converts to network byte order, as sockaddr_ll and socket(2)'s
// protocol want it, on any host byte order.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// packetRecvBuf is the AF_PACKET socket's receive buffer.
const packetRecvBuf = 4 << 20

// OpenPacket opens an AF_PACKET socket on the interface ifname for frames
// of EtherType. The socket belongs to the calling thread's network
// namespace.
func OpenPacket(ifname string) (*PacketDevice, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("eth: interface %q: %v: %w", ifname, err, flow.ErrInvalid)
	}
	if len(ifi.HardwareAddr) != MACLen {
		return nil, fmt.Errorf("eth: interface %q has no Ethernet address: %w", ifname, flow.ErrInvalid)
	}
	proto := htons(EtherType)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("eth: AF_PACKET socket on %q: %w", ifname, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("eth: bind AF_PACKET socket to %q: %w", ifname, err)
	}
	// Our own transmissions are not echoed to us (best effort: older
	// kernels lack the option and the shim filters its own frames anyway).
	_ = syscall.SetsockoptInt(fd, solPacket, packetIgnoreOutgoing, 1)
	// Room for a burst: the default receive buffer (net.core.rmem_default,
	// about 90 full frames) overflowed under a TCP stream through IP
	// bridges (TestIPNet), losing ~14% of the frames silently. Forced past
	// rmem_max where the process may, else within it (best effort).
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, packetRecvBuf) != nil {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, packetRecvBuf)
	}
	return &PacketDevice{
		f:   os.NewFile(uintptr(fd), "packet:"+ifname),
		mac: ifi.HardwareAddr,
		mtu: ifi.MTU,
	}, nil
}

// ReadFrame implements Device.
func (d *PacketDevice) ReadFrame(b []byte) (int, error) { return d.f.Read(b) }

// WriteFrame implements Device.
func (d *PacketDevice) WriteFrame(b []byte) error {
	_, err := d.f.Write(b)
	return err
}

// MAC implements Device.
func (d *PacketDevice) MAC() net.HardwareAddr { return d.mac }

// MTU implements Device.
func (d *PacketDevice) MTU() int { return d.mtu }

// Close implements Device.
func (d *PacketDevice) Close() error { return d.f.Close() }
