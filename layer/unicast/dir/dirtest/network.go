package dirtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
)

// NetConfig configures a Network.
type NetConfig struct {
	// Loss is the probability that a message is silently dropped.
	Loss float64
	// Seed seeds the loss decisions.
	Seed uint64
	// Bootstrap, if positive, makes Members return only the member itself
	// and the first Bootstrap members to join (still present): a classic
	// Kademlia join through a few known nodes. Zero returns every member,
	// as routing does in a unicast layer.
	Bootstrap int
	// Workers is the number of delivery goroutines (default 2).
	Workers int
}

// Network is an in-process network of directory members: each member's
// dir.Env.Send queues the message; delivery goroutines call the
// destination's Handle, one call at a time per member, as the IPCP does.
// Close stops the goroutines. Safe for concurrent use.
type Network struct {
	cfg NetConfig

	sent, delivered, lost atomic.Uint64

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []envelope
	closed  bool
	members map[layer.Addr]*member
	order   []layer.Addr // join order
	gone    map[layer.Addr]bool
	rng     *rand.Rand
	wg      sync.WaitGroup
}

type envelope struct {
	src, dst layer.Addr
	msg      []byte
}

type member struct {
	net  *Network
	addr layer.Addr
	mu   sync.Mutex // one Handle at a time
	dir  dir.Directory
}

// NewNetwork returns a running network with no members.
func NewNetwork(cfg NetConfig) *Network {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	n := &Network{cfg: cfg, members: map[layer.Addr]*member{}, gone: map[layer.Addr]bool{},
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x6f75726f))}
	n.cond = sync.NewCond(&n.mu)
	n.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go n.deliver()
	}
	return n
}

// Env adds a member at a and returns its dir.Env; Attach gives it its
// directory. Adding an address twice is flow.ErrExists.
func (n *Network) Env(a layer.Addr) (dir.Env, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a == 0 || n.members[a] != nil {
		return nil, fmt.Errorf("dirtest: member %d: %w", a, flow.ErrExists)
	}
	m := &member{net: n, addr: a}
	n.members[a] = m
	n.order = append(n.order, a)
	delete(n.gone, a)
	return m, nil
}

// Attach makes d the directory that receives the messages sent to a.
func (n *Network) Attach(a layer.Addr, d dir.Directory) {
	n.mu.Lock()
	m := n.members[a]
	n.mu.Unlock()
	if m != nil {
		m.mu.Lock()
		m.dir = d
		m.mu.Unlock()
	}
}

// Leave removes the member at a: messages to it are lost from now on.
// If silent, Send to it succeeds (the message vanishes, as when a member
// crashed and routing has not noticed yet); otherwise Send to it is
// flow.ErrNotFound (routing knows it left). Leave does not stop a's
// directory; its own Sends fail with flow.ErrClosed.
func (n *Network) Leave(a layer.Addr, silent bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.members, a)
	n.order = slices.DeleteFunc(n.order, func(x layer.Addr) bool { return x == a })
	if silent {
		n.gone[a] = true
	}
}

// Members returns the present members' addresses, ascending.
func (n *Network) Members() []layer.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]layer.Addr, 0, len(n.members))
	for a := range n.members {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// NetStats are the network's counters.
type NetStats struct {
	Sent      uint64 // messages accepted by Send
	Delivered uint64 // messages handed to a Handle
	Lost      uint64 // messages dropped (Loss, or to a member that left)
}

// Stats returns the counters.
func (n *Network) Stats() NetStats {
	return NetStats{Sent: n.sent.Load(), Delivered: n.delivered.Load(), Lost: n.lost.Load()}
}

// Idle reports whether no message is queued.
func (n *Network) Idle() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue) == 0
}

// Close stops delivery and waits for the delivery goroutines; queued
// messages are dropped. Idempotent.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	n.queue = nil
	n.cond.Broadcast()
	n.mu.Unlock()
	n.wg.Wait()
}

func (n *Network) deliver() {
	defer n.wg.Done()
	for {
		n.mu.Lock()
		for len(n.queue) == 0 && !n.closed {
			n.cond.Wait()
		}
		if n.closed {
			n.mu.Unlock()
			return
		}
		e := n.queue[0]
		n.queue[0] = envelope{}
		n.queue = n.queue[1:]
		m := n.members[e.dst]
		n.mu.Unlock()
		if m == nil {
			n.lost.Add(1)
			continue
		}
		m.mu.Lock()
		if m.dir != nil {
			m.dir.Handle(e.src, e.msg)
			n.delivered.Add(1)
		} else {
			n.lost.Add(1)
		}
		m.mu.Unlock()
	}
}

// Self implements dir.Env.
func (m *member) Self() layer.Addr { return m.addr }

// Members implements dir.Env.
func (m *member) Members() []layer.Addr {
	n := m.net
	if n.cfg.Bootstrap <= 0 {
		return n.Members()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []layer.Addr{m.addr}
	for _, a := range n.order {
		if len(out) > n.cfg.Bootstrap {
			break
		}
		if a != m.addr {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Send implements dir.Env.
func (m *member) Send(dst layer.Addr, msg []byte) error {
	if len(msg) > dir.MaxMsg {
		return fmt.Errorf("dirtest: send of %d bytes: %w", len(msg), flow.ErrTooBig)
	}
	n := m.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.members[m.addr] != m {
		return fmt.Errorf("dirtest: %d left: %w", m.addr, flow.ErrClosed)
	}
	if n.members[dst] == nil {
		if n.gone[dst] {
			n.sent.Add(1)
			n.lost.Add(1)
			return nil
		}
		return fmt.Errorf("dirtest: no route to %d: %w", dst, flow.ErrNotFound)
	}
	n.sent.Add(1)
	if n.cfg.Loss > 0 && n.rng.Float64() < n.cfg.Loss {
		n.lost.Add(1)
		return nil
	}
	n.queue = append(n.queue, envelope{src: m.addr, dst: dst, msg: slices.Clone(msg)})
	n.cond.Signal()
	return nil
}
