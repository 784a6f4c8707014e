// Package impair is a seeded network impairment stage (loss, duplication,
// reordering, delay and jitter) that wraps a shim's device on its transmit
// side. It stands in for tc netem in tests and serves a shim's [impair]
// configuration; it is not a traffic shaper.
package impair

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// Config is an impairment. The zero value impairs nothing. Percentages are
// of packets written, in [0, 100].
type Config struct {
	Seed         uint64        `toml:"seed"`          // the random sequence; equal seeds give equal decisions
	Loss         float64       `toml:"loss"`          // % of packets dropped
	Duplicate    float64       `toml:"duplicate"`     // % of packets sent twice
	Reorder      float64       `toml:"reorder"`       // % of packets held back by ReorderDelay so that later ones overtake them
	ReorderDelay time.Duration `toml:"reorder_delay"` // how long a reordered packet is held (default 2 ms + Delay + Jitter)
	Delay        time.Duration `toml:"delay"`         // added to every packet
	Jitter       time.Duration `toml:"jitter"`        // uniform in [-Jitter, +Jitter] on top of Delay (never below 0)
	Limit        int           `toml:"limit"`         // packets held at once (default 1024); beyond it they are dropped

	// Runner starts the stage's goroutine (the shim sets its own);
	// required by NewStage.
	Runner layer.Runner `toml:"-" json:"-"`
}

// Enabled reports whether c impairs anything.
func (c Config) Enabled() bool {
	return c.Loss > 0 || c.Duplicate > 0 || c.Reorder > 0 || c.Delay > 0 || c.Jitter > 0
}

// Validate checks the ranges.
func (c Config) Validate() error {
	for _, p := range []struct {
		name string
		v    float64
	}{{"loss", c.Loss}, {"duplicate", c.Duplicate}, {"reorder", c.Reorder}} {
		if !(p.v >= 0 && p.v <= 100) {
			return fmt.Errorf("impair: %s %v%% outside [0, 100]: %w", p.name, p.v, flow.ErrInvalid)
		}
	}
	if c.Delay < 0 || c.Jitter < 0 || c.ReorderDelay < 0 || c.Limit < 0 {
		return fmt.Errorf("impair: negative delay, jitter, reorder_delay or limit: %w", flow.ErrInvalid)
	}
	return nil
}

// Stats counts what a stage did.
type Stats struct {
	Written    uint64 `json:"written"`    // packets handed to the stage
	Dropped    uint64 `json:"dropped"`    // lost on purpose
	Duplicated uint64 `json:"duplicated"` // sent twice
	Reordered  uint64 `json:"reordered"`  // held back
	Delayed    uint64 `json:"delayed"`    // sent later than written (includes reordered)
	Overflow   uint64 `json:"overflow"`   // dropped because Limit packets were held
	SendErrors uint64 `json:"send_errors"`
}

// Stage decides each packet's fate from a seeded generator and sends the
// survivors through send, at once or later from its own goroutine. D is
// the destination type (a UDP address; struct{} for frames).
type Stage[D any] struct {
	cfg  Config
	send func(b []byte, d D) error

	written, dropped, duplicated, reordered, delayed, overflow, sendErrs atomic.Uint64

	mu     sync.Mutex
	rng    *rand.Rand
	held   heldHeap[D]
	free   [][]byte
	seq    uint64
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

type heldPkt[D any] struct {
	at  time.Time
	seq uint64
	b   []byte
	d   D
}

type heldHeap[D any] []heldPkt[D]

func (h heldHeap[D]) Len() int { return len(h) }
func (h heldHeap[D]) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h heldHeap[D]) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *heldHeap[D]) Push(x any)   { *h = append(*h, x.(heldPkt[D])) }
func (h *heldHeap[D]) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// NewStage returns a stage sending through send; its goroutine runs until
// Close. send must be safe for concurrent use.
func NewStage[D any](cfg Config, send func(b []byte, d D) error) (*Stage[D], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("impair: stage")
	}
	if cfg.Limit == 0 {
		cfg.Limit = 1024
	}
	if cfg.ReorderDelay == 0 {
		cfg.ReorderDelay = 2*time.Millisecond + cfg.Delay + cfg.Jitter
	}
	s := &Stage[D]{
		cfg:  cfg,
		send: send,
		rng:  rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	cfg.Runner.Go(s.run)
	return s, nil
}

