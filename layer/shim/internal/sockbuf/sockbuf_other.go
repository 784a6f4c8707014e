//go:build !linux

// Package sockbuf sizes a socket's kernel buffers (Linux only; elsewhere
// its functions report errors.ErrUnsupported and callers fall back to
// net.UDPConn's SetReadBuffer/SetWriteBuffer).
package sockbuf

import (
	"errors"
	"syscall"
)

// SetRecv is not done here.
func SetRecv(syscall.RawConn, int) error { return errors.ErrUnsupported }

// SetSend is not done here.
func SetSend(syscall.RawConn, int) error { return errors.ErrUnsupported }
