// Package pff is the packet forwarding function of a unicast IPCP: a table
// from destination address to next hop(s). It computes no routes (package
// routing does) and moves no packets (package dt does).
package pff

import (
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ouronet/ouro/layer"
)

// Port identifies a next hop: the id of an N-1 data-transfer flow the
// IPCP holds to a neighbour (its connection manager numbers them). The zero
// value is no port.
type Port uint64

// Kind selects a forwarding policy (Ouroboros' pff policies).
type Kind uint8

// The forwarding policies.
const (
	// Simple keeps one next hop per destination.
	Simple Kind = iota
	// Alternate keeps a primary and a loop-free alternate; PortDown
	// switches affected destinations to the alternate at once.
	Alternate
	// Multipath keeps an equal-cost set; a flow hash picks one member, so
	// a flow sticks to one path while the set is unchanged.
	Multipath
)

func (k Kind) String() string {
	switch k {
	case Simple:
		return "simple"
	case Alternate:
		return "alternate"
	case Multipath:
		return "multipath"
	}
	return fmt.Sprintf("pff.Kind(%d)", uint8(k))
}

// ParseKind parses "simple", "alternate" or "multipath".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "simple", "":
		return Simple, nil
	case "alternate", "lfa":
		return Alternate, nil
	case "multipath", "ecmp":
		return Multipath, nil
	}
	return 0, fmt.Errorf("pff: unknown policy %q (want simple, alternate or multipath)", s)
}

// Routes is what routing hands to Replace: for each destination, its next
// hops in order of preference. Simple uses the first, Alternate the first
// two (primary, alternate), Multipath all of them (an equal-cost set).
type Routes map[layer.Addr][]Port

// selector is the per-policy part of a lookup: it picks one of an entry's
// usable hops (never empty).
type selector interface {
	pick(dst layer.Addr, hops []Port, flowHash uint64) Port
	// keep is how many hops of a route the policy stores.
	keep() int
}

type firstHop struct{ n int }

func (f firstHop) pick(_ layer.Addr, hops []Port, _ uint64) Port { return hops[0] }
func (f firstHop) keep() int                                     { return f.n }

// rendezvous picks by highest random weight over (dst, flow hash, port):
// a flow keeps its hop while that hop stays in the set, and removing a hop
// moves only the flows that used it.
type rendezvous struct{}

func (rendezvous) pick(dst layer.Addr, hops []Port, h uint64) Port {
	if len(hops) == 1 {
		return hops[0]
	}
	key := mix(uint64(dst) ^ bits.RotateLeft64(h, 32))
	best, bestW := hops[0], uint64(0)
	for i, p := range hops {
		w := mix(key ^ uint64(p))
		if i == 0 || w > bestW {
			best, bestW = p, w
		}
	}
	return best
}
func (rendezvous) keep() int { return 1 << 30 }

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// table is an immutable snapshot: readers load it without locks.
type table struct {
	hops map[layer.Addr][]Port // every slice non-empty, read-only
}

// Table is a forwarding table under one policy. Lookup is lock-free and
// allocation-free (it reads an immutable snapshot through an atomic
// pointer); Replace, PortDown and PortUp build a new snapshot and swap it
// in, serialised by a mutex. All methods are safe for concurrent use.
// Table has nothing running: it has no Start or Stop.
type Table struct {
	kind Kind
	sel  selector
	cur  atomic.Pointer[table]

	mu     sync.Mutex // serialises writers; guards routes and down
	routes Routes     // as last given to Replace (owned copy)
	down   map[Port]struct{}
}

// New returns an empty table with the given policy.
func New(kind Kind) (*Table, error) {
	t := &Table{kind: kind, down: make(map[Port]struct{})}
	switch kind {
	case Simple:
		t.sel = firstHop{1}
	case Alternate:
		t.sel = firstHop{2}
	case Multipath:
		t.sel = rendezvous{}
	default:
		return nil, fmt.Errorf("pff: unknown policy %d", uint8(kind))
	}
	t.cur.Store(&table{})
	return t, nil
}

// Kind returns the table's policy.
func (t *Table) Kind() Kind { return t.kind }

// Lookup returns the next hop for dst. flowHash identifies the flow for
// Multipath (dt passes the destination EID); the other policies ignore it.
// It never blocks and allocates nothing.
func (t *Table) Lookup(dst layer.Addr, flowHash uint64) (Port, bool) {
	hops := t.cur.Load().hops[dst]
	if len(hops) == 0 {
		return 0, false
	}
	return t.sel.pick(dst, hops, flowHash), true
}

// NextHops returns a copy of dst's usable hops in order of preference.
func (t *Table) NextHops(dst layer.Addr) []Port {
	return slices.Clone(t.cur.Load().hops[dst])
}

// Len returns the number of reachable destinations.
func (t *Table) Len() int { return len(t.cur.Load().hops) }

// Replace installs routes as the whole table (routing calls it after each
// recomputation). It copies routes; the caller keeps ownership. Ports
// marked down stay excluded until PortUp.
func (t *Table) Replace(routes Routes) {
	own := make(Routes, len(routes))
	for dst, hops := range routes {
		own[dst] = slices.Clone(hops[:min(len(hops), t.sel.keep())])
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.routes = own
	// Forget down marks for ports routing no longer uses: routing has
	// caught up with them.
	for p := range t.down {
		used := false
		for _, hops := range own {
			if slices.Contains(hops, p) {
				used = true
				break
			}
		}
		if !used {
			delete(t.down, p)
		}
	}
	t.publish()
}

// PortDown removes port from every entry at once, without waiting for
// routing: under Alternate an entry whose primary went down forwards on
// its alternate; under Multipath the flows on port move to the remaining
// members; an entry left with no hop is removed. The mark holds until
// PortUp, or until a Replace whose routes no longer use port.
func (t *Table) PortDown(port Port) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.down[port] = struct{}{}
	t.publish()
}

// PortUp undoes PortDown.
func (t *Table) PortUp(port Port) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.down, port)
	t.publish()
}

// publish builds and swaps in a snapshot of routes minus down ports. All
// hop slices of a snapshot share one backing array. Called with mu held.
func (t *Table) publish() {
	n := 0
	for _, hops := range t.routes {
		n += len(hops)
	}
	back := make([]Port, 0, n)
	next := &table{hops: make(map[layer.Addr][]Port, len(t.routes))}
	for dst, hops := range t.routes {
		start := len(back)
		for _, p := range hops {
			if _, isDown := t.down[p]; !isDown && p != 0 && !slices.Contains(back[start:], p) {
				back = append(back, p)
			}
		}
		if len(back) > start {
			next.hops[dst] = back[start:len(back):len(back)]
		}
	}
	t.cur.Store(next)
}
