package ipnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// vnetHdrLen is the virtio-net header in front of every packet on a TUN
// with IFF_VNET_HDR (struct virtio_net_hdr, without num_buffers).
const vnetHdrLen = 10

// tunBatch is how many packets a TUN read or write moves at most: a
// super-packet of 64 KB split at an MTU of 576 is 114 of them.
const tunBatch = 128

// TUN is a Linux TUN interface without packet information. Where the
// kernel takes offloads (IFF_VNET_HDR and TUNSETOFFLOAD: TCP segmentation,
// checksums, UDP segmentation on Linux 6.2+), one read takes a TCP or
// UDP super-packet of up to 64 KB, which ReadBatch returns as packets of
// at most the MTU, and WriteBatch coalesces consecutive segments of a
// TCP (or UDP) flow into super-packets again (GRO), so the hosts' stacks
// handle one packet where the bridge carried dozens. Both are
// golang.zx2c4.com/wireguard/tun's. ReadSuper and WriteSuper instead
// move a TCP super-packet whole (the Bridge carries it as one SDU where
// its flow can: super.go). Read and Write move one packet. Close
// unblocks a Read.
type TUN struct {
	Name    string // the interface's name as the kernel gave it
	Offload bool   // the kernel took IFF_VNET_HDR and TCP offloads

	dev wgtun.Device
	mtu int

	rmu           sync.Mutex // Read's pending packets from one batch
	rbufs         [][]byte
	rsizes        []int
	rnext, rcount int

	wmu  sync.Mutex // Write's buffer with room for the vnet header
	wbuf []byte

	// ReadSuper's: the offload header and the caller's buffer, read
	// with one readv through the device's poller (readv, made once: a
	// method value allocates).
	smu    sync.Mutex
	rc     syscall.RawConn
	iov    [2]unix.Iovec
	hdr    [vnetHdrLen]byte
	rn     int
	rerr   error
	readvf func(fd uintptr) bool
}

// OpenTUN creates (or attaches to) the TUN interface name, sets its MTU
// and brings it up, with offloads where the kernel takes them (else
// without). It needs CAP_NET_ADMIN. Addresses are the caller's to add
// (ip addr add ... dev NAME).
func OpenTUN(name string, mtu int) (*TUN, error) {
	t, err := openTUN(name, mtu, true)
	if err != nil && !errors.Is(err, errNoPerm) {
		t, err = openTUN(name, mtu, false)
	}
	return t, err
}

var errNoPerm = errors.New("needs CAP_NET_ADMIN")

// openTUN opens name with or without IFF_VNET_HDR.
func openTUN(name string, mtu int, offload bool) (*TUN, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("ipnet: /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ipnet: tun %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if offload {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w: %w", errNoPerm, err)
		}
		return nil, fmt.Errorf("ipnet: create tun %q: %w", name, err)
	}
	// Without monitoring goroutines: the bridge's are the only ones.
	dev, kname, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ipnet: tun %q (offloads %v): %w", name, offload, err)
	}
	if offload {
		// TCP offloads only: the kernel would hand UDP super-packets
		// (UDP_L4) to ReadSuper too, which carries TCP's alone; it
		// sends UDP datagrams one by one instead, as to a device
		// without UDP segmentation. (It is what the kernel hands this
		// side; the kernel still takes GRO's UDP super-packets from
		// WriteBatch.)
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
			dev.Close()
			return nil, fmt.Errorf("ipnet: tun %q: offloads: %w", name, err)
		}
	}
	t := &TUN{Name: kname, Offload: offload, dev: dev, wbuf: make([]byte, vnetHdrLen+MaxPacket)}
	if t.rc, err = dev.File().SyscallConn(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("ipnet: tun %q: %w", name, err)
	}
	t.readvf = t.readv
	if t.mtu, err = setLink(t.Name, mtu); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Close closes the interface (it goes away) and unblocks a Read.
func (t *TUN) Close() error { return t.dev.Close() }

// MTU is the interface's MTU: the largest packet ReadBatch returns
// beyond its first buffer.
func (t *TUN) MTU() int { return t.mtu }

// BatchSize is the most packets ReadBatch returns and WriteBatch takes
// at once.
func (t *TUN) BatchSize() int { return tunBatch }

// Headroom is the room WriteBatch needs before each packet (the vnet
// header), 0 without offloads.
func (t *TUN) Headroom() int {
	if t.Offload {
		return vnetHdrLen
	}
	return 0
}