// verdict is the fate the stage chose for one written packet.
type verdict struct {
	Drop   bool
	Copies [2]time.Duration // delay of each copy sent
	N      int              // copies sent: 1, or 2 if duplicated
}

// decide draws the fate of the next packet. Called with mu held; the
// number of draws per packet is fixed so that decisions depend only on the
// seed and the packet's position in the sequence.
func (s *Stage[D]) decide() verdict {
	c := &s.cfg
	var v verdict
	loss, dup := s.rng.Float64()*100, s.rng.Float64()*100
	v.Drop = loss < c.Loss
	v.N = 1
	if dup < c.Duplicate {
		v.N = 2
	}
	for i := range v.Copies {
		d := c.Delay
		j, r := s.rng.Float64(), s.rng.Float64()*100
		if c.Jitter > 0 {
			d += time.Duration((2*j - 1) * float64(c.Jitter))
		}
		if r < c.Reorder {
			d += c.ReorderDelay
		}
		v.Copies[i] = max(d, 0)
	}
	return v
}

// Write impairs one packet for d. b is copied if it is held; it is never
// retained after Write returns. A dropped packet is not an error.
func (s *Stage[D]) Write(b []byte, d D) error {
	s.written.Add(1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("impair: write after close: %w", flow.ErrClosed)
	}
	v := s.decide()
	if v.Drop {
		s.mu.Unlock()
		s.dropped.Add(1)
		return nil
	}
	if v.N == 2 {
		s.duplicated.Add(1)
	}
	now := time.Now()
	var sendNow int
	for i := range v.N {
		delay := v.Copies[i]
		if delay > s.cfg.Delay+s.cfg.Jitter {
			s.reordered.Add(1)
		}
		if delay == 0 {
			sendNow++
			continue
		}
		if len(s.held) >= s.cfg.Limit {
			s.overflow.Add(1)
			continue
		}
		var buf []byte
		if n := len(s.free); n > 0 {
			buf, s.free = s.free[n-1], s.free[:n-1]
		}
		s.seq++
		heap.Push(&s.held, heldPkt[D]{at: now.Add(delay), seq: s.seq, b: append(buf[:0], b...), d: d})
		s.delayed.Add(1)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	var err error
	for range sendNow {
		if e := s.send(b, d); e != nil {
			s.sendErrs.Add(1)
			err = e
		}
	}
	return err
}

func (s *Stage[D]) run() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		now := time.Now()
		var due []heldPkt[D]
		for len(s.held) > 0 && !s.held[0].at.After(now) {
			due = append(due, heap.Pop(&s.held).(heldPkt[D]))
		}
		next := time.Hour
		if len(s.held) > 0 {
			next = s.held[0].at.Sub(now)
		}
		s.mu.Unlock()
		for _, p := range due {
			if err := s.send(p.b, p.d); err != nil {
				s.sendErrs.Add(1)
			}
		}
		if len(due) > 0 {
			s.mu.Lock()
			for _, p := range due {
				if len(s.free) < s.cfg.Limit {
					s.free = append(s.free, p.b[:0])
				}
			}
			s.mu.Unlock()
		}
		t.Reset(next)
		select {
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Close drops what is held and stops the stage's goroutine. Idempotent.
func (s *Stage[D]) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.held = nil
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
}

// Stats returns the counters.
func (s *Stage[D]) Stats() Stats {
	return Stats{
		Written: s.written.Load(), Dropped: s.dropped.Load(),
		Duplicated: s.duplicated.Load(), Reordered: s.reordered.Load(),
		Delayed: s.delayed.Load(), Overflow: s.overflow.Load(),
		SendErrors: s.sendErrs.Load(),
	}
}
