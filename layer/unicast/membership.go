package unicast

import (
	"sync/atomic"

	"github.com/ouronet/ouro/layer"
)

// Membership bound to the member's key.
//
// A member's address derives from its key and IPCP name (addr.Keyed; in
// a protected layer from its key alone, addr.FromKey) unless its
// configuration gives one, so a member that
// restarts, or whose IPCP is restarted after a fault, with the same node
// key asks for its old address again. The enrolling member gives it back
// (core.Claim) once the new incarnation proved the key that routing knows
// for the address, and never to another key. Its routes and names follow
// without anyone's state being wiped:
//
//   - its new LSUs carry sequence numbers from its clock
//     (routing.New), above its earlier incarnation's; a board without a
//     clock starts below, hears its old LSU back from a neighbour and
//     re-originates above it. An old LSU replayed is older than the one
//     installed and loses;
//   - its names are re-registered at the same address, with directory
//     records of the same key (the name's owner) and newer sequence
//     numbers (the DHT's are from the clock too), which replace the old
//     ones; a replayed older record is refused, and another key's record
//     of the name is refused while the owner's are live;
//   - flows to the earlier incarnation end: the enrolling member ends its
//     own at once (reincarnate), other members' end at their next
//     keepalive, which the new incarnation answers with a Dealloc (no such
//     endpoint), or at worst at their flow timeout.

// reincarnations counts addresses given back to their key (Claim).
type reincarnations struct{ n atomic.Uint64 }

// reincarnate replaces the membership of the earlier incarnation at a by
// the one enrolling now (named name): the adjacency with the old one, if
// this member still has it, is torn down (it is dead, or a stale copy of
// the same key), and the flows with it end, their programs told.
func (c *core) reincarnate(a layer.Addr, name string) {
	c.reinc.n.Add(1)
	for _, n := range c.cm.Neighbours() {
		if n.Addr == a {
			c.cm.Fail(n.Port, "replaced by a new incarnation of its key")
		}
	}
	for _, fi := range c.fa.Flows() {
		if fi.Remote != a {
			continue
		}
		if f := c.fa.Lookup(fi.EID); f != nil && f.Remote == a {
			c.fa.Closed(f)
		}
	}
	c.p.log().Info("address taken back by the same key, earlier membership replaced", "addr", a, "peer", name)
}
