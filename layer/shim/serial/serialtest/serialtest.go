// Package serialtest provides byte-stream fakes for testing the serial
// shim: an in-memory cable with UART-like speed and a FIFO that overruns,
// a baud-rate limiter for any device, and a seeded corrupter. It is for
// tests and lab setups only.
package serialtest

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// BitsPerByte is what one byte costs on an 8N1 UART: start, 8 data, stop.
const BitsPerByte = 10

// Pacer makes writes take as long as they would on a UART of a given baud
// rate: Wait sleeps until n more bytes would have left the transmitter.
// The zero value (or Baud 0) does not pace. Safe for concurrent use.
type Pacer struct {
	Baud int // bits per second; 0: unlimited

	mu   sync.Mutex
	next time.Time // when the transmitter is free
}

// chunk returns how many bytes the pacer releases per step: about 2 ms
// worth, so that a long write is delivered progressively.
func (p *Pacer) chunk() int { return max(1, p.Baud/BitsPerByte/500) }

// idleGap is how late a write may come and still continue the previous
// one without a gap, so that timer overshoot does not slow the line.
const idleGap = 5 * time.Millisecond

// Wait blocks until n bytes written now would have been sent.
func (p *Pacer) Wait(n int) {
	if p.Baud <= 0 || n <= 0 {
		return
	}
	d := time.Duration(n) * BitsPerByte * time.Second / time.Duration(p.Baud)
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now.Add(-idleGap)) { // the line was idle: start now
		p.next = now
	} // else back to back: sleep overshoot is not charged twice
	p.next = p.next.Add(d)
	until := p.next
	p.mu.Unlock()
	time.Sleep(time.Until(until))
}

// Throttle limits the writes of a device to a baud rate.
type Throttle struct {
	io.ReadWriteCloser
	pace Pacer
}

// NewThrottle wraps d so that its writes go at most baud bits per second
// (8N1: baud/10 bytes per second). Reads pass through.
func NewThrottle(d io.ReadWriteCloser, baud int) *Throttle {
	return &Throttle{ReadWriteCloser: d, pace: Pacer{Baud: baud}}
}

// Write paces p in chunks of about 2 ms and writes each chunk.
func (t *Throttle) Write(p []byte) (int, error) {
	if t.pace.Baud <= 0 {
		return t.ReadWriteCloser.Write(p)
	}
	done := 0
	for done < len(p) {
		n := min(len(p)-done, t.pace.chunk())
		t.pace.Wait(n)
		k, err := t.ReadWriteCloser.Write(p[done : done+n])
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// SetReadDeadline passes through when the device has it.
func (t *Throttle) SetReadDeadline(tm time.Time) error {
	if d, ok := t.ReadWriteCloser.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(tm)
	}
	return errors.ErrUnsupported
}

// CableConfig configures a Cable. The zero value is a fast cable with a
// 1 MiB receive buffer at each end.
type CableConfig struct {
	Baud      int           // bits per second of each direction (8N1); 0: unlimited
	FIFO      int           // bytes each end buffers before it overruns (drops what arrives); 0: 1 MiB
	ReadChunk int           // at most this many bytes per Read; 0: as many as fit
	ReadDelay time.Duration // each Read sleeps this long first: a slow consumer
}

// Cable is an in-memory serial cable between two Ends.
type Cable struct {
	cut atomic.Bool
	a   *End
	b   *End
}

// End is one end of a Cable: an io.ReadWriteCloser with SetReadDeadline.
// Read and Write are safe for concurrent use with each other and Close.
type End struct {
	cfg   CableConfig
	cable *Cable
	peer  *End
	pace  Pacer

	mu       sync.Mutex
	buf      []byte // received, not yet read
	closed   bool
	deadline time.Time
	wake     chan struct{} // buffered 1: data, close or a new deadline
	timer    *time.Timer   // the reader's deadline timer, reused

	overruns atomic.Uint64 // bytes lost because buf was full
	lost     atomic.Uint64 // bytes lost on the cut cable
}

// NewCable returns a cable and its two ends.
func NewCable(cfg CableConfig) (*Cable, *End, *End) {
	if cfg.FIFO <= 0 {
		cfg.FIFO = 1 << 20
	}
	c := &Cable{}
	mk := func() *End {
		return &End{cfg: cfg, cable: c, pace: Pacer{Baud: cfg.Baud}, wake: make(chan struct{}, 1)}
	}
	c.a, c.b = mk(), mk()
	c.a.peer, c.b.peer = c.b, c.a
	return c, c.a, c.b
}

// Cut cuts (true) or mends (false) the cable: bytes written while it is cut
// are lost.
func (c *Cable) Cut(cut bool) { c.cut.Store(cut) }

// Overruns returns the bytes this end lost because its buffer was full.
func (e *End) Overruns() uint64 { return e.overruns.Load() }

// Lost returns the bytes this end wrote into a cut cable.
func (e *End) Lost() uint64 { return e.lost.Load() }

func (e *End) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Write sends p to the other end at the cable's speed. It fails only when
// this end is closed; bytes the other end cannot hold are lost.
func (e *End) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		e.mu.Lock()
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return done, os.ErrClosed
		}
		n := len(p) - done
		if e.cfg.Baud > 0 {
			n = min(n, e.pace.chunk())
			e.pace.Wait(n)
		}
		e.deliver(p[done : done+n])
		done += n
	}
	return done, nil
}

