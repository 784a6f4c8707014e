package kernel

import (
	"fmt"
	"sync"
)

// object is anything a capability can refer to.
type object interface {
	kind() Kind
	name() string
	header() *hdr
}

// hdr is the part common to every object.
type hdr struct {
	nm   string
	root *capNode // the kernel-held original every cap to this object derives from
	// creator is the budget a dynamic object is charged to; nil for the
	// objects of the system description, which live until Kernel.Stop.
	creator *budget
}

func (h *hdr) name() string { return h.nm }

func (h *hdr) header() *hdr { return h }

// capNode places a cap in the derivation tree. Every field is guarded by
// Kernel.capMu. Reply caps have no node: they cannot be derived.
type capNode struct {
	obj    object
	cs     *cspace // nil for an object's root
	slot   Cap
	parent *capNode
	first  *capNode // first child
	prev   *capNode // siblings
	next   *capNode
	live   bool
}

func (n *capNode) addChild(c *capNode) {
	c.parent = n
	c.prev = nil
	c.next = n.first
	if n.first != nil {
		n.first.prev = c
	}
	n.first = c
}

func (n *capNode) unlink() {
	if n.parent != nil {
		if n.prev != nil {
			n.prev.next = n.next
		} else {
			n.parent.first = n.next
		}
		if n.next != nil {
			n.next.prev = n.prev
		}
	}
	n.parent, n.prev, n.next = nil, nil, nil
}

// slot is one entry of a CSpace.
type slot struct {
	kind    Kind // KindNone: empty (or a tombstone if revoked)
	revoked bool
	rights  Rights
	badge   Badge
	obj     object   // nil for reply caps
	node    *capNode // nil for reply caps
	reply   *waiter  // KindReply: the caller
	gen     uint64   // KindReply: the call it answers
	name    string   // the slot's name from the description, if any
	cgen    uint32   // the slot's generation: bumped each time it is freed
}

// A Cap carries its slot's index in the low capIndexBits bits and the
// slot's generation (mod 1<<capGenBits) above them, so that a stale cap
// number kept by one goroutine after another deleted the cap is refused
// (ErrInvalidCap) instead of acting on whatever cap reuses the slot. A
// slot's first use has generation 0, so fresh caps are small numbers.
const (
	capIndexBits = 20
	capGenBits   = 32 - capIndexBits
	maxSlots     = 1<<capIndexBits - 1
)

func (c Cap) index() int { return int(c & (1<<capIndexBits - 1)) }

func (c Cap) gen() uint32 { return uint32(c) >> capIndexBits }

func makeCap(index int, gen uint32) Cap { return Cap(gen<<capIndexBits | uint32(index)) }

// cspace is a component incarnation's capability space: a growable array
// of slots with a free list.
type cspace struct {
	owner *PD
	max   int

	mu    sync.Mutex
	slots []slot // guarded by mu; slot 0 is never used
	free  []int  // guarded by mu: indices of empty slots
	names map[string]Cap
}

func newCSpace(owner *PD, max int) *cspace {
	return &cspace{owner: owner, max: max, slots: make([]slot, 1, 16), names: make(map[string]Cap)}
}

// allocLocked returns the cap naming a free slot; cs.mu must be held.
func (cs *cspace) allocLocked() (Cap, bool) {
	if n := len(cs.free); n > 0 {
		i := cs.free[n-1]
		cs.free = cs.free[:n-1]
		return makeCap(i, cs.slots[i].cgen), true
	}
	if len(cs.slots) >= cs.max {
		return 0, false
	}
	cs.slots = append(cs.slots, slot{})
	return makeCap(len(cs.slots)-1, 0), true
}

// freeLocked empties the slot c names and bumps its generation, so c and
// its copies no longer name it.
func (cs *cspace) freeLocked(c Cap) {
	i := c.index()
	cs.slots[i] = slot{cgen: (cs.slots[i].cgen + 1) & (1<<capGenBits - 1)}
	cs.free = append(cs.free, i)
}

// refLocked returns the slot c names, or nil if c is 0, out of range or
// stale (its slot was freed since); cs.mu must be held.
func (cs *cspace) refLocked(c Cap) *slot {
	i := c.index()
	if i == 0 || i >= len(cs.slots) || cs.slots[i].cgen != c.gen() {
		return nil
	}
	return &cs.slots[i]
}

