package kernel

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Budget is what a component may consume. Exhausting any part is an
// ErrNoBudget for that component only.
type Budget struct {
	// Bufs is how many packet buffers may be charged to the component at
	// once: those it holds (allocated or popped, not yet pushed or freed),
	// those it reserved (PD.Reserve), and those queued in the rings it
	// created.
	Bufs int `json:"bufs" toml:"bufs"`
	// ByteRate is how many bytes per second it may push into rings; 0 means
	// unlimited.
	ByteRate int64 `json:"byte_rate,omitempty" toml:"byte_rate,omitempty"`
	// Burst is the token-bucket depth in bytes for ByteRate; 0 means one
	// second's worth (at least BufSize).
	Burst int64 `json:"burst,omitempty" toml:"burst,omitempty"`
	// Objects is how many objects (endpoints, notifications, rings,
	// children) it may create at run time.
	Objects int `json:"objects,omitempty" toml:"objects,omitempty"`
}

// budget is the live account of a component's Budget. A packet buffer is
// charged to exactly one budget at a time: its holder's, or, while it is
// queued in a ring, the ring creator's (see ring.push and ring.pop). Every
// move of a batch is one reservation on the budget it moves to and one
// release on the budget it leaves.
type budget struct {
	name     string
	bufLimit atomic.Int64
	bufUsed  atomic.Int64
	objLimit atomic.Int64
	objUsed  atomic.Int64

	// waiters counts goroutines blocked until the budget is credited
	// (PopWait for the popper's budget, PushWait for the ring creator's).
	// Whoever credits it pokes credit only when waiters is non-zero, as
	// the rings do with their waiting flags.
	waiters atomic.Int32
	credit  chan struct{}

	rate tokenBucket

	// Preallocated errors, so that a refused push or pop does not allocate.
	rateErr  error // its byte rate refused a push
	popErr   error // it cannot take a popped buffer
	queueErr error // it cannot take a buffer pushed into a ring it made

	// into is the budget this one was merged into when its component was
	// destroyed; written once, before mergedBit is set in the counters,
	// and read only by whoever saw the bit.
	into *budget
}

func newBudget(name string, b Budget, now func() time.Time) *budget {
	bg := &budget{name: name, credit: make(chan struct{}, 1)}
	bg.bufLimit.Store(int64(b.Bufs))
	bg.objLimit.Store(int64(b.Objects))
	bg.rate.now = now
	bg.rate.set(b.ByteRate, b.Burst)
	bg.rateErr = fmt.Errorf("kernel: %s: push: byte rate exceeded: %w", name, ErrNoBudget)
	bg.popErr = fmt.Errorf("kernel: %s: pop: every buffer of its budget is in use: %w", name, ErrNoBudget)
	bg.queueErr = fmt.Errorf("kernel: push into a ring %s made: every buffer of its budget is in use: %w", name, ErrNoBudget)
	return bg
}

// mergedBit marks the counters of a budget merged into another (see
// merge). Setting it with a compare-and-swap splits every concurrent
// release into "before the merge" (counted in what merge hands over) and
// "after" (forwarded one by one), without a lock on the free path.
const mergedBit = 1 << 62

// reserveBufs charges up to n buffers to the budget and returns how many.
func (b *budget) reserveBufs(n int) int {
	for {
		used, limit := b.bufUsed.Load(), b.bufLimit.Load()
		k := min(int64(n), limit-used)
		if k <= 0 || (used|limit)&mergedBit != 0 {
			return 0
		}
		if b.bufUsed.CompareAndSwap(used, used+k) {
			return int(k)
		}
	}
}

// releaseBufs takes n buffers off the budget (freed, or moved to another
// budget) and wakes a goroutine waiting for credit.
func (b *budget) releaseBufs(n int64) {
	if n == 0 {
		return
	}
	if b.bufUsed.Add(-n)&mergedBit != 0 {
		b.into.addBufLimit(n)
		return
	}
	b.credited()
}

