package eth

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
)

// StreamDevice is an Ethernet link over a QEMU socket netdev stream
// (-netdev socket,connect=... or listen=...; also -netdev stream): each
// frame is a 4-byte big-endian length followed by the frame. A hosted
// node and a QEMU VM (or two hosted nodes) share a link this way without
// TAP devices.
//
// In the listen role the device serves one connection at a time and
// accepts the next when it ends (a VM rebooting reconnects). In the
// connect role it dials again when the stream ends, with back-off from
// 10 ms to 1 s, until it reaches its peer or is closed (a restarted VM or
// hosted node is joined again). Either way frames written while nobody is
// connected are dropped with an error. TCP_NODELAY is on (Go's default
// for TCP), so a small frame is never held back behind a delayed ACK on
// our side.
type StreamDevice struct {
	mac  net.HardwareAddr
	ln   net.Listener // listen role
	addr string       // connect role: where to dial again

	// Reader side: only ReadFrame touches these.
	rc  net.Conn
	br  *bufio.Reader
	hdr []byte

	wmu  sync.Mutex // guards wc and wbuf
	wc   net.Conn
	wbuf []byte

	closeOnce sync.Once
	closed    chan struct{}
}

var _ Device = (*StreamDevice)(nil)

// errNoPeer is WriteFrame's error while a listening device has no peer.
var errNoPeer = errors.New("eth: stream: no peer connected")

// maxStreamFrame bounds a length prefix; a larger one means the stream is
// not QEMU framing and the connection is dropped.
const maxStreamFrame = 65535

// RandomMAC returns a random locally administered unicast address.
func RandomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, MACLen)
	rand.Read(m)
	m[0] = m[0]&^1 | 2
	return m
}

func newStream(mac net.HardwareAddr) (*StreamDevice, error) {
	if mac == nil {
		mac = RandomMAC()
	}
	if m, err := MACFrom(mac); err != nil || m.IsMulticast() {
		return nil, fmt.Errorf("eth: stream: address %v is not a unicast MAC: %w", mac, flow.ErrInvalid)
	}
	return &StreamDevice{
		mac:    mac,
		hdr:    make([]byte, 4),
		wbuf:   make([]byte, 4+maxStreamFrame),
		closed: make(chan struct{}),
	}, nil
}

// DialQEMU connects to a QEMU "-netdev socket,listen=addr" (or a
// listening StreamDevice), dialling again with the connect role's
// back-off until it answers or ctx ends (the VM may start after the
// node). mac nil: a random local address.
func DialQEMU(ctx context.Context, addr string, mac net.HardwareAddr) (*StreamDevice, error) {
	d, err := newStream(mac)
	if err != nil {
		return nil, err
	}
	var dl net.Dialer
	var c net.Conn
	for delay := redialMin; ; delay = min(2*delay, redialMax) {
		if c, err = dl.DialContext(ctx, "tcp", addr); err == nil {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("eth: stream: %w", err)
		case <-t.C:
		}
	}
	d.addr = addr
	if !d.setConn(c) {
		return nil, fmt.Errorf("eth: stream: %w", net.ErrClosed)
	}
	return d, nil
}

// Redial bounds of the connect role.
const (
	redialMin = 10 * time.Millisecond
	redialMax = time.Second
)

