package dt

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
)

// SchedKind selects a scheduling discipline across QoS cubes.
type SchedKind uint8

// The scheduling disciplines.
const (
	// StrictPriority always serves the lowest-numbered backlogged cube
	// (voice before video before data before best_effort before raw).
	StrictPriority SchedKind = iota
	// WeightedRoundRobin serves backlogged cubes in turn, up to their
	// weight in packets per round, so no cube starves.
	WeightedRoundRobin
)

func (k SchedKind) String() string {
	switch k {
	case StrictPriority:
		return "strict"
	case WeightedRoundRobin:
		return "wrr"
	}
	return fmt.Sprintf("dt.SchedKind(%d)", uint8(k))
}

// DefaultWeights returns the WRR weights per cube (voice, video, data,
// best_effort, raw) used when the configuration gives none: 8, 4, 2, 1, 1.
func DefaultWeights() [flow.NumCubes]int { return [flow.NumCubes]int{8, 4, 2, 1, 1} }

// DefaultQueueLen is the per-cube queue length when the configuration
// gives none.
const DefaultQueueLen = 256

// Discipline picks the cube to serve next. Implementations are called with
// the scheduler's lock held, so need no locking of their own; Pick must
// not allocate.
type Discipline interface {
	// Pick returns the cube to dequeue from. backlogged has bit c set
	// when cube c's queue is non-empty; it is never zero.
	Pick(backlogged uint8) flow.Cube
}

type strict struct{}

func (strict) Pick(b uint8) flow.Cube { return flow.Cube(bits.TrailingZeros8(b)) }

type wrr struct {
	weights [flow.NumCubes]int
	credit  [flow.NumCubes]int
	cur     int
}

func (w *wrr) Pick(b uint8) flow.Cube {
	for {
		for i := range flow.NumCubes {
			c := (w.cur + i) % flow.NumCubes
			if b&(1<<c) != 0 && w.credit[c] > 0 {
				w.credit[c]--
				w.cur = c
				return flow.Cube(c)
			}
		}
		// Every backlogged cube used its share: next round.
		w.credit = w.weights
	}
}

// SchedConfig configures a Scheduler.
type SchedConfig struct {
	Kind     SchedKind
	QueueLen int // each cube's queue length (Cap); 0 means DefaultQueueLen
	// Room: each cube's queue holds Room times QueueLen more for
	// Enqueue, EnqueueBatch and Port.Queue (forwarded packets), not for
	// Port.TryQueue and Port.QueueOwn (the node's own, which wait): room
	// for bursts, which neither lets a standing queue grow longer before
	// it is marked (marks judge it by Cap) nor holds the node's own
	// senders back later. 0: none.
	Room    int
	Weights [flow.NumCubes]int // WRR packets per round per cube; all zero means DefaultWeights
}

// SchedCounters are a scheduler's always-on counters, per cube.
type SchedCounters struct {
	Enqueued [flow.NumCubes]atomic.Uint64
	Dequeued [flow.NumCubes]atomic.Uint64
	Drops    [flow.NumCubes]atomic.Uint64 // Reason QueueFull
}

type ring[T any] struct {
	buf  []T
	head int
	n    int

	// The standing queue (Standing): the least length seen in the
	// current window, which started at start (ns), and in the window
	// before it. A burst that drains within a window leaves no standing
	// queue; a queue that never drains does.
	start     int64
	low, prev int
}

// tail returns the index of the slot after the last item (q not full),
// without a division.
func (q *ring[T]) tail() int {
	i := q.head + q.n
	if i >= len(q.buf) {
		i -= len(q.buf)
	}
	return i
}

// see records the queue's length after an operation, with below
// (Scheduler.SetBelow) in front of it.
func (q *ring[T]) see(below int) { q.low = min(q.low, q.n+below) }

// Scheduler holds one bounded FIFO queue per QoS cube and dequeues across
// them by its discipline; typically one per N-1 port. Items are anything
// (a packet buffer, a buffer index); the scheduler owns an item between
// Enqueue and Dequeue. Enqueue and Dequeue allocate nothing and are safe
// for concurrent use (one mutex); neither blocks. It has nothing running
// (no Start or Stop).
type Scheduler[T any] struct {
	counters SchedCounters
	qlen     int // each cube's queue length (Cap); its ring holds SchedConfig.Room times it more

	mu         sync.Mutex // guards the fields below
	q          [flow.NumCubes]ring[T]
	backlogged uint8
	total      int
	disc       Discipline
	strict     bool // disc is StrictPriority: a dequeue takes runs of one cube
	below      int  // SetBelow
	// parked: the consumer found every queue empty (a dequeue that
	// returned nothing) and no item was queued since. The first enqueue
	// after it reports that the consumer is to be woken (enqueue), the
	// others do not: a consumer that is running needs no wake-up.
	parked bool
}

