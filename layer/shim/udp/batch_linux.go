//go:build linux && (amd64 || arm || arm64)

package udp

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many datagrams one recvmmsg(2) may return.
const batchSize = 32

// UDP GRO (UDP_GRO): the kernel hands the socket a run of datagrams from
// one sender, equal in size but the last, as one buffer with the size of
// each (a control message), instead of one at a time. On loopback a
// sender's GSO batch (sendmmsg_linux.go) then arrives whole: without the
// option the kernel cuts it back into datagrams for the socket. Its
// buffers must hold a whole run (maxGRO bytes: a shorter one is cut, and
// what is cut is lost), so a reader with GRO takes groBatch of them per
// call, 1 MiB in all.
const (
	maxGRO   = 65535
	groBatch = 16
)

// mmsghdr is struct mmsghdr (recvmmsg(2)); Go's alignment pads it as C
// does on 32- and 64-bit targets.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// batchReader receives up to batchSize datagrams per system call from a
// *net.UDPConn, through the Go poller (Close unblocks it). Everything is
// preallocated: a read allocates nothing.
type batchReader struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrInet6 // large enough for sockaddr_in too
	bufs  [][]byte
	zones map[uint32]string // IPv6 scope id -> interface name
	fn    func(fd uintptr) bool
	n     int
	err   error

	// used is how many headers the last recvmmsg filled (the kernel
	// writes back only those): the next call resets just these.
	used int
	// gro: the socket coalesces (UDP_GRO); each header has a control
	// buffer in ctl for the segment size.
	gro bool
	ctl []byte
	// single: the socket looked idle, so the next datagram is taken with
	// one recvfrom(2) (see recv).
	single  bool
	waited  bool   // this read already found the socket empty once
	namelen uint32 // recvfrom's socklen_t
}

// newBatchReader returns a batch reader for d if it is a *net.UDPConn on
// a kernel with recvmmsg, else nil (the caller reads one at a time).
func newBatchReader(d Device, size int) *batchReader {
	c, ok := d.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	count := batchSize
	gro := false
	rc.Control(func(fd uintptr) {
		gro = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	if gro {
		size, count = maxGRO, groBatch
	}
	r := &batchReader{
		rc:    rc,
		hdrs:  make([]mmsghdr, count),
		iovs:  make([]syscall.Iovec, count),
		names: make([]syscall.RawSockaddrInet6, count),
		bufs:  make([][]byte, count),
		zones: make(map[uint32]string),
		gro:   gro,
	}
	if gro {
		r.ctl = make([]byte, count*ctlSpace)
	}
	for i := range r.hdrs {
		r.bufs[i] = make([]byte, size)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(size)
		r.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		r.hdrs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
		r.hdrs[i].hdr.Iov = &r.iovs[i]
		r.hdrs[i].hdr.Iovlen = 1
		if gro {
			r.hdrs[i].hdr.Control = &r.ctl[i*ctlSpace]
			r.hdrs[i].hdr.SetControllen(ctlSpace)
		}
	}
	r.fn = r.recv
	r.single = true
	return r
}

// read blocks until at least one datagram arrived and returns how many;
// datagram i is bufs[i][:length(i)] from addr(i).
func (r *batchReader) read() (int, error) {
	r.waited = false
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	return r.n, r.err
}

// recv takes what the socket holds without blocking. A recvmmsg that
// returns one datagram has also tried (and failed) to receive a second,
// which on an idle flow, one datagram per wake-up, is a third of the
// receive path's system-call work for nothing. So the reader adapts: after
// a batch of one it takes the next datagram with a single recvfrom, and
// goes back to batches as soon as a datagram was already waiting when it
// looked (a burst: the socket is not draining between reads).
func (r *batchReader) recv(fd uintptr) bool {
	if r.single {
		return r.recvOne(fd)
	}
	for i := range r.used {
		r.reset(i)
	}
	r.used = 0
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.n, r.err, r.used = int(n), nil, int(n)
			r.single = n == 1
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			r.waited = true
			return false // wait for the poller
		default:
			r.n, r.err = 0, e
		}
		return true
	}
}

// recvOne receives one datagram into bufs[0] with recvfrom(2), or with
// recvmsg(2) where the socket coalesces (its control message).
func (r *batchReader) recvOne(fd uintptr) bool {
	for {
		var n uintptr
		var e syscall.Errno
		if r.gro {
			r.reset(0)
			n, _, e = syscall.Syscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0].hdr)), syscall.MSG_DONTWAIT)
		} else {
			r.namelen = syscall.SizeofSockaddrInet6
			n, _, e = syscall.Syscall6(syscall.SYS_RECVFROM, fd,
				uintptr(unsafe.Pointer(&r.bufs[0][0])), uintptr(len(r.bufs[0])), syscall.MSG_DONTWAIT,
				uintptr(unsafe.Pointer(&r.names[0])), uintptr(unsafe.Pointer(&r.namelen)))
		}
		switch e {
		case 0:
			r.hdrs[0].n = uint32(n)
			r.n, r.err = 1, nil
			r.used = 1
			r.single = r.waited // waiting now: stay single; queued already: batch
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			r.waited = true
			return false
		default:
			r.n, r.err = 0, e
		}
		return true
	}
}

// ctlSpace is a header's control buffer: room for UDP_GRO's segment size
// (an int).
var ctlSpace = syscall.CmsgSpace(4)

// reset readies header i for the next receive (the kernel wrote the
// sizes of its name and control message back).
func (r *batchReader) reset(i int) {
	r.hdrs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
	if r.gro {
		r.hdrs[i].hdr.SetControllen(ctlSpace)
		r.hdrs[i].hdr.Flags = 0
	}
}

// segment returns the size of each datagram coalesced into datagram i
// (the last may be shorter), or 0: one datagram, or a socket without
// GRO. A datagram cut short (its run did not fit) is -1: drop it.
func (r *batchReader) segment(i int) int {
	if !r.gro {
		return 0
	}
	h := &r.hdrs[i].hdr
	if h.Flags&syscall.MSG_TRUNC != 0 {
		return -1
	}
	if int(h.Controllen) < syscall.CmsgLen(4) {
		return 0
	}
	c := r.ctl[i*ctlSpace : (i+1)*ctlSpace]
	cm := (*syscall.Cmsghdr)(unsafe.Pointer(&c[0]))
	if cm.Level != unix.SOL_UDP || cm.Type != unix.UDP_GRO || int(cm.Len) < syscall.CmsgLen(4) {
		return 0
	}
	return int(*(*int32)(unsafe.Pointer(&c[syscall.CmsgLen(0)])))
}

// length returns the size of datagram i.
func (r *batchReader) length(i int) int { return int(r.hdrs[i].n) }

// addr returns the source of datagram i (invalid if the family is unknown).
func (r *batchReader) addr(i int) netip.AddrPort {
	sa := &r.names[i]
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case syscall.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(r.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// zone names an IPv6 scope as the net package does (the interface name),
// caching it so that link-local peers cost a lookup once.
func (r *batchReader) zone(id uint32) string {
	if z, ok := r.zones[id]; ok {
		return z
	}
	z := strconv.FormatUint(uint64(id), 10)
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		z = ifi.Name
	}
	if len(r.zones) < 64 {
		r.zones[id] = z
	}
	return z
}
