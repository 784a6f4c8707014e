package serial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// TCPDevice is a serial link over a TCP stream, for QEMU chardev sockets:
// a board's UART wired with
//
//	-chardev socket,id=l,host=127.0.0.1,port=P,server=on,wait=off,nodelay=on -serial chardev:l
//
// is reached with DialTCP("127.0.0.1:P"); with server=off (QEMU dialling,
// reconnect=1) the shim listens with ListenTCP. The bytes are the UART's,
// unframed: the shim's own framing resynchronises after a reconnection.
//
// The dialling side reconnects, with backoff, whenever the stream ends; the
// listening side serves one connection at a time and accepts the next when
// it ends. Bytes written while nothing is connected are lost (Write fails),
// as on a UART with the cable unplugged.
type TCPDevice struct {
	addr   string
	ln     net.Listener // listen role
	ctx    context.Context
	cancel context.CancelFunc

	rc net.Conn // the reader's connection; only Read touches it

	wmu sync.Mutex // guards wc
	wc  net.Conn

	closeOnce sync.Once
}

var _ Device = (*TCPDevice)(nil)

// errNotConnected is Write's error while no stream is connected.
var errNotConnected = errors.New("serial: tcp: not connected")

// Reconnection backoff of the dialling side.
const (
	dialBackoffMin = 20 * time.Millisecond
	dialBackoffMax = time.Second
)

// DialTCP returns a device that connects to addr (host:port) and
// reconnects whenever the stream ends, until Close. It returns at once:
// the first connection is made by Read.
func DialTCP(addr string) (*TCPDevice, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("serial: tcp: %w", err)
	}
	d := &TCPDevice{addr: addr}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d, nil
}

// ListenTCP listens on addr (host:port; port 0 picks one, see Addr); the
// connection is accepted by Read.
func ListenTCP(addr string) (*TCPDevice, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serial: tcp: %w", err)
	}
	d := &TCPDevice{addr: addr, ln: ln}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d, nil
}

// Addr returns the listening address (listen role) or nil.
func (d *TCPDevice) Addr() net.Addr {
	if d.ln == nil {
		return nil
	}
	return d.ln.Addr()
}

// connect makes the next connection: accepted (listen) or dialled with
// backoff (dial). It fails only when the device is closed.
func (d *TCPDevice) connect() (net.Conn, error) {
	if d.ln != nil {
		c, err := d.ln.Accept()
		if err != nil {
			return nil, net.ErrClosed
		}
		return c, nil
	}
	var dl net.Dialer
	backoff := dialBackoffMin
	for {
		c, err := dl.DialContext(d.ctx, "tcp", d.addr)
		if err == nil {
			return c, nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-d.ctx.Done():
			t.Stop()
			return nil, net.ErrClosed
		case <-t.C:
		}
		backoff = min(2*backoff, dialBackoffMax)
	}
}

// Read implements Device: it (re)connects as needed and returns the
// stream's bytes; it fails only after Close.
func (d *TCPDevice) Read(p []byte) (int, error) {
	for {
		if d.rc == nil {
			c, err := d.connect()
			if err != nil {
				return 0, err
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetNoDelay(true)
			}
			d.wmu.Lock()
			if d.ctx.Err() != nil {
				d.wmu.Unlock()
				c.Close()
				return 0, net.ErrClosed
			}
			d.rc, d.wc = c, c
			d.wmu.Unlock()
		}
		n, err := d.rc.Read(p)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			d.wmu.Lock()
			if d.wc == d.rc {
				d.wc = nil
			}
			d.wmu.Unlock()
			d.rc.Close()
			d.rc = nil
			if d.ctx.Err() != nil {
				return 0, net.ErrClosed
			}
		}
	}
}

// Write implements Device. Without a connection it fails (the bytes are
// lost).
func (d *TCPDevice) Write(p []byte) (int, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.wc == nil {
		if d.ctx.Err() != nil {
			return 0, net.ErrClosed
		}
		return 0, errNotConnected
	}
	return d.wc.Write(p)
}

// Connected reports whether a stream is connected now.
func (d *TCPDevice) Connected() bool {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	return d.wc != nil
}

// Close implements Device: it ends the connection, the listener and any
// reconnection, and unblocks Read.
func (d *TCPDevice) Close() error {
	d.closeOnce.Do(func() {
		d.wmu.Lock()
		d.cancel()
		if d.wc != nil {
			d.wc.Close()
		}
		d.wmu.Unlock()
		if d.ln != nil {
			d.ln.Close()
		}
	})
	return nil
}
