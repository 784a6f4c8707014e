// Package unicasttest is an in-process harness for unicast layers: many
// unicast IPCPs in one process, their N-1 flows made by a fake IRM
// (flowtest) whose links the test can cut and heal, and applications at
// the top as flowtest pipes. It is for tests and benchmarks only.
package unicasttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/enroll"
)

// Layer is the layer name of the harness's IPCPs.
const Layer = "uni"

// minOperationalWait is the least WaitOperational waits.
const minOperationalWait = 20 * time.Second

// PipeCap is the capacity (SDUs per direction) of every pipe the harness
// makes: N-1 flows and application flows.
const PipeCap = 512

// Net is a set of unicast IPCPs of one layer whose N-1 flows come from
// one fake IRM. Safe for concurrent use.
type Net struct {
	tb   testing.TB
	fake *flowtest.Broker
	// Template is the configuration every node starts from (Name,
	// Bootstrap, Enroll and Neighbours are set per node).
	Template unicast.Config

	over map[string]*Node // NewOver: upper IPCP name → the lower node it sits on

	mu     sync.Mutex
	nodes  map[string]*Node
	order  []string
	cut    map[[2]string]bool
	frozen map[[2]string]bool
	tamper map[[2]string]func([]byte) [][]byte // by (from, to)
	links  map[[2]string][]flow.Port           // open N-1 flow ends, by ordered pair
}

// Node is one IPCP of the Net and its fake IRM upcalls.
type Node struct {
	Name string
	IPCP *unicast.IPCP
	Up   *ipcptest.Upcalls
	net  *Net
}

// New returns an empty Net with fast timers; nodes are stopped at the
// end of the test.
func New(tb testing.TB) *Net {
	n := &Net{
		tb:   tb,
		fake: flowtest.NewBroker(PipeCap),
		Template: unicast.Config{
			Layer: Layer, RoutingTick: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
			Runner:    layertest.Runner{},
			KeepAlive: 200 * time.Millisecond, FlowTimeout: time.Second,
			LayerConfig: enroll.Config{Admission: admission.Policy{Mode: admission.ModeOpen}},
			// Bootstraps pick the DHT unless a test sets LayerConfig.Dir.
			Directories: map[string]dir.Builder{"dht": dht.Policy(dht.Config{RPCTimeout: 200 * time.Millisecond})},
		},
		nodes: make(map[string]*Node), cut: make(map[[2]string]bool), frozen: make(map[[2]string]bool), tamper: make(map[[2]string]func([]byte) [][]byte), links: make(map[[2]string][]flow.Port),
	}
	tb.Cleanup(n.Stop)
	return n
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Add creates and starts a node. bootstrap makes it the first member;
// otherwise it enrolls via the first of neighbours and keeps adjacencies
// with all of them. mod, if not nil, edits its configuration first.
func (n *Net) Add(name string, bootstrap bool, neighbours []string, mod func(*unicast.Config)) *Node {
	n.tb.Helper()
	cfg := n.Template
	cfg.Name = name
	cfg.Bootstrap = bootstrap
	cfg.Neighbours = slices.Clone(neighbours)
	if !bootstrap && len(neighbours) > 0 {
		cfg.Enroll = neighbours[0]
	}
	if !bootstrap {
		// The template's policy is the bootstrapper's choice; the others
		// take the layer's unless a test gives them one to expect.
		cfg.LayerConfig.Admission = admission.Policy{}
	}
	if mod != nil {
		mod(&cfg)
	}
	up := ipcptest.NewUpcalls(PipeCap)
	var lb flow.Broker = &linkBroker{Broker: n.fake.Program(name), net: n, self: name}
	if n.over != nil {
		under := n.over[name]
		if under == nil {
			n.tb.Fatalf("unicasttest: %s has no lower node", name)
		}
		lb = &overBroker{under: under}
	}
	proc, err := unicast.New(cfg, up, lb, nil)
	if err != nil {
		n.tb.Fatalf("unicast.New(%s): %v", name, err)
	}
	node := &Node{Name: name, IPCP: proc, Up: up, net: n}
	n.mu.Lock()
	n.nodes[name] = node
	n.order = append(n.order, name)
	n.mu.Unlock()
	if err := proc.Start(); err != nil {
		n.tb.Fatalf("Start(%s): %v", name, err)
	}
	return node
}

// Attacker returns a program on the nodes' lower layer that is no node:
// attack tests allocate N-1 flows to the IPCPs with it.
func (n *Net) Attacker(name string) flow.Broker { return n.fake.Program(name) }

// Node returns the node called name.
func (n *Net) Node(name string) *Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodes[name]
}