// redial dials the connect role's peer again until it answers (true) or
// the device is closed (false).
func (d *StreamDevice) redial() bool {
	for delay := redialMin; ; delay = min(2*delay, redialMax) {
		c, err := net.DialTimeout("tcp", d.addr, redialMax)
		if err == nil {
			return d.setConn(c)
		}
		t := time.NewTimer(delay)
		select {
		case <-d.closed:
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// ListenQEMU listens on addr for a QEMU "-netdev socket,connect=addr" (or
// a dialling StreamDevice); it returns at once, the connection is accepted
// by ReadFrame. mac nil: a random local address.
func ListenQEMU(addr string, mac net.HardwareAddr) (*StreamDevice, error) {
	d, err := newStream(mac)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("eth: stream: %w", err)
	}
	d.ln = ln
	return d, nil
}

// Addr returns the listening address (listen role) or nil.
func (d *StreamDevice) Addr() net.Addr {
	if d.ln == nil {
		return nil
	}
	return d.ln.Addr()
}

// setConn makes c the connection; false (and c closed) if the device was
// closed meanwhile, so that Close never misses a connection.
func (d *StreamDevice) setConn(c net.Conn) bool {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.isClosed() {
		c.Close()
		return false
	}
	d.wc = c
	d.rc = c
	if d.br == nil {
		d.br = bufio.NewReaderSize(c, 64<<10)
	} else {
		d.br.Reset(c)
	}
	return true
}

func (d *StreamDevice) dropConn() {
	d.wmu.Lock()
	if d.wc == d.rc {
		d.wc = nil
	}
	d.wmu.Unlock()
	d.rc.Close()
	d.rc = nil
}

// ReadFrame implements Device.
func (d *StreamDevice) ReadFrame(b []byte) (int, error) {
	for {
		if d.rc == nil {
			if d.ln == nil {
				if d.addr == "" || !d.redial() {
					return 0, d.readErr(io.EOF)
				}
				continue
			}
			c, err := d.ln.Accept()
			if err != nil {
				return 0, err
			}
			if !d.setConn(c) {
				return 0, net.ErrClosed
			}
		}
		if _, err := io.ReadFull(d.br, d.hdr); err != nil {
			d.dropConn()
			if d.reconnects() {
				continue // wait for the next peer, or dial it again
			}
			return 0, d.readErr(err)
		}
		n := int(binary.BigEndian.Uint32(d.hdr))
		if n > maxStreamFrame {
			d.dropConn()
			if d.reconnects() {
				continue
			}
			return 0, fmt.Errorf("eth: stream: frame length %d: not QEMU framing", n)
		}
		if n > len(b) {
			if _, err := d.br.Discard(n); err != nil {
				d.dropConn()
				return 0, d.readErr(err)
			}
			return 0, fmt.Errorf("eth: stream: frame of %d bytes dropped: buffer of %d", n, len(b))
		}
		if _, err := io.ReadFull(d.br, b[:n]); err != nil {
			d.dropConn()
			if d.reconnects() {
				continue
			}
			return 0, d.readErr(err)
		}
		return n, nil
	}
}

// reconnects reports whether the device waits for or dials its next peer
// after a connection ended.
func (d *StreamDevice) reconnects() bool {
	return (d.ln != nil || d.addr != "") && !d.isClosed()
}

func (d *StreamDevice) readErr(err error) error {
	if d.isClosed() {
		return net.ErrClosed
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return err
}

func (d *StreamDevice) isClosed() bool {
	select {
	case <-d.closed:
		return true
	default:
		return false
	}
}

// WriteFrame implements Device. Frames are written whole under a lock,
// so concurrent writers never interleave.
func (d *StreamDevice) WriteFrame(b []byte) error {
	if len(b) > maxStreamFrame {
		return fmt.Errorf("eth: stream: frame of %d bytes: %w", len(b), flow.ErrTooBig)
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if d.wc == nil {
		return errNoPeer
	}
	binary.BigEndian.PutUint32(d.wbuf, uint32(len(b)))
	n := copy(d.wbuf[4:], b)
	_, err := d.wc.Write(d.wbuf[:4+n])
	return err
}

// MAC implements Device.
func (d *StreamDevice) MAC() net.HardwareAddr { return d.mac }

// MTU implements Device: the Ethernet default (QEMU NICs' too).
func (d *StreamDevice) MTU() int { return DefaultMTU }

// Close implements Device.
func (d *StreamDevice) Close() error {
	d.closeOnce.Do(func() {
		d.wmu.Lock()
		close(d.closed)
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
