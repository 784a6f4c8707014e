//go:build linux

package probe

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// With $OURO_UDP_RUNS=1 the plain-UDP baseline moves runs the way the
// UDP shim does (its sendmmsg_linux.go and batch_linux.go): a flood's
// batch of equal-sized datagrams leaves in one sendmsg(2) with UDP GSO,
// and the server's socket takes coalesced runs (UDP GRO) and cuts them
// up. That pair is the fastest two programs can be on loopback.

// maxGSO bounds the bytes of one GSO send (a UDP datagram's payload limit).
const maxGSO = 65000

// GSOControl returns a UDP_SEGMENT control message for segments of seg
// bytes, in b if it has room: with it, one sendmsg(2) of a buffer sends
// it as datagrams of seg bytes each (UDP GSO; the last may be shorter).
func GSOControl(b []byte, seg int) []byte {
	if len(b) < syscall.CmsgSpace(2) {
		b = make([]byte, syscall.CmsgSpace(2))
	}
	b = b[:syscall.CmsgSpace(2)]
	cm := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	cm.SetLen(syscall.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&b[syscall.CmsgLen(0)])) = uint16(seg)
	return b
}

// gsoSize returns the segment size if bs can go as one GSO send: more
// than one, all of one size but the last, which may be shorter; else 0.
// It is the UDP shim's rule (layer/shim/udp/sendmmsg_linux.go), kept
// here rather than shared: the baseline depends on nothing of ouro's
// layers.
func gsoSize(bs [][]byte) int {
	if len(bs) < 2 {
		return 0
	}
	l := len(bs[0])
	if l == 0 || len(bs)*l > maxGSO || len(bs[len(bs)-1]) > l {
		return 0
	}
	for _, b := range bs[1 : len(bs)-1] {
		if len(b) != l {
			return 0
		}
	}
	return l
}

// writeGSO sends bs as one GSO run on p's connected socket, copied into
// one buffer. It reports false if the run cannot go so (sizes, or a
// kernel without GSO: then never again); the caller sends it otherwise.
func (p *UDPPort) writeGSO(bs [][]byte) (bool, error) {
	seg := gsoSize(bs)
	if seg == 0 || p.noGSO {
		return false, nil
	}
	run := p.gsoBuf[:0]
	for _, b := range bs {
		run = append(run, b...)
	}
	p.gsoBuf = run
	p.gsoOOB = GSOControl(p.gsoOOB, seg)
	if _, _, err := p.c.WriteMsgUDP(run, p.gsoOOB, nil); err != nil {
		if errno := unwrapErrno(err); errno == unix.EIO || errno == unix.EINVAL || errno == unix.ENOPROTOOPT {
			p.noGSO = true // no GSO here (or not for this device)
			return false, nil
		}
		return true, err
	}
	return true, nil
}

// unwrapErrno returns the errno under err, or 0.
func unwrapErrno(err error) syscall.Errno {
	var e syscall.Errno
	for err != nil {
		if x, ok := err.(syscall.Errno); ok {
			return x
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return e
		}
		err = u.Unwrap()
	}
	return e
}

// enableGRO asks pc's socket to coalesce runs (UDP_GRO); it reports
// whether it does.
func enableGRO(pc *net.UDPConn) bool {
	rc, err := pc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	rc.Control(func(fd uintptr) {
		ok = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	return ok
}

// groOOB is the room a received message needs for UDP_GRO's segment size.
var groOOB = syscall.CmsgSpace(4)

// groSegment returns the segment size of a coalesced run from its
// control message, or 0 (a lone datagram).
func groSegment(oob []byte) int {
	if len(oob) < syscall.CmsgLen(4) {
		return 0
	}
	cm := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if cm.Level != unix.SOL_UDP || cm.Type != unix.UDP_GRO || int(cm.Len) < syscall.CmsgLen(4) {
		return 0
	}
	return int(*(*int32)(unsafe.Pointer(&oob[syscall.CmsgLen(0)])))
}
