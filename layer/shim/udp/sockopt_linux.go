//go:build linux

package udp

import (
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ouronet/ouro/layer/shim/internal/sockbuf"
)

// SK_MEMINFO_DROPS and the length of the array SO_MEMINFO fills
// (linux/sock_diag.h; not in x/sys/unix).
const (
	skMeminfoDrops = 8
	skMeminfoVars  = 9
)

// socket is the kernel socket under the shim's device, for its options
// and counters; nil when the device is not a socket of this kernel (a
// netstack socket, a test double).
type socket struct{ rc syscall.RawConn }

// tuneSocket sets the receive and send buffers of dev's socket, if it is
// a *net.UDPConn, to what cfg asks (Config.RecvBuffer, SendBuffer) and
// returns the socket, or nil for another device. SO_RCVBUFFORCE (root or
// CAP_NET_ADMIN) may exceed net.core.rmem_max; without the privilege the
// plain option applies, capped by the sysctl. What the kernel granted is
// returned (it reports twice the size asked: its bookkeeping).
func tuneSocket(dev Device, cfg Config) (*socket, bufSizes, error) {
	c, ok := dev.(*net.UDPConn)
	if !ok {
		return nil, bufSizes{}, nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, bufSizes{}, err
	}
	s := &socket{rc: rc}
	if n := bufSize(cfg.RecvBuffer); n > 0 {
		if err := sockbuf.SetRecv(rc, n); err != nil {
			return nil, bufSizes{}, fmt.Errorf("receive buffer %d: %w", n, err)
		}
	}
	if n := cfg.SendBuffer; n > 0 { // 0 or negative: the kernel's
		if err := sockbuf.SetSend(rc, n); err != nil {
			return nil, bufSizes{}, fmt.Errorf("send buffer %d: %w", n, err)
		}
	}
	var got bufSizes
	got.Recv, _ = s.getInt(unix.SO_RCVBUF)
	got.Send, _ = s.getInt(unix.SO_SNDBUF)
	return s, got, nil
}

func (s *socket) getInt(opt int) (int, error) {
	var v int
	var gerr error
	err := s.rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) })
	if err != nil {
		return 0, err
	}
	return v, gerr
}

// drops returns how many datagrams the kernel dropped at the socket
// (sk_drops: its receive buffer was full, mostly), from SO_MEMINFO, the
// counter SO_RXQ_OVFL reports per datagram; ok is false when the kernel
// cannot tell. A nil socket has none.
func (s *socket) drops() (n uint64, ok bool) {
	if s == nil {
		return 0, false
	}
	var mem [16]uint32
	var gerr error
	err := s.rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(mem))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			gerr = e
		} else if l < skMeminfoVars*4 {
			gerr = unix.EINVAL
		}
	})
	if err != nil || gerr != nil {
		return 0, false
	}
	return uint64(mem[skMeminfoDrops]), true
}