// Nodes returns the nodes in the order they were added.
func (n *Net) Nodes() []*Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*Node, 0, len(n.order))
	for _, name := range n.order {
		if nd := n.nodes[name]; nd != nil {
			out = append(out, nd)
		}
	}
	return out
}

// Cut closes every N-1 flow between a and b and refuses new ones until
// Heal: a link failure as both ends see it at once.
func (n *Net) Cut(a, b string) {
	k := pair(a, b)
	n.mu.Lock()
	n.cut[k] = true
	ps := n.links[k]
	delete(n.links, k)
	n.mu.Unlock()
	for _, p := range ps {
		p.Close()
	}
}

// Heal lets a and b connect again, and ends a Freeze.
func (n *Net) Heal(a, b string) {
	n.mu.Lock()
	delete(n.cut, pair(a, b))
	delete(n.frozen, pair(a, b))
	n.mu.Unlock()
}

// Freeze makes the link between a and b lose everything written to it,
// both ways, without closing a flow: a silent failure that only the
// hellos reveal.
func (n *Net) Freeze(a, b string) {
	n.mu.Lock()
	n.frozen[pair(a, b)] = true
	n.mu.Unlock()
}

func (n *Net) isFrozen(k [2]string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.frozen[k]
}

// Tamper makes every packet that from writes to to (on any of their N-1
// flows) go through fn first: what fn returns is written instead, in
// order (nothing: the packet is lost). fn may keep, change, repeat or
// hold back packets: a malicious forwarder as its next hop sees it. fn
// must not keep pkt beyond the call (copy it). nil ends the tampering.
func (n *Net) Tamper(from, to string, fn func(pkt []byte) [][]byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if fn == nil {
		delete(n.tamper, [2]string{from, to})
		return
	}
	n.tamper[[2]string{from, to}] = fn
}

// linkPort is an N-1 flow end whose writes vanish while its link is
// frozen, and go through the link's tampering function if it has one.
type linkPort struct {
	flow.Port
	net      *Net
	key      [2]string
	from, to string
}

func newLinkPort(p flow.Port, n *Net, self, peer string) *linkPort {
	return &linkPort{Port: p, net: n, key: pair(self, peer), from: self, to: peer}
}

// Write implements flow.Port.
func (p *linkPort) Write(b []byte, deadline time.Time) error {
	if p.net.isFrozen(p.key) {
		return nil
	}
	p.net.mu.Lock()
	fn := p.net.tamper[[2]string{p.from, p.to}]
	p.net.mu.Unlock()
	if fn == nil {
		return p.Port.Write(b, deadline)
	}
	for _, out := range fn(b) {
		if err := p.Port.Write(out, deadline); err != nil {
			return err
		}
	}
	return nil
}

// Links returns the open N-1 flow ends between a and b, both nodes'
// (management and data-transfer flows alike). Writing to one sends to the
// IPCP at the other end, as if that IPCP's neighbour had: for fault
// injection.
func (n *Net) Links(a, b string) []flow.Port {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.links[pair(a, b)])
}

// Kill stops a node (its flows close as it stops) and forgets it.
func (n *Net) Kill(name string) {
	n.mu.Lock()
	nd := n.nodes[name]
	delete(n.nodes, name)
	n.mu.Unlock()
	if nd != nil {
		nd.IPCP.Stop()
		nd.closeLinks()
	}
}

func (nd *Node) closeLinks() {
	n := nd.net
	n.mu.Lock()
	var ps []flow.Port
	for k, l := range n.links {
		if k[0] == nd.Name || k[1] == nd.Name {
			ps = append(ps, l...)
			delete(n.links, k)
		}
	}
	n.mu.Unlock()
	for _, p := range ps {
		p.Close()
	}
}

// Stop stops every node.
func (n *Net) Stop() {
	for _, nd := range n.Nodes() {
		n.Kill(nd.Name)
	}
}

// linkBroker is a node's lower broker: the fake IRM, with cuttable links.
type linkBroker struct {
	*flowtest.Broker
	net  *Net
	self string
}