// NewScheduler returns an empty scheduler.
func NewScheduler[T any](cfg SchedConfig) (*Scheduler[T], error) {
	n := cfg.QueueLen
	if n == 0 {
		n = DefaultQueueLen
	}
	if n < 0 {
		return nil, fmt.Errorf("dt: queue length %d: %w", n, flow.ErrInvalid)
	}
	s := &Scheduler[T]{}
	switch cfg.Kind {
	case StrictPriority:
		s.disc, s.strict = strict{}, true
	case WeightedRoundRobin:
		w := cfg.Weights
		if w == ([flow.NumCubes]int{}) {
			w = DefaultWeights()
		}
		for c, x := range w {
			if x < 1 {
				return nil, fmt.Errorf("dt: WRR weight of %v is %d, want >= 1: %w", flow.Cube(c), x, flow.ErrInvalid)
			}
		}
		s.disc = &wrr{weights: w, credit: w}
	default:
		return nil, fmt.Errorf("dt: unknown scheduling discipline %d: %w", uint8(cfg.Kind), flow.ErrInvalid)
	}
	if cfg.Room < 0 {
		return nil, fmt.Errorf("dt: queue room %d: %w", cfg.Room, flow.ErrInvalid)
	}
	s.qlen = n
	for c := range s.q {
		s.q[c].buf = make([]T, n*(1+cfg.Room))
	}
	return s, nil
}

// Enqueue appends item to cube c's queue. It reports false if the queue
// is full, its room beyond Cap included (counted in Drops[c]), or c is
// not a cube (not counted: Decide drops such packets first); the item
// then stays the caller's to release.
func (s *Scheduler[T]) Enqueue(c flow.Cube, item T) bool {
	ok, _ := s.enqueue(c, item, false, true)
	return ok
}

// enqueue is Enqueue that also reports whether the consumer is parked
// (it dequeued nothing since the last item) and is to be woken; only
// the first enqueue after the consumer parked reports it. With own (a
// packet of the queue's own node), the queue is full at Cap, its room
// being for forwarded packets; a refusal is counted as a drop only with
// count (not while the sender still waits for room).
func (s *Scheduler[T]) enqueue(c flow.Cube, item T, own, count bool) (ok, wake bool) {
	if c >= flow.NumCubes {
		return false, false
	}
	s.mu.Lock()
	q := &s.q[c]
	if q.n == len(q.buf) || (own && q.n >= s.qlen) {
		s.mu.Unlock()
		if count {
			s.counters.Drops[c].Add(1)
		}
		return false, false
	}
	q.buf[q.tail()] = item
	q.n++
	q.see(s.below)
	s.total++
	s.backlogged |= 1 << c
	wake, s.parked = s.parked, false
	s.mu.Unlock()
	s.counters.Enqueued[c].Add(1)
	return true, wake
}

// EnqueueBatch appends items[i] to cube cubes[i]'s queue, in order,
// under one lock: what a forwarder does with the packets of one receive
// batch that go to one next hop. Items whose queue is full (counted in
// Drops) or whose cube is not one (not counted, as in Enqueue) are
// refused: EnqueueBatch moves them, in order, to the front of items and
// returns how many; they stay the caller's to release. It allocates
// nothing. cubes and items have the same length.
func (s *Scheduler[T]) EnqueueBatch(cubes []flow.Cube, items []T) (refused int) {
	refused, _ = s.enqueueBatch(cubes, items)
	return refused
}

// enqueueBatch is EnqueueBatch that also reports, as enqueue does,
// whether the consumer is to be woken.
func (s *Scheduler[T]) enqueueBatch(cubes []flow.Cube, items []T) (refused int, wake bool) {
	var in, drop [flow.NumCubes]uint64
	s.mu.Lock()
	for i, item := range items {
		c := cubes[i]
		if c >= flow.NumCubes {
			items[refused] = item
			refused++
			continue
		}
		q := &s.q[c]
		if q.n == len(q.buf) {
			drop[c]++
			items[refused] = item
			refused++
			continue
		}
		q.buf[q.tail()] = item
		q.n++
		q.see(s.below)
		s.total++
		s.backlogged |= 1 << c
		in[c]++
	}
	if refused < len(items) {
		wake, s.parked = s.parked, false
	}
	s.mu.Unlock()
	for c := range in {
		if in[c] != 0 {
			s.counters.Enqueued[c].Add(in[c])
		}
		if drop[c] != 0 {
			s.counters.Drops[c].Add(drop[c])
		}
	}
	return refused, wake
}