// setLocked fills the slot c names with s, keeping the slot's generation.
func (cs *cspace) setLocked(c Cap, s slot) {
	p := &cs.slots[c.index()]
	s.cgen = p.cgen
	*p = s
}

// get returns a copy of slot c, or an error naming verb.
func (cs *cspace) get(c Cap, verb string) (slot, error) {
	cs.mu.Lock()
	p := cs.refLocked(c)
	if p == nil {
		cs.mu.Unlock()
		return slot{}, cs.errf(verb, c, ErrInvalidCap)
	}
	s := *p
	cs.mu.Unlock()
	if s.kind == KindNone {
		if s.revoked {
			return slot{}, cs.errf(verb, c, ErrRevoked)
		}
		return slot{}, cs.errf(verb, c, ErrInvalidCap)
	}
	return s, nil
}

func (cs *cspace) errf(verb string, c Cap, err error) error {
	return fmt.Errorf("kernel: %s: %s on cap %d: %w", cs.owner.name(), verb, c, err)
}

// lookup returns slot c if it holds a cap of kind k with all of need.
func (pd *PD) lookup(c Cap, k Kind, need Rights, verb string) (slot, error) {
	if pd.dead.Load() {
		return slot{}, pd.deadErr(verb)
	}
	s, err := pd.cs.get(c, verb)
	if err != nil {
		return s, err
	}
	if s.kind != k {
		return slot{}, fmt.Errorf("kernel: %s: %s on cap %d: a %s cap, want %s: %w", pd.name(), verb, c, s.kind, k, ErrInvalidCap)
	}
	if s.rights&need != need {
		return slot{}, fmt.Errorf("kernel: %s: %s on cap %d: rights %s, need %s: %w", pd.name(), verb, c, s.rights, need, ErrRights)
	}
	return s, nil
}

// insert puts a cap derived from parent into cs (for boot, spawn, restart
// and runtime object creation). The caller holds k.capMu.
func (cs *cspace) insert(parent *capNode, rights Rights, badge Badge, name string) (Cap, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, ok := cs.allocLocked()
	if !ok {
		return 0, fmt.Errorf("kernel: %s: cspace full (%d slots): %w", cs.owner.name(), cs.max, ErrNoBudget)
	}
	n := &capNode{obj: parent.obj, cs: cs, slot: c, live: true}
	parent.addChild(n)
	cs.setLocked(c, slot{kind: parent.obj.kind(), rights: rights, badge: badge, obj: parent.obj, node: n, name: name})
	if name != "" {
		cs.names[name] = c
	}
	return c, nil
}

// removeLocked empties slot c of cs: its node leaves the derivation tree and
// its children move up to its parent (as in seL4, deleting a cap does not
// delete what was derived from it). If that was the last cap to a dynamic
// object, the object is queued for Kernel.reap. A reply cap aborts its
// caller. The caller holds k.capMu and cs.mu, and calls k.reap once it has
// released them.
func (cs *cspace) removeLocked(c Cap) {
	s := cs.slots[c.index()]
	if s.node != nil {
		n := s.node
		p := n.parent
		n.unlink()
		for ch := n.first; ch != nil; {
			next := ch.next
			if p != nil {
				p.addChild(ch)
			} else {
				ch.parent, ch.prev, ch.next = nil, nil, nil
			}
			ch = next
		}
		n.first = nil
		n.live = false
		// Every live cap descends from the object's root, so a root
		// without children means no cap to the object is left anywhere.
		if p != nil && p.cs == nil && p.first == nil && p.live && p.obj.header().creator != nil {
			p.live = false
			k := cs.owner.k
			k.reapq = append(k.reapq, p.obj)
		}
	}
	if s.kind == KindReply {
		s.reply.abortReply(s.gen, fmt.Errorf("kernel: call: reply cap deleted by %s: %w", cs.owner.name(), ErrAborted))
	}
	if s.name != "" && cs.names[s.name] == c {
		delete(cs.names, s.name)
	}
	cs.freeLocked(c)
}

