package dht

import (
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
	"slices"
	"time"

	"github.com/ouronet/ouro/layer"
)

// NodeID returns the DHT node id of the member at a: SHA-256 of the
// address as 8 bytes big-endian. Ids derive from addresses (not IPCP
// names) because addresses are all the directory sees (dir.Env.Send and
// Members speak addresses), so any member computes any other's id without
// asking, and a member's id changes exactly when its address does.
func NodeID(a layer.Addr) layer.Hash {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(a))
	return sha256.Sum256(b[:])
}

// idBits is the length of ids and keys in bits.
const idBits = layer.HashLen * 8

// prefixLen returns the number of leading bits a and b share (idBits if
// equal): the index of the k-bucket b falls into from a's point of view.
func prefixLen(a, b layer.Hash) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return idBits
}

// cmpDist compares the XOR distances of a and b to target.
func cmpDist(target, a, b layer.Hash) int {
	for i := range target {
		if x, y := a[i]^target[i], b[i]^target[i]; x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// contact is a member as the routing table knows it.
type contact struct {
	addr  layer.Addr
	id    layer.Hash
	fails uint8 // requests unanswered since it was last seen
}

// maxFails is how many unanswered requests in a row evict a contact
// whose bucket has no spare (one lost datagram should not).
const maxFails = 2

func newContact(a layer.Addr) contact { return contact{addr: a, id: NodeID(a)} }

// bucket holds up to k live contacts sharing one prefix length with self,
// least recently seen first, and up to k spares: contacts seen while the
// bucket was full, promoted when a live one fails (Kademlia section 4.1's
// replacement cache; we never ping from Handle, which must not block).
type bucket struct {
	live   []contact
	spare  []contact
	looked time.Time // last lookup of an id in this bucket's range
}

// table is the k-bucket routing table. Not safe for concurrent use: the
// DHT's lock guards it.
type table struct {
	self    contact
	k       int
	buckets [idBits]*bucket // allocated on first use
	n       int             // live contacts
}

func newTable(self layer.Addr, k int) *table { return &table{self: newContact(self), k: k} }

func (t *table) bucketOf(id layer.Hash) (int, *bucket) {
	i := prefixLen(t.self.id, id)
	if i == idBits {
		return i, nil
	}
	b := t.buckets[i]
	if b == nil {
		b = new(bucket)
		t.buckets[i] = b
	}
	return i, b
}

func indexOf(cs []contact, a layer.Addr) int {
	for i, c := range cs {
		if c.addr == a {
			return i
		}
	}
	return -1
}

// seen records that a is alive: it moves to the bucket's tail, joins a
// bucket with room, or else becomes the newest spare.
func (t *table) seen(a layer.Addr) { t.add(a, true) }

// offer adds a as seen does, but leaves a known contact where it is
// (routing says a exists, not that it answered).
func (t *table) offer(a layer.Addr) { t.add(a, false) }

func (t *table) add(a layer.Addr, alive bool) {
	if a == 0 || a == t.self.addr {
		return
	}
	c := newContact(a)
	_, b := t.bucketOf(c.id)
	if i := indexOf(b.live, a); i >= 0 {
		if alive {
			copy(b.live[i:], b.live[i+1:])
			b.live[len(b.live)-1] = c
		}
		return
	}
	if len(b.live) < t.k {
		b.live = append(b.live, c)
		t.n++
		return
	}
	if i := indexOf(b.spare, a); i >= 0 {
		b.spare = slices.Delete(b.spare, i, i+1)
	} else if len(b.spare) >= t.k {
		b.spare = slices.Delete(b.spare, 0, 1)
	}
	b.spare = append(b.spare, c)
}

// failed records that a request to a went unanswered, or (unreachable)
// that the transport has no route to it: a is removed if unreachable, if
// a spare can take its place, or after maxFails in a row.
func (t *table) failed(a layer.Addr, unreachable bool) {
	_, b := t.bucketOf(NodeID(a))
	if b == nil {
		return
	}
	i := indexOf(b.live, a)
	if i < 0 {
		return
	}
	b.live[i].fails++
	if unreachable || len(b.spare) > 0 || b.live[i].fails >= maxFails {
		t.remove(a)
	}
}

// remove drops a (it failed or left) and promotes the newest spare.
func (t *table) remove(a layer.Addr) {
	_, b := t.bucketOf(NodeID(a))
	if b == nil {
		return
	}
	if i := indexOf(b.spare, a); i >= 0 {
		b.spare = slices.Delete(b.spare, i, i+1)
	}
	i := indexOf(b.live, a)
	if i < 0 {
		return
	}
	b.live = slices.Delete(b.live, i, i+1)
	t.n--
	if n := len(b.spare); n > 0 {
		b.live = append(b.live, b.spare[n-1])
		b.spare = b.spare[:n-1]
		t.n++
	}
}

// closest returns up to n live contacts closest to target, nearest first.
func (t *table) closest(target layer.Hash, n int) []contact {
	out := make([]contact, 0, t.n)
	for _, b := range t.buckets {
		if b != nil {
			out = append(out, b.live...)
		}
	}
	slices.SortFunc(out, func(x, y contact) int { return cmpDist(target, x.id, y.id) })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// all returns every live contact's address.
func (t *table) all() []layer.Addr {
	out := make([]layer.Addr, 0, t.n)
	for _, b := range t.buckets {
		if b != nil {
			for _, c := range b.live {
				out = append(out, c.addr)
			}
		}
	}
	return out
}

// staleBuckets returns the indexes of the buckets to refresh at now: every
// bucket up to the deepest non-empty one (the ranges a lookup can land in)
// not looked up within every.
func (t *table) staleBuckets(now time.Time, every time.Duration) []int {
	deepest := -1
	for i, b := range t.buckets {
		if b != nil && len(b.live) > 0 {
			deepest = i
		}
	}
	var out []int
	for i := 0; i <= deepest && i < idBits; i++ {
		b := t.buckets[i]
		if b == nil || now.Sub(b.looked) >= every {
			out = append(out, i)
		}
	}
	return out
}

// touch records a lookup of target (its bucket needs no refresh).
func (t *table) touch(target layer.Hash, now time.Time) {
	if _, b := t.bucketOf(target); b != nil {
		b.looked = now
	}
}

// randomIn returns an id in bucket i's range from random bytes r: the
// first i bits of self, bit i flipped, the rest from r.
func (t *table) randomIn(i int, r layer.Hash) layer.Hash {
	id := r
	full := i / 8
	copy(id[:full], t.self.id[:full])
	bit := byte(0x80) >> (i % 8)
	keep := ^(bit<<1 - 1) // the bits before bit i in this byte (none if i%8 == 0: bit<<1 wraps to 0)
	id[full] = t.self.id[full]&keep | ^t.self.id[full]&bit | r[full]&(bit-1)
	return id
}
