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
	// Bufs is how many packet buffers the component may hold at once
	// (including those it pushed that nobody has freed yet).
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

// budget is the live account of a component's Budget. Buffers remember the
// budget they were drawn from and return to it when freed, whoever frees
// them.
type budget struct {
	name     string
	bufLimit atomic.Int64
	bufUsed  atomic.Int64
	objLimit atomic.Int64
	objUsed  atomic.Int64

	now     func() time.Time
	rateErr error // preallocated so a rate-limited push does not allocate
	// into is the budget this one was merged into when its component was
	// destroyed; written once, before mergedBit is set in the counters,
	// and read only by whoever saw the bit.
	into *budget

	mu     sync.Mutex // guards the token bucket below
	rate   int64      // bytes per second; 0 = unlimited
	burst  int64
	tokens int64
	last   time.Time
}

func newBudget(name string, b Budget, now func() time.Time) *budget {
	bg := &budget{name: name, now: now}
	bg.bufLimit.Store(int64(b.Bufs))
	bg.objLimit.Store(int64(b.Objects))
	bg.setRate(b.ByteRate, b.Burst)
	bg.rateErr = fmt.Errorf("kernel: %s: push: byte rate exceeded: %w", name, ErrNoBudget)
	return bg
}

func (b *budget) setRate(rate, burst int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = rate
	if burst <= 0 {
		burst = max(rate, BufSize)
	}
	b.burst = burst
	b.tokens = burst
	b.last = b.now()
}

// mergedBit marks the counters of a budget merged into another (see
// merge). Setting it with a compare-and-swap splits every concurrent
// release into "before the merge" (counted in what merge hands over) and
// "after" (forwarded one by one), without a lock on the free path.
const mergedBit = 1 << 62

// reserveBufs takes up to n buffers from the budget and returns how many.
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

// releaseBufs returns n buffers drawn from b.
func (b *budget) releaseBufs(n int64) {
	if b.bufUsed.Add(-n)&mergedBit != 0 {
		b.into.addBufLimit(n)
	}
}

func (b *budget) addBufLimit(n int64) {
	if b.bufLimit.Add(n)&mergedBit != 0 {
		b.into.addBufLimit(n)
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
	b.mu.Lock()
	rate := b.rate
	b.rate = 0
	b.mu.Unlock()
	p.give(Budget{ByteRate: rate})
}

// charge takes the bytes of as many leading bufs as the byte rate allows
// and returns how many.
func (b *budget) charge(bufs []*Buf) int {
	b.mu.Lock()
	if b.rate == 0 {
		b.mu.Unlock()
		return len(bufs)
	}
	now := b.now()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.burst, b.tokens+int64(float64(b.rate)*el.Seconds()))
		b.last = now
	}
	n := 0
	for _, x := range bufs {
		l := int64(x.Len())
		if l > b.tokens {
			break
		}
		b.tokens -= l
		n++
	}
	b.mu.Unlock()
	return n
}

// carve moves part of b to a new child budget, or fails with ErrNoBudget
// leaving b unchanged.
func (b *budget) carve(name string, want Budget) (*budget, error) {
	if err := b.take(want); err != nil {
		return nil, err
	}
	return newBudget(name, want, b.now), nil
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
			b.bufLimit.Add(int64(want.Bufs))
			return fmt.Errorf("kernel: %s: split %d objects with %d free: %w", b.name, want.Objects, limit-used, ErrNoBudget)
		}
		if b.objLimit.CompareAndSwap(limit, limit-int64(want.Objects)) {
			break
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate > 0 {
		if want.ByteRate == 0 || want.ByteRate > b.rate {
			b.bufLimit.Add(int64(want.Bufs))
			b.objLimit.Add(int64(want.Objects))
			return fmt.Errorf("kernel: %s: split byte rate %d from %d: %w", b.name, want.ByteRate, b.rate, ErrNoBudget)
		}
		b.rate -= want.ByteRate
		b.burst = max(b.rate, BufSize)
		b.tokens = min(b.tokens, b.burst)
	}
	return nil
}

// give adds more to b's limits (the other half of take).
func (b *budget) give(more Budget) {
	b.addBufLimit(int64(more.Bufs))
	b.addObjLimit(int64(more.Objects))
	if more.ByteRate > 0 {
		b.mu.Lock()
		if b.rate > 0 {
			b.rate += more.ByteRate
			b.burst = max(b.burst, b.rate)
		}
		b.mu.Unlock()
	}
}

// snapshot returns b as a Budget (limits, not usage).
func (b *budget) snapshot() Budget {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Budget{Bufs: int(b.bufLimit.Load() &^ mergedBit), ByteRate: b.rate, Burst: b.burst, Objects: int(b.objLimit.Load() &^ mergedBit)}
}

// Usage reports a component's budget: its limits and what it uses now.
type Usage struct {
	Limit   Budget
	Bufs    int // buffers drawn from the budget and not yet freed
	Objects int // objects created
}