// ReadBatch reads one packet, or one super-packet split into packets,
// into bufs (each at least the MTU long; as many as a super-packet has
// segments: BatchSize), sets sizes and returns how many.
func (t *TUN) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n, err := t.dev.Read(bufs, sizes, 0)
	if err != nil {
		return n, fmt.Errorf("ipnet: tun %s: %w", t.Name, err)
	}
	return n, nil
}

// WriteBatch writes the packets bufs[i][Headroom():], coalescing those
// of one TCP or UDP flow where it can: each buffer needs Headroom()
// bytes before its packet and, to take others' segments, capacity for
// a super-packet (up to 64 KB). It reports the packets it could not
// write with an error.
func (t *TUN) WriteBatch(bufs [][]byte) (int, error) {
	n, err := t.dev.Write(bufs, t.Headroom())
	if err != nil {
		return n, fmt.Errorf("ipnet: tun %s: %w", t.Name, err)
	}
	return len(bufs), nil
}

// Read reads one packet (from the last super-packet's segments first).
func (t *TUN) Read(p []byte) (int, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	if t.rnext == t.rcount {
		if t.rbufs == nil {
			t.rbufs, t.rsizes = make([][]byte, tunBatch), make([]int, tunBatch)
			for i := range t.rbufs {
				t.rbufs[i] = make([]byte, MaxPacket)
			}
		}
		n, err := t.ReadBatch(t.rbufs, t.rsizes)
		if err != nil {
			return 0, err
		}
		t.rnext, t.rcount = 0, n
	}
	i := t.rnext
	t.rnext++
	return copy(p, t.rbufs[i][:t.rsizes[i]]), nil
}

// Write writes one packet.
func (t *TUN) Write(p []byte) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	h := t.Headroom()
	if len(p) > len(t.wbuf)-h {
		return 0, fmt.Errorf("ipnet: tun %s: packet of %d bytes: %w", t.Name, len(p), os.ErrInvalid)
	}
	b := t.wbuf[:h+copy(t.wbuf[h:], p)]
	if _, err := t.WriteBatch([][]byte{b}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// errSuper is a super-packet from the kernel the Bridge cannot carry
// (TCP behind an IPv6 routing header, a type it did not ask for): it is
// dropped, counted as a device error.
var errSuper = errors.New("super-packet of a shape the bridge does not carry")

// ReadSuper reads one packet into p (MaxPacket long) and returns its
// length and, where it is a TCP super-packet, its segment size (0: a
// plain packet, its checksums complete). The offload header is read
// apart (readv), so the packet lands in p as it is. Only a TUN with
// offloads reads super-packets. It allocates nothing.
func (t *TUN) ReadSuper(p []byte) (n, mss int, err error) {
	if !t.Offload {
		n, err = t.dev.File().Read(p)
		if err != nil {
			return 0, 0, t.readErr(err)
		}
		return n, 0, nil
	}
	if len(p) == 0 {
		return 0, 0, fmt.Errorf("ipnet: tun %s: read into no buffer: %w", t.Name, os.ErrInvalid)
	}
	t.smu.Lock()
	defer t.smu.Unlock()
	t.iov[0].Base, t.iov[1].Base = &t.hdr[0], &p[0]
	t.iov[0].SetLen(vnetHdrLen)
	t.iov[1].SetLen(len(p))
	err = t.rc.Read(t.readvf)
	t.iov[1].Base = nil // p is the caller's again
	if err == nil {
		err = t.rerr
	}
	if err != nil {
		return 0, 0, t.readErr(err)
	}
	if t.rn < vnetHdrLen {
		return 0, 0, fmt.Errorf("ipnet: tun %s: read of %d bytes: %w", t.Name, t.rn, errSuper)
	}
	b := t.hdr[:]
	n = t.rn - vnetHdrLen
	pkt := p[:n]
	flags, gso := b[0], b[1]&^unix.VIRTIO_NET_HDR_GSO_ECN
	gsoSize := int(binary.NativeEndian.Uint16(b[4:]))
	start, off := int(binary.NativeEndian.Uint16(b[6:])), int(binary.NativeEndian.Uint16(b[8:]))
	switch gso {
	case unix.VIRTIO_NET_HDR_GSO_NONE:
		if flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
			// Checksum-partial: the sum from start, with what the
			// checksum field holds (the pseudo-header's), goes there.
			at := start + off
			if at+2 > len(pkt) || start > at {
				return 0, 0, fmt.Errorf("ipnet: tun %s: checksum at %d+%d of %d bytes: %w", t.Name, start, off, len(pkt), errSuper)
			}
			init := binary.BigEndian.Uint16(pkt[at:])
			pkt[at], pkt[at+1] = 0, 0
			binary.BigEndian.PutUint16(pkt[at:], ^checksum.Checksum(pkt[start:], init))
		}
		return len(pkt), 0, nil
	case unix.VIRTIO_NET_HDR_GSO_TCPV4, unix.VIRTIO_NET_HDR_GSO_TCPV6:
		s, ok := parseSuper(pkt, gsoSize)
		if !ok || s.iph != start || s.v4 != (gso == unix.VIRTIO_NET_HDR_GSO_TCPV4) {
			return 0, 0, fmt.Errorf("ipnet: tun %s: TCP super-packet of %d bytes: %w", t.Name, len(pkt), errSuper)
		}
		return len(pkt), gsoSize, nil
	}
	return 0, 0, fmt.Errorf("ipnet: tun %s: GSO type %d: %w", t.Name, gso, errSuper)
}

