// Package routingtest has fakes for testing link-state routing: a fake
// clock and an in-process network of Routers that pass their messages
// through a simulator. It is for tests only.
package routingtest

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/unicast/pff"
	"github.com/ouronet/ouro/layer/unicast/routing"
)

// Clock is a fake routing.Clock that moves only when told. Safe for
// concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

var _ routing.Clock = (*Clock)(nil)

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the time once Advance has moved
// the clock d past now.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// Waiters returns how many After channels are pending.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// Advance moves the clock by d and fires the After channels now due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			keep = append(keep, w)
		} else {
			w.ch <- c.now
		}
	}
	c.waiters = keep
}

// Node is one simulated IPCP: a Router and its forwarding table. A
// neighbour's port is its address as a pff.Port.
type Node struct {
	Addr   layer.Addr
	Signer *identity.Identity // the node's key: derived from Addr, kept across restarts
	Router *routing.Router
	PFF    *pff.Table
	net    *Net
}

// Flood implements routing.Flooder: it queues msg for delivery.
func (n *Node) Flood(to routing.Neighbour, msg []byte) {
	n.net.Msgs++
	n.net.Bytes += len(msg)
	n.net.queue = append(n.net.queue, delivery{from: n.Addr, to: to.Addr, msg: msg})
}

type delivery struct {
	from, to layer.Addr
	msg      []byte
}

type edge struct{ a, b layer.Addr }

// Net is a simulated network of Routers. It is not safe for concurrent
// use: the test drives it from one goroutine.
type Net struct {
	Clock  *Clock
	Policy pff.Kind
	// Config, if set, adjusts each Router's configuration before New.
	Config func(*routing.Config)

	// Msgs and Bytes count every message flooded so far.
	Msgs, Bytes int

	nodes map[layer.Addr]*Node
	links map[edge]bool
	queue []delivery
}

// Layer is the layer name the test routers sign for.
const Layer = "routingtest"

// Key returns the test key of the node at addr: derived from the address,
// so that a restarted node keeps it.
func Key(addr layer.Addr) (*identity.Identity, error) {
	var seed [32]byte
	binary.BigEndian.PutUint64(seed[:], uint64(addr))
	copy(seed[8:], "routingtest node key")
	return identity.FromSeed(seed[:])
}

// NewNet returns an empty network whose routers use policy.
func NewNet(policy pff.Kind) *Net {
	return &Net{
		Clock:  NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Policy: policy,
		nodes:  make(map[layer.Addr]*Node),
		links:  make(map[edge]bool),
	}
}

// Add creates the node addr (replacing one that was there: a restart).
func (n *Net) Add(addr layer.Addr) (*Node, error) {
	t, err := pff.New(n.Policy)
	if err != nil {
		return nil, err
	}
	id, err := Key(addr)
	if err != nil {
		return nil, err
	}
	node := &Node{Addr: addr, Signer: id, PFF: t, net: n}
	cfg := routing.Config{Self: addr, Policy: n.Policy, Flooder: node, PFF: t, Clock: n.Clock, Runner: layertest.Runner{},
		Layer: Layer, Signer: id}
	if n.Config != nil {
		n.Config(&cfg)
	}
	if node.Router, err = routing.New(cfg); err != nil {
		return nil, err
	}
	n.nodes[addr] = node
	return node, nil
}

// Node returns the node addr, or nil.
func (n *Net) Node(addr layer.Addr) *Node { return n.nodes[addr] }

// Nodes returns every node, ascending by address.
func (n *Net) Nodes() []*Node {
	out := make([]*Node, 0, len(n.nodes))
	for _, nd := range n.nodes {
		out = append(out, nd)
	}
	slices.SortFunc(out, func(a, b *Node) int { return cmp.Compare(a.Addr, b.Addr) })
	return out
}

// Link connects a and b with the given metrics (a→b, b→a).
func (n *Net) Link(a, b layer.Addr, ab, ba uint32) error {
	na, nb := n.nodes[a], n.nodes[b]
	if na == nil || nb == nil {
		return fmt.Errorf("routingtest: link %d-%d: no such node", a, b)
	}
	if err := na.Router.NeighbourUp(routing.Neighbour{Addr: b, Port: pff.Port(b), Metric: ab}); err != nil {
		return err
	}
	if err := nb.Router.NeighbourUp(routing.Neighbour{Addr: a, Port: pff.Port(a), Metric: ba}); err != nil {
		return err
	}
	n.links[edge{min(a, b), max(a, b)}] = true
	return nil
}