func (b *linkBroker) record(peer string, p flow.Port) bool {
	k := pair(b.self, peer)
	b.net.mu.Lock()
	defer b.net.mu.Unlock()
	if b.net.cut[k] {
		return false
	}
	b.net.links[k] = append(b.net.links[k], p)
	return true
}

// Alloc implements flow.Broker.
func (b *linkBroker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	b.net.mu.Lock()
	cut := b.net.cut[pair(b.self, name)]
	b.net.mu.Unlock()
	if cut {
		return nil, flow.Info{}, fmt.Errorf("unicasttest: link %s-%s cut: %w", b.self, name, flow.ErrNotFound)
	}
	p, info, err := b.Broker.Alloc(ctx, name, q)
	if err != nil {
		return nil, info, err
	}
	if !b.record(name, p) {
		p.Close()
		return nil, flow.Info{}, fmt.Errorf("unicasttest: link %s-%s cut: %w", b.self, name, flow.ErrNotFound)
	}
	return newLinkPort(p, b.net, b.self, name), info, nil
}

// Accept implements flow.Broker.
func (b *linkBroker) Accept(ctx context.Context) (flow.Port, flow.Info, error) {
	for {
		p, info, err := b.Broker.Accept(ctx)
		if err != nil {
			return nil, info, err
		}
		if b.record(info.Remote, p) {
			return newLinkPort(p, b.net, b.self, info.Remote), info, nil
		}
		p.Close()
	}
}

// NewOver returns a Net whose nodes run over other unicast IPCPs: the
// node named k gets its N-1 flows from the IPCP of under[k] (its flows
// are allocated in, and accepted from, that lower layer). Cut and Heal
// do not apply; cut the lower layer instead.
func NewOver(tb testing.TB, under map[string]*Node) *Net {
	n := New(tb)
	n.over = under
	return n
}

// overBroker is a flow.Broker over a lower unicast IPCP: Bind registers
// in it, Alloc allocates through it, Accept takes what its fake IRM
// accepted.
type overBroker struct {
	under *Node
}

var _ flow.Broker = (*overBroker)(nil)

// Alloc implements flow.Broker.
func (b *overBroker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	app, ipc := flowtest.Pipe(PipeCap)
	if err := b.under.IPCP.Alloc(ctx, ipcp.AllocReq{Dst: name, QoS: q}, ipc); err != nil {
		app.Close()
		ipc.Close()
		return nil, flow.Info{}, err
	}
	return app, flow.Info{Remote: name, Layer: Layer, QoS: q}, nil
}

// Bind implements flow.Broker: the name is registered in the lower layer.
func (b *overBroker) Bind(ctx context.Context, name string) error {
	return b.under.IPCP.Register(ctx, name)
}

// Unbind implements flow.Broker.
func (b *overBroker) Unbind(ctx context.Context, name string) error {
	return b.under.IPCP.Unregister(ctx, name)
}

// Accept implements flow.Broker.
func (b *overBroker) Accept(ctx context.Context) (flow.Port, flow.Info, error) {
	select {
	case a := <-b.under.Up.Accepted:
		return a.Port, flow.Info{Local: a.Req.Dst, Remote: a.Req.Src, Layer: Layer, QoS: a.Req.QoS}, nil
	case <-ctx.Done():
		return nil, flow.Info{}, fmt.Errorf("unicasttest: accept: %w", ctx.Err())
	}
}

// Join implements flow.Broker: there is no broadcast layer here.
func (b *overBroker) Join(context.Context, string) (flow.Port, flow.Info, error) {
	return nil, flow.Info{}, fmt.Errorf("unicasttest: join: %w", flow.ErrNoLayer)
}

// Close implements flow.Broker.
func (b *overBroker) Close() error { return nil }