// Mint derives a new cap from src, in the caller's CSpace, with rights
// (which must be a subset of src's) and badge. A cap that already carries
// a badge keeps it: Mint with a different non-zero badge fails with
// ErrRights. Reply caps cannot be minted.
func (pd *PD) Mint(src Cap, rights Rights, badge Badge) (Cap, error) {
	return pd.derive(src, rights, badge, "mint")
}

// Copy derives a new cap from src with the same rights and badge.
func (pd *PD) Copy(src Cap) (Cap, error) {
	return pd.derive(src, AllRights, 0, "copy")
}

func (pd *PD) derive(src Cap, rights Rights, badge Badge, verb string) (Cap, error) {
	if pd.dead.Load() {
		return 0, pd.deadErr(verb)
	}
	k := pd.k
	k.capMu.Lock()
	defer k.capMu.Unlock()
	cs := pd.cs
	cs.mu.Lock()
	defer cs.mu.Unlock()
	s, err := cs.slotLocked(src, verb)
	if err != nil {
		return 0, err
	}
	if s.kind == KindReply {
		return 0, fmt.Errorf("kernel: %s: %s on cap %d: reply caps cannot be derived: %w", pd.name(), verb, src, ErrRights)
	}
	if verb == "copy" {
		rights, badge = s.rights, s.badge
	} else {
		if rights&^s.rights != 0 {
			return 0, fmt.Errorf("kernel: %s: mint %s from cap %d with %s: %w", pd.name(), rights, src, s.rights, ErrRights)
		}
		if s.badge != 0 && badge != 0 && badge != s.badge {
			return 0, fmt.Errorf("kernel: %s: mint: cap %d already has badge %#x: %w", pd.name(), src, s.badge, ErrRights)
		}
		if s.badge != 0 {
			badge = s.badge
		}
	}
	c, ok := cs.allocLocked()
	if !ok {
		return 0, fmt.Errorf("kernel: %s: %s: cspace full (%d slots): %w", pd.name(), verb, cs.max, ErrNoBudget)
	}
	n := &capNode{obj: s.obj, cs: cs, slot: c, live: true}
	s.node.addChild(n)
	cs.setLocked(c, slot{kind: s.kind, rights: rights, badge: badge, obj: s.obj, node: n})
	return c, nil
}

// slotLocked is get with cs.mu held.
func (cs *cspace) slotLocked(c Cap, verb string) (*slot, error) {
	s := cs.refLocked(c)
	if s == nil {
		return nil, cs.errf(verb, c, ErrInvalidCap)
	}
	if s.kind == KindNone {
		if s.revoked {
			return nil, cs.errf(verb, c, ErrRevoked)
		}
		return nil, cs.errf(verb, c, ErrInvalidCap)
	}
	return s, nil
}

// Move moves the cap in src to a new slot of the caller's CSpace and
// empties src. The cap keeps its place in the derivation tree.
func (pd *PD) Move(src Cap) (Cap, error) {
	if pd.dead.Load() {
		return 0, pd.deadErr("move")
	}
	k := pd.k
	k.capMu.Lock()
	defer k.capMu.Unlock()
	cs := pd.cs
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, err := cs.slotLocked(src, "move"); err != nil {
		return 0, err
	}
	c, ok := cs.allocLocked()
	if !ok {
		return 0, fmt.Errorf("kernel: %s: move: cspace full (%d slots): %w", pd.name(), cs.max, ErrNoBudget)
	}
	moveSlotLocked(cs, src, cs, c)
	return c, nil
}

// moveSlotLocked moves a cap between slots (possibly of different
// CSpaces). The caller holds k.capMu and both CSpaces' locks.
func moveSlotLocked(from *cspace, fc Cap, to *cspace, tc Cap) {
	s := from.slots[fc.index()]
	if s.name != "" && from.names[s.name] == fc {
		delete(from.names, s.name)
	}
	from.freeLocked(fc)
	if s.node != nil {
		s.node.cs, s.node.slot = to, tc
	}
	if from != to {
		s.name = ""
	} else if s.name != "" {
		to.names[s.name] = tc
	}
	to.setLocked(tc, s)
}