// readv is ReadSuper's read on the device's descriptor: false (the
// poller waits) while there is nothing to read.
func (t *TUN) readv(fd uintptr) bool {
	n, _, e := unix.Syscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&t.iov[0])), uintptr(len(t.iov)))
	if e == unix.EAGAIN {
		return false
	}
	t.rn, t.rerr = int(n), nil
	if e != 0 {
		t.rn, t.rerr = 0, e
	}
	return true
}

// readErr wraps a read's error (os.ErrClosed once the device is closed).
func (t *TUN) readErr(err error) error {
	if errors.Is(err, unix.EBADFD) {
		err = os.ErrClosed
	}
	return fmt.Errorf("ipnet: tun %s: %w", t.Name, err)
}

// WriteSuper writes the TCP super-packet b[Headroom():], of segments of
// mss bytes, whole: the kernel takes it as the segments it stands for,
// checksum-partial. It sets the packet's length fields and checksums.
// Only a TUN with offloads writes super-packets.
func (t *TUN) WriteSuper(b []byte, mss int) error {
	h := t.Headroom()
	if h == 0 || len(b) < h {
		return fmt.Errorf("ipnet: tun %s: super-packet without offloads: %w", t.Name, os.ErrInvalid)
	}
	pkt := b[h:]
	s, ok := parseSuper(pkt, mss)
	if !ok {
		return fmt.Errorf("ipnet: tun %s: super-packet of %d bytes: %w", t.Name, len(pkt), errSuper)
	}
	fixHeaders(pkt, s)
	var hdr [vnetHdrLen]byte
	hdr[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	if s.payloadLen > mss {
		hdr[1] = unix.VIRTIO_NET_HDR_GSO_TCPV6
		if s.v4 {
			hdr[1] = unix.VIRTIO_NET_HDR_GSO_TCPV4
		}
		if pkt[s.iph+13]&tcpCWR != 0 {
			hdr[1] |= unix.VIRTIO_NET_HDR_GSO_ECN
		}
		binary.NativeEndian.PutUint16(hdr[2:], uint16(s.hdrs()))
		binary.NativeEndian.PutUint16(hdr[4:], uint16(mss))
	}
	binary.NativeEndian.PutUint16(hdr[6:], uint16(s.iph))
	binary.NativeEndian.PutUint16(hdr[8:], 16)
	copy(b, hdr[:])
	if _, err := t.dev.File().Write(b); err != nil {
		return fmt.Errorf("ipnet: tun %s: %w", t.Name, err)
	}
	return nil
}

// setLink sets the interface's MTU (mtu > 0) and brings it up; it
// returns the MTU.
func setLink(name string, mtu int) (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("ipnet: %s: %w", name, err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if mtu > 0 {
		ifr.SetUint32(uint32(mtu))
		if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
			return 0, fmt.Errorf("ipnet: %s: mtu %d: %w", name, mtu, err)
		}
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, fmt.Errorf("ipnet: %s: mtu: %w", name, err)
	}
	mtu = int(ifr.Uint32())
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return 0, fmt.Errorf("ipnet: %s: flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return 0, fmt.Errorf("ipnet: %s: up: %w", name, err)
	}
	return mtu, nil
}