// Dequeue removes and returns the next item by the discipline, with its
// cube; ok is false when every queue is empty.
func (s *Scheduler[T]) Dequeue() (item T, c flow.Cube, ok bool) {
	s.mu.Lock()
	item, c, ok = s.dequeueLocked()
	s.parked = !ok
	s.mu.Unlock()
	if ok {
		s.counters.Dequeued[c].Add(1)
	}
	return item, c, ok
}

// DequeueBatch fills dst with up to len(dst) items in scheduling order and
// returns how many it wrote.
func (s *Scheduler[T]) DequeueBatch(dst []T) int {
	n, _ := s.dequeueBatch(dst)
	return n
}

// dequeueBatch is DequeueBatch that also reports whether a cube's queue
// was full for the node's own packets (Cap) before it (a producer may wait
// for room: Port.Space). One that returns nothing parks the consumer
// (enqueue).
func (s *Scheduler[T]) dequeueBatch(dst []T) (n int, wasFull bool) {
	var per [flow.NumCubes]uint64
	s.mu.Lock()
	for c := range s.q {
		if s.backlogged&(1<<c) != 0 && s.q[c].n >= s.qlen {
			wasFull = true
			break
		}
	}
	for n < len(dst) && s.backlogged != 0 {
		if !s.strict {
			item, c, _ := s.dequeueLocked()
			dst[n] = item
			per[c]++
			n++
			continue
		}
		// Strict priority serves the picked cube until it is empty:
		// take the run at once, with one Pick.
		c := s.disc.Pick(s.backlogged)
		q := &s.q[c]
		k := min(q.n, len(dst)-n)
		var zero T
		for range k {
			dst[n] = q.buf[q.head]
			q.buf[q.head] = zero // drop the reference
			if q.head++; q.head == len(q.buf) {
				q.head = 0
			}
			n++
		}
		q.n -= k
		q.see(s.below) // the least length of the run is its last
		s.total -= k
		per[c] += uint64(k)
		if q.n == 0 {
			s.backlogged &^= 1 << c
		}
	}
	s.parked = n == 0
	s.mu.Unlock()
	for c, k := range per {
		if k != 0 {
			s.counters.Dequeued[c].Add(k)
		}
	}
	return n, wasFull
}

func (s *Scheduler[T]) dequeueLocked() (T, flow.Cube, bool) {
	var zero T
	if s.backlogged == 0 {
		return zero, 0, false
	}
	c := s.disc.Pick(s.backlogged)
	q := &s.q[c]
	item := q.buf[q.head]
	q.buf[q.head] = zero // drop the reference
	if q.head++; q.head == len(q.buf) {
		q.head = 0
	}
	q.n--
	q.see(s.below)
	s.total--
	if q.n == 0 {
		s.backlogged &^= 1 << c
	}
	return item, c, true
}

// Len returns the number of items queued on cube c (for ECN marking).
func (s *Scheduler[T]) Len(c flow.Cube) int {
	if c >= flow.NumCubes {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q[c].n
}

// SetBelow records that n packets the scheduler already gave out still
// wait below it, in front of the same link (in the layer below's queue:
// irm.RingPort.Queued): Standing counts them in front of every cube's
// queue, since a full lower queue is where a bottleneck's backlog sits
// before this one grows at all.
func (s *Scheduler[T]) SetBelow(n int) {
	s.mu.Lock()
	s.below = max(n, 0)
	for c := range s.q {
		s.q[c].see(s.below)
	}
	s.mu.Unlock()
}

// Standing returns the standing queue of cube c at now (ns, any
// monotonic origin): the least length cube c's queue, with what waits
// below it (SetBelow), had over the last window to two, counting from
// now. A forwarder marks congestion by it (ca.MarkECN) rather than by
// Len: a batch enqueued at once (a receive batch forwarded, a sender's
// paced burst) fills the queue for the moment it takes to drain and says
// nothing about the path; a queue that stays above a length for a whole
// window does. It allocates nothing.
func (s *Scheduler[T]) Standing(c flow.Cube, now int64, window time.Duration) int {
	if c >= flow.NumCubes {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.q[c]
	cur := q.n + s.below
	if d := now - q.start; d >= int64(window) || d < 0 {
		// low is the least since start, however long ago: the window
		// that ends now.
		q.prev, q.low, q.start = q.low, cur, now
	}
	return min(q.prev, q.low, cur)
}

// Total returns the number of items queued on all cubes.
func (s *Scheduler[T]) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Cap returns each cube's queue length: what congestion marks judge it
// by and where it is full for the node's own packets (TryQueue); a
// forwarded packet finds SchedConfig.Room times as much more.
func (s *Scheduler[T]) Cap() int { return s.qlen }

// Counters returns the scheduler's counters (live, not a copy).
func (s *Scheduler[T]) Counters() *SchedCounters { return &s.counters }