// Delete empties slot c. Caps derived from it survive (they move up the
// derivation tree); deleting a reply cap aborts the waiting caller
// (ErrAborted). Deleting a tombstone left by Revoke frees the slot.
// Deleting the last cap to an object created at run time destroys it (see
// Kernel.reap).
func (pd *PD) Delete(c Cap) error {
	if pd.dead.Load() {
		return pd.deadErr("delete")
	}
	k := pd.k
	k.capMu.Lock()
	cs := pd.cs
	cs.mu.Lock()
	if s := cs.refLocked(c); s == nil || (s.kind == KindNone && !s.revoked) {
		cs.mu.Unlock()
		k.capMu.Unlock()
		return cs.errf("delete", c, ErrInvalidCap)
	}
	cs.removeLocked(c)
	cs.mu.Unlock()
	k.capMu.Unlock()
	k.reap()
	return nil
}

// Revoke deletes every cap derived from c (by Mint or Copy, transitively,
// in any CSpace, including caps moved elsewhere since); c itself stays.
// Each revoked slot keeps a tombstone: using it returns ErrRevoked until
// its holder deletes it. Operations already blocked through a revoked cap
// are not interrupted (as in seL4, only deleting the object would).
func (pd *PD) Revoke(c Cap) error {
	if pd.dead.Load() {
		return pd.deadErr("revoke")
	}
	k := pd.k
	k.capMu.Lock()
	defer k.capMu.Unlock()
	cs := pd.cs
	cs.mu.Lock()
	s, err := cs.slotLocked(c, "revoke")
	if err != nil {
		cs.mu.Unlock()
		return err
	}
	if s.node == nil {
		cs.mu.Unlock()
		return nil // reply caps have no descendants
	}
	n := s.node
	cs.mu.Unlock()
	revokeChildrenLocked(n)
	return nil
}

// revokeChildrenLocked tombstones every descendant of n. The caller holds
// k.capMu.
func revokeChildrenLocked(n *capNode) {
	for ch := n.first; ch != nil; {
		next := ch.next
		revokeChildrenLocked(ch)
		ch.unlink()
		ch.live = false
		if ch.cs != nil {
			ch.cs.mu.Lock()
			s := &ch.cs.slots[ch.slot.index()]
			*s = slot{revoked: true, name: s.name, cgen: s.cgen} // Slot(name) still finds it: ErrRevoked, not ErrInvalidCap
			ch.cs.mu.Unlock()
		}
		ch = next
	}
	n.first = nil
}

// Holds reports whether pd's CSpace has something in slot c (a cap,
// or a revoked cap's tombstone): whether Inspect(c) would succeed,
// without making the error it returns for an empty slot. Code that
// expects the slot empty on its success path (a reply that moved the
// cap away) asks this instead.
func (pd *PD) Holds(c Cap) bool {
	if pd.dead.Load() {
		return false
	}
	cs := pd.cs
	cs.mu.Lock()
	defer cs.mu.Unlock()
	p := cs.refLocked(c)
	return p != nil && (p.revoked || p.kind != KindNone)
}

// Inspect describes cap c.
func (pd *PD) Inspect(c Cap) (CapInfo, error) {
	if pd.dead.Load() {
		return CapInfo{}, pd.deadErr("inspect")
	}
	cs := pd.cs
	cs.mu.Lock()
	defer cs.mu.Unlock()
	p := cs.refLocked(c)
	if p == nil {
		return CapInfo{}, cs.errf("inspect", c, ErrInvalidCap)
	}
	s := *p
	switch {
	case s.revoked:
		return CapInfo{Revoked: true}, nil
	case s.kind == KindNone:
		return CapInfo{}, cs.errf("inspect", c, ErrInvalidCap)
	case s.kind == KindReply:
		return CapInfo{Kind: KindReply, Object: "reply", Rights: s.rights}, nil
	}
	info := CapInfo{Kind: s.kind, Object: s.obj.name(), Rights: s.rights, Badge: s.badge}
	if r, ok := s.obj.(*ring); ok {
		info.Closed = r.closed.Load()
	}
	return info, nil
}

// Slot returns the cap the description named name in this component's
// CSpace (it follows the cap if moved within the CSpace).
func (pd *PD) Slot(name string) (Cap, error) {
	cs := pd.cs
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, ok := cs.names[name]
	if !ok {
		return 0, fmt.Errorf("kernel: %s: no slot named %q: %w", pd.name(), name, ErrInvalidCap)
	}
	return c, nil
}
