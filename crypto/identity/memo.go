package identity

import (
	"crypto/sha256"
	"sync"
)

// Memo remembers the outcomes of checks by the SHA-256 of the bytes
// checked (a document, a certificate), so that the same bytes are not
// verified twice. Bounded: at max entries it forgets them all and starts
// over (simple, and a flood of new bytes costs no more than without it).
// The zero value is ready; safe for concurrent use.
type Memo[T any] struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]T
}

// MemoKey is the key of b in a Memo.
func MemoKey(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }

// Get returns what was remembered for k.
func (c *Memo[T]) Get(k [sha256.Size]byte) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

// Put remembers v for k, within max entries.
func (c *Memo[T]) Put(k [sha256.Size]byte, v T, max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= max {
		c.m = make(map[[sha256.Size]byte]T)
	}
	c.m[k] = v
}

// Len is how many outcomes c remembers.
func (c *Memo[T]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
