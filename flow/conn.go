package flow

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Network is the net.Addr network of flows.
const Network = "ouro"

// Addr is a flow endpoint as a net.Addr: a name, and the layer the flow
// runs in (empty when unknown). The zero value is the anonymous name.
type Addr struct {
	Name  string
	Layer string
}

var _ net.Addr = Addr{}

// Network returns "ouro".
func (a Addr) Network() string { return Network }

// String returns name@layer, or the name alone when the layer is unknown.
func (a Addr) String() string {
	if a.Layer == "" {
		return a.Name
	}
	return a.Name + "@" + a.Layer
}

// *Flow is a message-preserving net.Conn: each Write is one SDU, each Read
// returns one SDU. For a byte stream, wrap it in a Stream.
var _ net.Conn = (*Flow)(nil)

// LocalAddr returns the local name of the flow and its layer.
func (f *Flow) LocalAddr() net.Addr { return Addr{Name: f.info.Local, Layer: f.info.Layer} }

// RemoteAddr returns the remote name of the flow and its layer.
func (f *Flow) RemoteAddr() net.Addr { return Addr{Name: f.info.Remote, Layer: f.info.Layer} }

// Stream is a byte-stream net.Conn over a Flow, for protocols written
// against TCP (HTTP, TLS, gRPC): Write splits its bytes into SDUs of at
// most the flow's MaxSDU, Read reads across SDU boundaries, and the peer's
// close reads as io.EOF. It needs a reliable, in-order flow (QoS Data):
// over a lossy flow the stream has holes.
//
// Safe for concurrent use: Reads are serialised with each other, and
// Writes with each other, so concurrent Writes do not interleave.
type Stream struct {
	f *Flow

	rmu  sync.Mutex
	rbuf []byte // the rest of the SDU being read
	rsdu []byte // backing store of rbuf, MaxSDU bytes

	wmu sync.Mutex
}

var _ net.Conn = (*Stream)(nil)

// NewStream returns a byte stream over f, which it takes ownership of.
func NewStream(f *Flow) *Stream { return &Stream{f: f} }

// Flow returns the flow under the stream.
func (s *Stream) Flow() *Flow { return s.f }

// Read reads up to len(p) bytes: the rest of the current SDU, or the next
// one. It returns io.EOF once the peer closed and everything was read.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for len(s.rbuf) == 0 {
		var n int
		var err error
		if len(p) >= s.f.maxSDU {
			// Room for a whole SDU: no copy through rbuf.
			n, err = s.f.Read(p)
			if err == nil && n > 0 {
				return n, nil
			}
		} else {
			if s.rsdu == nil {
				s.rsdu = make([]byte, s.f.maxSDU)
			}
			n, err = s.f.Read(s.rsdu)
			s.rbuf = s.rsdu[:n]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, err
		}
	}
	n := copy(p, s.rbuf)
	s.rbuf = s.rbuf[n:]
	return n, nil
}

// Write writes p as SDUs of at most the flow's MaxSDU and returns how
// many bytes were written.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), s.f.maxSDU)]
		n, err := s.f.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
	}
	return written, nil
}

// Close closes the flow (see Flow.Close).
func (s *Stream) Close() error { return s.f.Close() }

// LocalAddr returns the flow's local address.
func (s *Stream) LocalAddr() net.Addr { return s.f.LocalAddr() }

// RemoteAddr returns the flow's remote address.
func (s *Stream) RemoteAddr() net.Addr { return s.f.RemoteAddr() }

// SetDeadline sets the flow's read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error { return s.f.SetDeadline(t) }

// SetReadDeadline sets the flow's read deadline.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.f.SetReadDeadline(t) }

// SetWriteDeadline sets the flow's write deadline.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.f.SetWriteDeadline(t) }

// listener is a net.Listener over a bound name: Client.Listen.
type listener struct {
	c      *Client
	name   string
	ch     chan *Flow
	closed chan struct{}
	once   sync.Once
	err    error
}

var _ net.Listener = (*listener)(nil)

// Accept waits for the next flow to the name and returns it as a Stream.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case f := <-l.ch:
		return NewStream(f), nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: Network, Addr: l.Addr(), Err: net.ErrClosed}
	case <-l.c.acceptDone:
		return nil, &net.OpError{Op: "accept", Net: Network, Addr: l.Addr(), Err: l.c.acceptErr}
	}
}

// Close unbinds the name and refuses flows not yet accepted.
func (l *listener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.err = l.c.unlisten(l)
		for {
			select {
			case f := <-l.ch:
				f.abort()
			default:
				return
			}
		}
	})
	return l.err
}

// Addr returns the listened name.
func (l *listener) Addr() net.Addr { return Addr{Name: l.name} }
