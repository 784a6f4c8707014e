//go:build linux

// Package sockbuf sizes a socket's kernel buffers past net.core.rmem_max
// and wmem_max where the process may (SO_RCVBUFFORCE, SO_SNDBUFFORCE:
// root or CAP_NET_ADMIN), and within them otherwise: the shims whose
// receivers cannot slow their senders down (udp, diode) need room for a
// burst before they read.
package sockbuf

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// SetRecv sets the receive buffer of rc's socket to n bytes.
func SetRecv(rc syscall.RawConn, n int) error { return set(rc, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, n) }

// SetSend sets the send buffer of rc's socket to n bytes.
func SetSend(rc syscall.RawConn, n int) error { return set(rc, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, n) }

// set sets a buffer size with the forcing option, or the plain one when
// the process may not force.
func set(rc syscall.RawConn, force, plain, n int) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, n); serr == nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, n)
	})
	if err != nil {
		return err
	}
	return serr
}