// Unlink disconnects a and b; messages in flight between them are lost.
func (n *Net) Unlink(a, b layer.Addr) {
	delete(n.links, edge{min(a, b), max(a, b)})
	if na := n.nodes[a]; na != nil {
		na.Router.NeighbourDown(b)
	}
	if nb := n.nodes[b]; nb != nil {
		nb.Router.NeighbourDown(a)
	}
}

// Remove takes node addr out (as a crash): its links go down at its
// neighbours, and it stops taking part.
func (n *Net) Remove(addr layer.Addr) {
	for e := range n.links {
		switch addr {
		case e.a:
			n.Unlink(e.a, e.b)
		case e.b:
			n.Unlink(e.a, e.b)
		}
	}
	delete(n.nodes, addr)
}

// maxRounds bounds Flood: far more rounds than any network of the tests
// needs (one per hop of its diameter, and a few more).
const maxRounds = 10000

// Flood runs rounds of Flush-then-deliver until no message is in flight,
// and returns the number of rounds. It does not recompute routes.
func (n *Net) Flood() int {
	rounds := 0
	for {
		for _, nd := range n.Nodes() {
			nd.Router.Flush()
		}
		if len(n.queue) == 0 {
			return rounds
		}
		rounds++
		if rounds > maxRounds {
			// A flood that never settles is a livelock: fail with what is
			// in flight rather than hang the test binary.
			var in []string
			for _, d := range n.queue {
				desc := fmt.Sprintf("%d→%d", d.from, d.to)
				if m, err := routing.Unmarshal(d.msg); err == nil {
					for _, l := range m.LSUs {
						desc += fmt.Sprintf(" [origin %d seq %d]", l.Origin, l.Seq)
					}
				}
				in = append(in, desc)
			}
			panic(fmt.Sprintf("routingtest: flooding has not settled after %d rounds; in flight: %v", maxRounds, in))
		}
		q := n.queue
		n.queue = nil
		for _, d := range q {
			to := n.nodes[d.to]
			if to == nil || !n.links[edge{min(d.from, d.to), max(d.from, d.to)}] {
				continue // lost with the link
			}
			if err := to.Router.HandleMessage(d.from, d.msg); err != nil {
				panic(fmt.Sprintf("routingtest: %d→%d: %v", d.from, d.to, err))
			}
		}
	}
}

// Converge floods until quiet, then has every node recompute its routes.
func (n *Net) Converge() int {
	rounds := n.Flood()
	for _, nd := range n.Nodes() {
		nd.Router.Recompute(false)
	}
	return rounds
}

// Edge is an undirected link of a generated topology with its metrics.
type Edge struct {
	A, B   layer.Addr
	AB, BA uint32
}

// RandomTopology returns a connected random graph on addresses 1..nodes:
// a random spanning tree plus random extra links up to an average degree
// of avgDegree, metrics uniform in 1..maxMetric (asymmetric if asym).
func RandomTopology(rng *rand.Rand, nodes int, avgDegree float64, maxMetric uint32, asym bool) []Edge {
	seen := make(map[edge]bool)
	var out []Edge
	add := func(a, b layer.Addr) {
		e := edge{min(a, b), max(a, b)}
		if a == b || seen[e] {
			return
		}
		seen[e] = true
		ab := 1 + rng.Uint32N(maxMetric)
		ba := ab
		if asym {
			ba = 1 + rng.Uint32N(maxMetric)
		}
		out = append(out, Edge{a, b, ab, ba})
	}
	for i := 2; i <= nodes; i++ {
		add(layer.Addr(i), layer.Addr(1+rng.IntN(i-1)))
	}
	want := int(float64(nodes) * avgDegree / 2)
	for len(out) < want {
		add(layer.Addr(1+rng.IntN(nodes)), layer.Addr(1+rng.IntN(nodes)))
	}
	return out
}

// Build creates nodes 1..nodes and the given links.
func (n *Net) Build(nodes int, edges []Edge) error {
	for i := 1; i <= nodes; i++ {
		if _, err := n.Add(layer.Addr(i)); err != nil {
			return err
		}
	}
	for _, e := range edges {
		if err := n.Link(e.A, e.B, e.AB, e.BA); err != nil {
			return err
		}
	}
	return nil
}
