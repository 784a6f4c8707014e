package unicast_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/eth/ethtest"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// ethHearer is the unicast IPCP's view of its lower Ethernet shim: the
// names the shim heard announced (in a node the IRM's "heard" command
// carries the question to the shim's component).
type ethHearer struct{ p *eth.IPCP }

func (h ethHearer) Heard(_ context.Context, names []string) ([]string, error) {
	return h.p.Heard(names), nil
}

// startShim starts an Ethernet shim on hub's segment that announces
// name every 50 ms, as a unicast IPCP registering its name in it would.
func startShim(t *testing.T, hub *ethtest.Hub, name string) *eth.IPCP {
	t.Helper()
	p, err := eth.New(eth.Config{Runner: layertest.Runner{}, Layer: "eth.seg", Name: "eth." + name, Device: hub.NewPort(),
		Announce: 50 * time.Millisecond}, ipcptest.NewUpcalls(16))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if err := p.Register(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return p
}

// neighbours lists nd's neighbours' names from its "members" table.
func neighbours(t *testing.T, nd *unicasttest.Node) []string {
	t.Helper()
	r, err := nd.IPCP.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: "members"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, row := range r.Table.Rows {
		if row[2] == "yes" {
			out = append(out, row[1])
		}
	}
	slices.Sort(out)
	return out
}

// TestDiscover: n0, n1 and n2 share one Ethernet segment (a hub); n3 is
// on another. n1, n2 and n3 are told only to enroll via n0 (the lower
// flows themselves are the test net's, reachable between any two). With
// Discover every pair on the segment becomes adjacent — n1 and n2 find
// each other from what their shims heard — and nobody connects to n3,
// a member not heard. Without Discover only the enrollment adjacencies
// exist.
func TestDiscover(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			n := unicasttest.New(t)
			seg, other := ethtest.NewHub(), ethtest.NewHub()
			shims := make([]*eth.IPCP, 4)
			mod := func(i int, c *unicast.Config) {
				hub := seg
				if i == 3 {
					hub = other
				}
				shims[i] = startShim(t, hub, unicasttest.NodeName(i))
				c.Discover = on
				c.Heard = ethHearer{shims[i]}
				c.DiscoverTick = 100 * time.Millisecond
			}
			n.Build(unicasttest.Graph{N: 4, Edges: [][2]int{{0, 1}, {0, 2}, {0, 3}}}, mod)
			n.WaitOperational(10 * time.Second)
			name := unicasttest.NodeName
			want := map[string][]string{
				name(0): {name(1), name(2), name(3)},
				name(1): {name(0)},
				name(2): {name(0)},
				name(3): {name(0)},
			}
			if on {
				want[name(1)] = []string{name(0), name(2)}
				want[name(2)] = []string{name(0), name(1)}
				n.WaitFor(10*time.Second, "n1 and n2 adjacent", func() bool {
					return slices.Equal(neighbours(t, n.Node(name(1))), want[name(1)]) &&
						slices.Equal(neighbours(t, n.Node(name(2))), want[name(2)])
				})
			}
			// Several discovery rounds: nothing more is connected.
			time.Sleep(500 * time.Millisecond)
			for nm, w := range want {
				if got := neighbours(t, n.Node(nm)); !slices.Equal(got, w) {
					t.Errorf("discover %v: %s's neighbours are %v, want %v", on, nm, got, w)
				}
			}
			var found uint64
			for _, nd := range n.Nodes() {
				found += nd.IPCP.Stats().Discovered
			}
			// With discovery 2 (n1 and n2 dialled each other), 1 (both
			// dialled, one kept) or more (under load an adjacency is lost
			// and dialled again; the neighbours above are what counts).
			if on && found == 0 || !on && found != 0 {
				t.Errorf("discover %v: %d adjacencies connected by discovery", on, found)
			}
			// The routes follow: n1 reaches n2 in one hop.
			if on {
				n1, n2 := n.Node(name(1)).IPCP, n.Node(name(2)).IPCP
				n.WaitFor(10*time.Second, "direct route n1 to n2", func() bool {
					for _, r := range n1.Routes() {
						if r.Dst == n2.Addr() {
							return r.Metric == 1 && slices.Equal(r.NextHops, []layer.Addr{n2.Addr()})
						}
					}
					return false
				})
				// A discovered neighbour leaves the segment: the adjacency
				// dies, and once the member that dialled it no longer hears it
				// on its shim, it stops redialling. (Both may have dialled:
				// the one that did and stays is the dialer.)
				dialer, gone := n1, 2
				if n1.Stats().Discovered == 0 {
					dialer, gone = n2, 1
				}
				shims[gone].Stop()
				n.Kill(name(gone))
				n.WaitFor(10*time.Second, "the dialer forgets the neighbour gone", func() bool { return dialer.Stats().Forgotten == 1 })
				time.Sleep(100 * time.Millisecond) // a dial in progress ends
				dials := dialer.Stats().Dials
				time.Sleep(time.Second) // ten times the redial backoff's ceiling
				if d := dialer.Stats().Dials - dials; d != 0 {
					t.Errorf("%d dials after forgetting the neighbour gone, want 0", d)
				}
			}
		})
	}
}
