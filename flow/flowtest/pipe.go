// Package flowtest provides in-memory fakes of the flow contracts (Port,
// Broker, ipcp.Upcalls) and a conformance suite for Port implementations; it
// is for tests only and has no place in a node image.
package flowtest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
)

// Pipe returns two connected Ports: what is written to a is read from b and
// vice versa. Each direction holds at most capacity SDUs (capacity < 1 is
// taken as 1); a Write to a full direction blocks until the reader makes room
// or the deadline passes. SDU buffers are recycled, so a pipe in steady state
// allocates nothing per SDU.
//
// The ends honour every line of the flow.Port contract:
//   - Write copies p; len(p) > flow.MaxSDU (PipeSized: its maxSDU) is
//     flow.ErrTooBig.
//   - Read of an SDU longer than p returns len(p) and flow.ErrTruncated and
//     consumes the SDU.
//   - A passed deadline returns an error wrapping flow.ErrTimeout that is also
//     a net.Error with Timeout() true.
//   - Close is idempotent. After Close, the end's own Read and Write return
//     flow.ErrClosed, and so do blocked calls on it. The other end reads what
//     was in flight, then flow.ErrClosed; its Write returns flow.ErrClosed.
func Pipe(capacity int) (a, b flow.Port) { return PipeSized(capacity, flow.MaxSDU) }

// PipeSized is Pipe whose ends take SDUs of up to maxSDU bytes (at least
// flow.MaxSDU): for a flow of a layer that carries larger ones.
func PipeSized(capacity, maxSDU int) (a, b flow.Port) {
	if capacity < 1 {
		capacity = 1
	}
	maxSDU = max(maxSDU, flow.MaxSDU)
	ab := newDirection(capacity, maxSDU)
	ba := newDirection(capacity, maxSDU)
	pa := &pipeEnd{rx: ba, tx: ab, closed: make(chan struct{})}
	pb := &pipeEnd{rx: ab, tx: ba, closed: make(chan struct{})}
	ab.writerClosed, ba.writerClosed = pa.closed, pb.closed
	ab.readerClosed, ba.readerClosed = pb.closed, pa.closed
	return pa, pb
}

// direction is one way of a pipe: a bounded queue of SDUs and a free list
// of buffers to copy them into.
type direction struct {
	q            chan []byte
	free         chan []byte
	max          int           // the longest SDU it takes
	writerClosed chan struct{} // closed when the writing end closed
	readerClosed chan struct{} // closed when the reading end closed
}

func newDirection(capacity, maxSDU int) *direction {
	return &direction{
		q:    make(chan []byte, capacity),
		free: make(chan []byte, capacity+1),
		max:  maxSDU,
	}
}

// pipeEnd is one end of a Pipe.
type pipeEnd struct {
	rx, tx    *direction
	closeOnce sync.Once
	closed    chan struct{} // closed by Close
}

var _ flow.BatchPort = (*pipeEnd)(nil)

// Errors of a pipe end. They wrap the flow sentinels; they are never modified.
var (
	errReadClosed  = fmt.Errorf("flowtest: pipe read: %w", flow.ErrClosed)
	errWriteClosed = fmt.Errorf("flowtest: pipe write: %w", flow.ErrClosed)
	errTooBig      = fmt.Errorf("flowtest: pipe write longer than the pipe takes: %w", flow.ErrTooBig)
	errTruncated   = fmt.Errorf("flowtest: pipe read: %w", flow.ErrTruncated)
	errReadTimeout = &TimeoutError{Op: "flowtest: pipe read"}
	errWriteTimout = &TimeoutError{Op: "flowtest: pipe write"}
)

// TimeoutError is the error of a call whose deadline passed. It wraps
// flow.ErrTimeout and satisfies net.Error with Timeout() true.
type TimeoutError struct {
	Op string // what timed out
}

// Error returns "<op>: timed out".
func (e *TimeoutError) Error() string { return e.Op + ": " + flow.ErrTimeout.Error() }

// Unwrap returns flow.ErrTimeout.
func (e *TimeoutError) Unwrap() error { return flow.ErrTimeout }

// Timeout reports true: the error is a timeout (net.Error).
func (e *TimeoutError) Timeout() bool { return true }