// live returns the budget that b's charges go to now: b, or the budget
// it was merged into (transitively).
func (b *budget) live() *budget {
	for b.bufLimit.Load()&mergedBit != 0 {
		b = b.into
	}
	return b
}

func (b *budget) addBufLimit(n int64) {
	if b.bufLimit.Add(n)&mergedBit != 0 {
		b.into.addBufLimit(n)
		return
	}
	if n > 0 {
		b.credited()
	}
}

// credited wakes one goroutine waiting for the budget to be credited. A
// woken waiter that does not use the credit up passes the wake-up on
// (see creditWait), so one token serves every waiter that can proceed.
func (b *budget) credited() {
	if b.waiters.Load() != 0 {
		poke(b.credit)
	}
}

func (b *budget) reserveObject() bool {
	for {
		used, limit := b.objUsed.Load(), b.objLimit.Load()
		if used >= limit || (used|limit)&mergedBit != 0 {
			return false
		}
		if b.objUsed.CompareAndSwap(used, used+1) {
			return true
		}
	}
}

// releaseObject credits b with an object it created that was destroyed.
func (b *budget) releaseObject() {
	if b.objUsed.Add(-1)&mergedBit != 0 {
		b.into.addObjLimit(1)
	}
}

func (b *budget) addObjLimit(n int64) {
	if b.objLimit.Add(n)&mergedBit != 0 {
		b.into.addObjLimit(n)
	}
}

func setMerged(v *atomic.Int64) int64 {
	for {
		x := v.Load()
		if v.CompareAndSwap(x, x|mergedBit) {
			return x
		}
	}
}

// merge gives what is left of b (a destroyed child's budget) back to p,
// its creator: the unused part now, each buffer and object still charged
// to b when it is freed or destroyed later.
func (b *budget) merge(p *budget) {
	b.into = p
	lim := setMerged(&b.bufLimit)
	p.addBufLimit(lim - setMerged(&b.bufUsed))
	lim = setMerged(&b.objLimit)
	p.addObjLimit(lim - setMerged(&b.objUsed))
	if rate, limited := b.rate.clear(); limited {
		p.rate.add(rate)
	}
	poke(b.credit) // nobody should wait on a dead component's budget; if so, let it look again
}

// take removes want from b's limits (to give them to someone else).
func (b *budget) take(want Budget) error {
	if want.Bufs < 0 || want.Objects < 0 || want.ByteRate < 0 {
		return fmt.Errorf("kernel: %s: negative budget %+v: %w", b.name, want, ErrNoBudget)
	}
	for {
		used, limit := b.bufUsed.Load(), b.bufLimit.Load()
		if limit-used < int64(want.Bufs) {
			return fmt.Errorf("kernel: %s: split %d bufs with %d free: %w", b.name, want.Bufs, limit-used, ErrNoBudget)
		}
		if b.bufLimit.CompareAndSwap(limit, limit-int64(want.Bufs)) {
			break
		}
	}
	for {
		used, limit := b.objUsed.Load(), b.objLimit.Load()
		if limit-used < int64(want.Objects) {
			b.addBufLimit(int64(want.Bufs))
			return fmt.Errorf("kernel: %s: split %d objects with %d free: %w", b.name, want.Objects, limit-used, ErrNoBudget)
		}
		if b.objLimit.CompareAndSwap(limit, limit-int64(want.Objects)) {
			break
		}
	}
	if err := b.rate.split(want.ByteRate); err != nil {
		b.addBufLimit(int64(want.Bufs))
		b.addObjLimit(int64(want.Objects))
		return fmt.Errorf("kernel: %s: %w", b.name, err)
	}
	return nil
}

// give adds more to b's limits (the other half of take).
func (b *budget) give(more Budget) {
	b.addBufLimit(int64(more.Bufs))
	b.addObjLimit(int64(more.Objects))
	if more.ByteRate > 0 {
		b.rate.add(more.ByteRate)
	}
}

