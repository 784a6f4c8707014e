//go:build linux && (amd64 || arm || arm64)

package eth

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr (recvmmsg(2), sendmmsg(2)); Go's alignment
// pads it as C does on 32- and 64-bit targets.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// packetBatch moves frames through a PacketDevice's socket with
// recvmmsg(2) and sendmmsg(2), through the Go poller (Close unblocks a
// read; a full queue waits as a blocking write would). Its headers are
// allocated once: a call allocates nothing. One goroutine at a time.
type packetBatch struct {
	rc   syscall.RawConn
	hdrs []mmsghdr
	iovs []syscall.Iovec
	cnt  int // frames of this call
	off  int // how many of them were sent, or received
	err  error
	used int // headers the last read filled (their flags to reset)
	rfn  func(fd uintptr) bool
	wfn  func(fd uintptr) bool
}

// NewFrameBatch implements BatchDevice: a batch of up to n frames per
// system call, or nil if the socket cannot give one.
func (d *PacketDevice) NewFrameBatch(n int) FrameBatch {
	rc, err := d.f.SyscallConn()
	if err != nil || n <= 0 {
		return nil
	}
	b := &packetBatch{rc: rc, hdrs: make([]mmsghdr, n), iovs: make([]syscall.Iovec, n)}
	for i := range b.hdrs {
		// The socket is bound to its interface and EtherType: no
		// address either way.
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.Iovlen = 1
	}
	b.rfn = func(fd uintptr) bool { return b.mmsg(fd, syscall.SYS_RECVMMSG, false) }
	b.wfn = func(fd uintptr) bool { return b.mmsg(fd, unix.SYS_SENDMMSG, true) }
	return b
}

// ReadFrames implements FrameBatch.
func (b *packetBatch) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	for i := range b.used {
		b.hdrs[i].hdr.Flags = 0
	}
	b.cnt = min(len(bufs), len(lens), len(b.hdrs))
	for i, p := range bufs[:b.cnt] {
		b.iovs[i].Base = &p[0]
		b.iovs[i].SetLen(len(p))
	}
	b.off, b.err = 0, nil
	if err := b.rc.Read(b.rfn); err != nil {
		return 0, err
	}
	if b.err != nil {
		return 0, b.err
	}
	b.used = b.off
	for i := range b.off {
		lens[i] = int(b.hdrs[i].n)
		if b.hdrs[i].hdr.Flags&syscall.MSG_TRUNC != 0 {
			lens[i] = -1 // longer than its buffer: cut, so dropped
		}
	}
	return b.off, nil
}

// WriteFrames implements FrameBatch.
func (b *packetBatch) WriteFrames(frames [][]byte) (int, error) {
	sent := 0
	for sent < len(frames) {
		b.cnt = min(len(frames)-sent, len(b.hdrs))
		for i, p := range frames[sent : sent+b.cnt] {
			b.iovs[i].Base = &p[0]
			b.iovs[i].SetLen(len(p))
		}
		b.off, b.err = 0, nil
		if err := b.rc.Write(b.wfn); err != nil {
			return sent, err
		}
		sent += b.off
		if b.err != nil {
			return sent, b.err
		}
	}
	return sent, nil
}

// mmsg is the poller callback of a read (nr SYS_RECVMMSG, once: what
// is there) or a write (SYS_SENDMMSG, all: until every frame of the call
// went) on the headers from b.off to b.cnt; false waits for the socket.
func (b *packetBatch) mmsg(fd, nr uintptr, all bool) bool {
	for b.off < b.cnt {
		n, _, e := syscall.Syscall6(nr, fd,
			uintptr(unsafe.Pointer(&b.hdrs[b.off])), uintptr(b.cnt-b.off), syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.off += int(n)
			if !all {
				return true
			}
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			b.err = e
			return true
		}
	}
	return true
}
