//go:build linux && (amd64 || arm || arm64)

package udp

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// batchSender sends one flow's packets with sendmmsg(2), through the Go
// poller (a full socket buffer waits, as a blocking write would). All
// its memory is allocated once: a send allocates nothing.
type batchSender struct {
	w     wire
	rc    syscall.RawConn
	inet6 bool // the socket is AF_INET6 (IPv4 peers go v4-mapped)
	hdrs  []mmsghdr
	iovs  []syscall.Iovec
	sa4   syscall.RawSockaddrInet4
	sa6   syscall.RawSockaddrInet6
	fn    func(fd uintptr) bool
	cnt   int // packets of this call
	off   int // how many of them were sent
	err   error

	// UDP GSO (UDP_SEGMENT): a batch of equal-sized packets (the last
	// may be shorter) goes as one sendmsg(2) that the kernel cuts into
	// datagrams. gso turns false for good at the first sign the kernel
	// lacks it; gsoSends counts the batches sent that way.
	gso      bool
	gsoMsg   syscall.Msghdr
	gsoCmsg  []byte
	gsoFn    func(fd uintptr) bool
	gsoSends uint64
}

// NewBatchSender implements engine.BatchWire: a sendmmsg(2) sender when
// the device is a *net.UDPConn of a known family, else nil (the engine
// sends one packet at a time).
func (w wire) NewBatchSender() engine.BatchSender[netip.AddrPort] {
	c, ok := w.p.dev.(*net.UDPConn)
	if !ok {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	dom := -1
	if err := rc.Control(func(fd uintptr) {
		dom, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil || (dom != unix.AF_INET && dom != unix.AF_INET6) {
		return nil
	}
	s := &batchSender{w: w, rc: rc, inet6: dom == unix.AF_INET6,
		hdrs: make([]mmsghdr, engine.TxBatch), iovs: make([]syscall.Iovec, engine.TxBatch)}
	s.sa4.Family = syscall.AF_INET
	s.sa6.Family = syscall.AF_INET6
	for i := range s.hdrs {
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.Iovlen = 1
	}
	s.fn = s.send
	s.gso = true
	s.gsoCmsg = make([]byte, syscall.CmsgSpace(2))
	cm := (*syscall.Cmsghdr)(unsafe.Pointer(&s.gsoCmsg[0]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	cm.SetLen(syscall.CmsgLen(2))
	s.gsoMsg.Control = &s.gsoCmsg[0]
	s.gsoMsg.SetControllen(len(s.gsoCmsg))
	s.gsoFn = s.sendGSO
	return s
}

// maxGSO bounds the bytes of one GSO send (a UDP datagram's payload limit).
const maxGSO = 65000

// gsoSize returns the segment size if pkts can go as one GSO send: more
// than one, all of one size but the last, which may be shorter; else 0.
func gsoSize(pkts [][]byte) int {
	if len(pkts) < 2 {
		return 0
	}
	l := len(pkts[0])
	if l == 0 || len(pkts)*l > maxGSO || len(pkts[len(pkts)-1]) > l {
		return 0
	}
	for _, p := range pkts[1 : len(pkts)-1] {
		if len(p) != l {
			return 0
		}
	}
	return l
}

// SendBatch implements engine.BatchSender.
func (s *batchSender) SendBatch(pkts [][]byte, dst netip.AddrPort, eid uint32) (int, error) {
	name, namelen, ok := s.sockaddr(dst)
	if !ok {
		// A scoped IPv6 peer, or an IPv6 peer on an IPv4 socket: the
		// plain path names the zone and reports the error.
		for i, p := range pkts {
			if err := s.w.Send(p, dst, eid); err != nil {
				return i, err
			}
		}
		return len(pkts), nil
	}
	sent := 0
	for sent < len(pkts) {
		s.cnt = min(len(pkts)-sent, len(s.hdrs))
		for i, p := range pkts[sent : sent+s.cnt] {
			Header(p).SetEID(eid)
			h := &s.hdrs[i]
			h.hdr.Name, h.hdr.Namelen = name, namelen
			s.iovs[i].Base = &p[0]
			s.iovs[i].SetLen(len(p))
		}
		s.off, s.err = 0, nil
		if size := gsoSize(pkts[sent : sent+s.cnt]); s.gso && size > 0 {
			s.gsoMsg.Name, s.gsoMsg.Namelen = name, namelen
			s.gsoMsg.Iov = &s.iovs[0]
			setLen(&s.gsoMsg.Iovlen, s.cnt)
			*(*uint16)(unsafe.Pointer(&s.gsoCmsg[syscall.CmsgLen(0)])) = uint16(size)
			if err := s.rc.Write(s.gsoFn); err != nil {
				return sent, err
			}
			if s.err == nil {
				s.gsoSends++
				sent += s.cnt
				continue
			}
			if !gsoUnsupported(s.err) {
				return sent, s.err
			}
			s.gso, s.err = false, nil // no GSO here: sendmmsg from now on
		}
		if err := s.rc.Write(s.fn); err != nil {
			return sent, err
		}
		sent += s.off
		if s.err != nil {
			return sent, s.err
		}
	}
	return sent, nil
}

// sockaddr encodes dst for the socket's family into the sender's own
// buffer; false if it cannot (see SendBatch).
func (s *batchSender) sockaddr(dst netip.AddrPort) (*byte, uint32, bool) {
	a, port := dst.Addr(), dst.Port()
	if a.Zone() != "" {
		return nil, 0, false
	}
	if !s.inet6 {
		a = a.Unmap()
		if !a.Is4() {
			return nil, 0, false
		}
		s.sa4.Addr = a.As4()
		p := (*[2]byte)(unsafe.Pointer(&s.sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return (*byte)(unsafe.Pointer(&s.sa4)), syscall.SizeofSockaddrInet4, true
	}
	s.sa6.Addr = a.As16()
	p := (*[2]byte)(unsafe.Pointer(&s.sa6.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return (*byte)(unsafe.Pointer(&s.sa6)), syscall.SizeofSockaddrInet6, true
}

// gsoUnsupported tells the errors of a kernel (or device) without UDP GSO.
func gsoUnsupported(err error) bool {
	switch err {
	case syscall.EINVAL, syscall.EIO, syscall.ENOPROTOOPT, syscall.EOPNOTSUPP:
		return true
	}
	return false
}

// sendGSO is the poller callback of a GSO send: one sendmsg(2) of the
// call's packets with UDP_SEGMENT; false asks the poller to wait.
func (s *batchSender) sendGSO(fd uintptr) bool {
	for {
		_, _, e := syscall.Syscall(syscall.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&s.gsoMsg)), syscall.MSG_DONTWAIT)
		switch e {
		case 0:
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.err = e
			return true
		}
	}
}

// send is the poller callback: sendmmsg(2) what is left of the call's
// packets; false asks the poller to wait for room.
func (s *batchSender) send(fd uintptr) bool {
	for s.off < s.cnt {
		n, _, e := syscall.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&s.hdrs[s.off])), uintptr(s.cnt-s.off), syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			s.off += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			s.err = e
			return true
		}
	}
	return true
}

// setLen sets a length field whose type depends on the architecture
// (Msghdr.Iovlen: uint64 on 64-bit targets, uint32 on arm).
func setLen[T uint32 | uint64](p *T, n int) { *p = T(n) }