// Temporary reports true (net.Error): a later call may succeed.
func (e *TimeoutError) Temporary() bool { return true }

// Read implements flow.Port.
func (e *pipeEnd) Read(p []byte, deadline time.Time) (int, error) {
	sdu, err := e.recv(deadline)
	if err != nil {
		return 0, err
	}
	return e.deliver(p, sdu)
}

// ReadBatch implements flow.BatchPort: it waits for one SDU as Read does,
// then takes those already queued behind it.
func (e *pipeEnd) ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	sdu, err := e.recv(deadline)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		sizes[n], err = e.deliver(bufs[n], sdu)
		n++
		if err != nil || n == len(bufs) {
			return n, err
		}
		select {
		case sdu = <-e.rx.q:
		default:
			return n, nil
		}
	}
}

// recv waits for the next SDU until the deadline.
func (e *pipeEnd) recv(deadline time.Time) ([]byte, error) {
	select {
	case <-e.closed:
		return nil, errReadClosed
	default:
	}
	// Fast path: an SDU is waiting.
	select {
	case sdu := <-e.rx.q:
		return sdu, nil
	default:
	}
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return nil, errReadTimeout
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case sdu := <-e.rx.q:
		return sdu, nil
	case <-e.closed:
		return nil, errReadClosed
	case <-e.rx.writerClosed:
		// Drain what was in flight before reporting the close.
		select {
		case sdu := <-e.rx.q:
			return sdu, nil
		default:
			return nil, errReadClosed
		}
	case <-timeout:
		return nil, errReadTimeout
	}
}

// deliver copies sdu into p and recycles its buffer.
func (e *pipeEnd) deliver(p, sdu []byte) (int, error) {
	n := copy(p, sdu)
	truncated := n < len(sdu)
	select {
	case e.rx.free <- sdu[:0]:
	default:
	}
	if truncated {
		return n, errTruncated
	}
	return n, nil
}

// Write implements flow.Port.
func (e *pipeEnd) Write(p []byte, deadline time.Time) error {
	if len(p) > e.tx.max {
		return errTooBig
	}
	// Two one-case checks: a select over both would lock both channels
	// on every SDU.
	select {
	case <-e.closed:
		return errWriteClosed
	default:
	}
	select {
	case <-e.tx.readerClosed:
		return errWriteClosed
	default:
	}
	var buf []byte
	select {
	case buf = <-e.tx.free:
	default:
		buf = make([]byte, 0, e.tx.max)
	}
	buf = append(buf[:0], p...)
	select {
	case e.tx.q <- buf:
		return nil
	default:
	}
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return errWriteTimout
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case e.tx.q <- buf:
		return nil
	case <-e.closed:
		return errWriteClosed
	case <-e.tx.readerClosed:
		return errWriteClosed
	case <-timeout:
		return errWriteTimout
	}
}

// WriteBatch implements flow.BatchPort: Write for each SDU in turn.
func (e *pipeEnd) WriteBatch(sdus [][]byte, deadline time.Time) (int, error) {
	for i, p := range sdus {
		if err := e.Write(p, deadline); err != nil {
			return i, err
		}
	}
	return len(sdus), nil
}

// Queued returns how many SDUs written to this end wait for the other
// end to read them, and QueueCap the most that can (the pipe's capacity):
// what the node's ring port (irm.RingPort) says of its transmit ring.
func (e *pipeEnd) Queued() int   { return len(e.tx.q) }
func (e *pipeEnd) QueueCap() int { return cap(e.tx.q) }

// Backlog returns how many SDUs the other end wrote that wait to be read
// here, and BacklogCap the most that can: what the node's ring port (irm.RingPort) says of its
// receive ring.
func (e *pipeEnd) Backlog() int    { return len(e.rx.q) }
func (e *pipeEnd) BacklogCap() int { return cap(e.rx.q) }

// Close implements flow.Port.
func (e *pipeEnd) Close() error {
	e.closeOnce.Do(func() { close(e.closed) })
	return nil
}

// IsTimeout reports whether err is a deadline error by both conventions:
// it wraps flow.ErrTimeout and it is a net.Error with Timeout() true.
func IsTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, flow.ErrTimeout) && errors.As(err, &te) && te.Timeout()
}