// WaitOperational waits until every node is a member with routes to every
// other node.
//
// It is a precondition, not a measurement: it waits at least
// minOperationalWait whatever timeout says, since enrollments in turn
// on a loaded two-core machine take longer than a test's typical 5 s.
func (n *Net) WaitOperational(timeout time.Duration) {
	n.tb.Helper()
	timeout = max(timeout, minOperationalWait)
	n.WaitFor(timeout, "all nodes operational with full routing tables", func() bool {
		nodes := n.Nodes()
		for _, nd := range nodes {
			if !nd.IPCP.Operational() || len(nd.IPCP.Routes()) != len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

// WaitFor polls cond every 5 ms until it holds or timeout passes.
func (n *Net) WaitFor(timeout time.Duration, what string, cond func() bool) time.Duration {
	n.tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			n.tb.Fatalf("unicasttest: %s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// Register registers name with the node's IPCP.
func (nd *Node) Register(name string) {
	nd.net.tb.Helper()
	if err := nd.IPCP.Register(context.Background(), name); err != nil {
		nd.net.tb.Fatalf("%s: register %q: %v", nd.Name, name, err)
	}
}

// Alloc allocates a flow from this node to name and returns the
// application's end.
func (nd *Node) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, error) {
	app, ipc := flowtest.Pipe(PipeCap)
	if err := nd.IPCP.Alloc(ctx, ipcp.AllocReq{Dst: name, Src: nd.Name + ".app", QoS: q}, ipc); err != nil {
		app.Close()
		ipc.Close()
		return nil, err
	}
	return app, nil
}

// Accept returns the application end of the next flow the node's fake
// IRM accepted.
func (nd *Node) Accept(timeout time.Duration) (ipcptest.Accepted, error) {
	select {
	case a := <-nd.Up.Accepted:
		return a, nil
	case <-time.After(timeout):
		return ipcptest.Accepted{}, fmt.Errorf("unicasttest: %s: no flow accepted in %v: %w", nd.Name, timeout, flow.ErrTimeout)
	}
}

// Graph is an undirected topology: node i's edges to lower-numbered nodes.
type Graph struct {
	N     int
	Edges [][2]int // i < j
}

// RandomGraph returns a connected random graph of n nodes: a random
// spanning tree plus extra random edges.
func RandomGraph(r *rand.Rand, n, extra int) Graph {
	g := Graph{N: n}
	seen := map[[2]int]bool{}
	for j := 1; j < n; j++ {
		i := r.IntN(j)
		g.Edges = append(g.Edges, [2]int{i, j})
		seen[[2]int{i, j}] = true
	}
	for k := 0; k < extra*4 && extra > 0; k++ {
		i, j := r.IntN(n), r.IntN(n)
		if i == j {
			continue
		}
		if i > j {
			i, j = j, i
		}
		if seen[[2]int{i, j}] {
			continue
		}
		seen[[2]int{i, j}] = true
		g.Edges = append(g.Edges, [2]int{i, j})
		extra--
	}
	return g
}

// NodeName is the harness's name for node i of a Graph.
func NodeName(i int) string { return fmt.Sprintf("n%d.%s", i, Layer) }

// Build adds g's nodes in order: node 0 bootstraps, each other node
// enrolls via its first lower-numbered neighbour and connects to all of
// them (a spanning tree's parent comes first).
func (n *Net) Build(g Graph, mod func(i int, c *unicast.Config)) {
	lower := make([][]string, g.N)
	for _, e := range g.Edges {
		lower[e[1]] = append(lower[e[1]], NodeName(e[0]))
	}
	for i := 0; i < g.N; i++ {
		var m func(*unicast.Config)
		if mod != nil {
			m = func(c *unicast.Config) { mod(i, c) }
		}
		n.Add(NodeName(i), i == 0, lower[i], m)
	}
}

// Distances returns all-pairs shortest path lengths (hops) by
// Floyd–Warshall; unreachable is -1.
func (g Graph) Distances() [][]int {
	const inf = 1 << 30
	d := make([][]int, g.N)
	for i := range d {
		d[i] = make([]int, g.N)
		for j := range d[i] {
			if i != j {
				d[i][j] = inf
			}
		}
	}
	for _, e := range g.Edges {
		d[e[0]][e[1]], d[e[1]][e[0]] = 1, 1
	}
	for k := 0; k < g.N; k++ {
		for i := 0; i < g.N; i++ {
			for j := 0; j < g.N; j++ {
				if d[i][k]+d[k][j] < d[i][j] {
					d[i][j] = d[i][k] + d[k][j]
				}
			}
		}
	}
	for i := range d {
		for j := range d[i] {
			if d[i][j] == inf {
				d[i][j] = -1
			}
		}
	}
	return d
}

// Addrs maps each node's address to its name.
func (n *Net) Addrs() map[layer.Addr]string {
	out := map[layer.Addr]string{}
	for _, nd := range n.Nodes() {
		out[nd.IPCP.Addr()] = nd.Name
	}
	return out
}