// snapshot returns b as a Budget (limits, not usage).
func (b *budget) snapshot() Budget {
	rate, burst := b.rate.get()
	return Budget{Bufs: int(b.bufLimit.Load() &^ mergedBit), ByteRate: rate, Burst: burst, Objects: int(b.objLimit.Load() &^ mergedBit)}
}

// Usage reports a component's budget: its limits and what it uses now.
type Usage struct {
	Limit Budget
	// Bufs counts the buffers charged to it: held by its current
	// incarnation (or by a dead one whose goroutines have not all
	// returned), reserved, and queued in rings it created.
	Bufs    int
	Objects int // objects created
}

// tokenBucket limits the bytes pushed per second (a component's ByteRate,
// or a ring's). A bucket that is not limited costs one atomic load per
// push; a limited one takes its mutex.
type tokenBucket struct {
	limited atomic.Bool // read without the lock on every push
	now     func() time.Time

	mu     sync.Mutex // guards the fields below
	rate   int64      // bytes per second (0 while limited: nothing passes)
	burst  int64
	tokens int64
	last   time.Time
}

// set limits the bucket to rate bytes per second with the given depth (0
// means one second's worth, at least BufSize); rate 0 means unlimited.
func (t *tokenBucket) set(rate, burst int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rate = rate
	if burst <= 0 {
		burst = max(rate, BufSize)
	}
	t.burst = burst
	t.tokens = burst
	t.last = t.now()
	t.limited.Store(rate > 0)
}

// take takes the bytes of as many leading bufs as the bucket allows and
// returns how many.
func (t *tokenBucket) take(bufs []*Buf) int {
	if !t.limited.Load() {
		return len(bufs)
	}
	t.mu.Lock()
	now := t.now()
	if el := now.Sub(t.last); el > 0 {
		t.tokens = min(t.burst, t.tokens+int64(float64(t.rate)*el.Seconds()))
		t.last = now
	}
	n := 0
	for _, x := range bufs {
		l := int64(x.Len())
		if l > t.tokens {
			break
		}
		t.tokens -= l
		n++
	}
	t.mu.Unlock()
	return n
}

// refund gives back the bytes of bufs, taken by take but not pushed after
// all (another limit refused them).
func (t *tokenBucket) refund(bufs []*Buf) {
	if len(bufs) == 0 || !t.limited.Load() {
		return
	}
	var l int64
	for _, x := range bufs {
		l += int64(x.Len())
	}
	t.mu.Lock()
	t.tokens = min(t.burst, t.tokens+l)
	t.mu.Unlock()
}

// split takes rate bytes per second out of a limited bucket (for a
// child); an unlimited bucket gives any rate away and stays unlimited. A
// limited bucket cannot give an unlimited rate (0) or more than it has.
func (t *tokenBucket) split(rate int64) error {
	if !t.limited.Load() {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if rate == 0 || rate > t.rate {
		return fmt.Errorf("split byte rate %d from %d: %w", rate, t.rate, ErrNoBudget)
	}
	t.rate -= rate
	t.burst = max(t.rate, BufSize)
	t.tokens = min(t.tokens, t.burst)
	return nil
}

// add gives a limited bucket rate more bytes per second; an unlimited
// one stays unlimited.
func (t *tokenBucket) add(rate int64) {
	if !t.limited.Load() {
		return
	}
	t.mu.Lock()
	t.rate += rate
	t.burst = max(t.burst, t.rate)
	t.mu.Unlock()
}

// clear removes the limit and returns what it was.
func (t *tokenBucket) clear() (rate int64, limited bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rate, limited = t.rate, t.limited.Load()
	t.rate = 0
	t.limited.Store(false)
	return rate, limited
}

// get returns the rate and burst (0, 0 when unlimited).
func (t *tokenBucket) get() (rate, burst int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.limited.Load() {
		return 0, 0
	}
	return t.rate, t.burst
}
