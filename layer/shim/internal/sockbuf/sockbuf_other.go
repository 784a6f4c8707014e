//go:build !linux

// Package sockbuf sizes a socket's kernel buffers (Linux only; elsewhere
// the callers' net.Conn SetReadBuffer/SetWriteBuffer apply).
package sockbuf

import "syscall"

// SetRecv does nothing here.
func SetRecv(syscall.RawConn, int) error { return nil }

// SetSend does nothing here.
func SetSend(syscall.RawConn, int) error { return nil }