func (e *End) deliver(p []byte) {
	if e.cable.cut.Load() {
		e.lost.Add(uint64(len(p)))
		return
	}
	r := e.peer
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	room := e.cfg.FIFO - len(r.buf)
	if room < len(p) {
		r.overruns.Add(uint64(len(p) - max(room, 0)))
		p = p[:max(room, 0)]
	}
	r.buf = append(r.buf, p...)
	r.mu.Unlock()
	r.signal()
}

// Read blocks until bytes arrive, the deadline passes (os.ErrDeadlineExceeded)
// or the end is closed (os.ErrClosed). One reader at a time; it allocates
// nothing once its timer exists.
func (e *End) Read(p []byte) (int, error) {
	if e.cfg.ReadDelay > 0 {
		time.Sleep(e.cfg.ReadDelay)
	}
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return 0, os.ErrClosed
		}
		if len(e.buf) > 0 {
			q := p
			if e.cfg.ReadChunk > 0 && len(q) > e.cfg.ReadChunk {
				q = q[:e.cfg.ReadChunk]
			}
			n := copy(q, e.buf)
			e.buf = e.buf[:copy(e.buf, e.buf[n:])]
			e.mu.Unlock()
			return n, nil
		}
		dl := e.deadline
		e.mu.Unlock()
		if dl.IsZero() {
			<-e.wake
			continue
		}
		d := time.Until(dl)
		if d <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		if e.timer == nil {
			e.timer = time.NewTimer(d)
		} else {
			e.timer.Reset(d)
		}
		select {
		case <-e.wake:
		case <-e.timer.C:
		}
		e.timer.Stop()
	}
}

// SetReadDeadline sets the deadline of Read (zero: none).
func (e *End) SetReadDeadline(t time.Time) error {
	e.mu.Lock()
	e.deadline = t
	e.mu.Unlock()
	e.signal()
	return nil
}

// Close closes this end; its Read and Write fail from now on. The other
// end stays open (a cable with one side unplugged).
func (e *End) Close() error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.signal()
	return nil
}

// NoiseConfig configures a Noisy device. Probabilities are per byte read,
// in [0, 1].
type NoiseConfig struct {
	Seed    uint64
	Drop    float64 // a byte is lost
	Corrupt float64 // a byte has one random bit flipped
	Garbage float64 // per Read: a burst of up to 64 random bytes comes first
}

// Noisy corrupts what is read from a device, from a seeded generator, so
// that a test run is reproducible for a given byte sequence.
type Noisy struct {
	io.ReadWriteCloser
	cfg NoiseConfig

	mu  sync.Mutex // one reader, but counters may be read concurrently
	rng *rand.Rand

	Dropped, Corrupted, Injected atomic.Uint64
}

// NewNoisy wraps d.
func NewNoisy(d io.ReadWriteCloser, cfg NoiseConfig) *Noisy {
	return &Noisy{ReadWriteCloser: d, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x5e71a1))}
}

// Read reads from the device and impairs what it got.
func (n *Noisy) Read(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cfg.Garbage > 0 && n.rng.Float64() < n.cfg.Garbage {
		k := min(len(p), 1+n.rng.IntN(64))
		for i := range k {
			p[i] = byte(n.rng.Uint32())
		}
		n.Injected.Add(uint64(k))
		return k, nil
	}
	k, err := n.ReadWriteCloser.Read(p)
	out := 0
	for i := range k {
		c := p[i]
		if n.cfg.Drop > 0 && n.rng.Float64() < n.cfg.Drop {
			n.Dropped.Add(1)
			continue
		}
		if n.cfg.Corrupt > 0 && n.rng.Float64() < n.cfg.Corrupt {
			c ^= 1 << n.rng.IntN(8)
			n.Corrupted.Add(1)
		}
		p[out] = c
		out++
	}
	return out, err
}

// SetReadDeadline passes through when the device has it.
func (n *Noisy) SetReadDeadline(tm time.Time) error {
	if d, ok := n.ReadWriteCloser.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(tm)
	}
	return errors.ErrUnsupported
}
