package routing

import (
	"math"
	"math/bits"
	"slices"

	"github.com/ouronet/ouro/layer"
)

// Route is what the shortest-path computation found for one destination.
type Route struct {
	Dst layer.Addr
	// Metric is the cost of the shortest path from this IPCP.
	Metric uint64
	// NextHops are the neighbours on a shortest path (the equal-cost
	// set), ascending; NextHops[0] is the primary next hop.
	NextHops []layer.Addr
	// Alternate is a loop-free alternate for the primary (RFC 5286 basic
	// condition D(N,D) < D(N,S) + D(S,D)), 0 if there is none.
	Alternate layer.Addr
}

const inf = math.MaxUint64

// graph is the two-way-checked topology in compressed adjacency form.
type graph struct {
	addrs []layer.Addr       // node index → address, ascending
	index map[layer.Addr]int // address → node index
	off   []int              // edges of u are dst[off[u]:off[u+1]]
	dst   []int
	cost  []uint64
}

// buildGraph makes the graph from the LSDB's link lists: u→v exists when
// u lists v and v lists u (a one-sided claim, such as a dead node's stale
// LSU, carries no traffic); its cost is what u says.
func buildGraph(links map[layer.Addr][]Link) *graph {
	g := &graph{index: make(map[layer.Addr]int, len(links))}
	g.addrs = make([]layer.Addr, 0, len(links))
	for a := range links {
		g.addrs = append(g.addrs, a)
	}
	slices.Sort(g.addrs)
	for i, a := range g.addrs {
		g.index[a] = i
	}
	g.off = make([]int, len(g.addrs)+1)
	for i, a := range g.addrs {
		for _, l := range links[a] {
			j, ok := g.index[l.Neighbour]
			if !ok || !listsLink(links[l.Neighbour], a) {
				continue
			}
			g.dst = append(g.dst, j)
			g.cost = append(g.cost, uint64(l.Metric))
		}
		g.off[i+1] = len(g.dst)
	}
	return g
}

func listsLink(ls []Link, to layer.Addr) bool {
	_, ok := slices.BinarySearchFunc(ls, to, func(l Link, a layer.Addr) int {
		switch {
		case l.Neighbour < a:
			return -1
		case l.Neighbour > a:
			return 1
		}
		return 0
	})
	return ok
}

// heap is a binary min-heap of (dist, node) with lazy deletion.
type heap struct{ d, n []uint64 }

func (h *heap) push(d uint64, n int) {
	h.d, h.n = append(h.d, d), append(h.n, uint64(n))
	for i := len(h.d) - 1; i > 0; {
		p := (i - 1) / 2
		if h.d[p] <= h.d[i] {
			break
		}
		h.swap(i, p)
		i = p
	}
}

func (h *heap) pop() (uint64, int) {
	d, n := h.d[0], h.n[0]
	last := len(h.d) - 1
	h.swap(0, last)
	h.d, h.n = h.d[:last], h.n[:last]
	for i := 0; ; {
		l, s := 2*i+1, i
		if l < last && h.d[l] < h.d[s] {
			s = l
		}
		if l+1 < last && h.d[l+1] < h.d[s] {
			s = l + 1
		}
		if s == i {
			break
		}
		h.swap(i, s)
		i = s
	}
	return d, int(n)
}

func (h *heap) swap(i, j int) {
	h.d[i], h.d[j] = h.d[j], h.d[i]
	h.n[i], h.n[j] = h.n[j], h.n[i]
}

// dijkstra fills dist with shortest distances from src. If fh is not nil
// it also tracks, per node, the set of src's neighbours (by index into
// nbr, a bitset of words uint64s per node) that start a shortest path.
func (g *graph) dijkstra(src int, dist []uint64, h *heap, nbrOf []int, fh []uint64, words int) {
	for i := range dist {
		dist[i] = inf
	}
	clear(fh)
	dist[src] = 0
	h.d, h.n = h.d[:0], h.n[:0]
	h.push(0, src)
	for len(h.d) > 0 {
		d, u := h.pop()
		if d > dist[u] {
			continue
		}
		for e := g.off[u]; e < g.off[u+1]; e++ {
			v, nd := g.dst[e], d+g.cost[e]
			if nd > dist[v] {
				continue
			}
			if nd < dist[v] {
				dist[v] = nd
				h.push(nd, v)
				if fh != nil {
					clear(fh[v*words : (v+1)*words])
				}
			}
			if fh == nil {
				continue
			}
			if u == src {
				k := nbrOf[v]
				fh[v*words+k/64] |= 1 << (k % 64)
			} else {
				for w := range words {
					fh[v*words+w] |= fh[u*words+w]
				}
			}
		}
	}
}

// computeRoutes runs the shortest-path computation from self over links
// and returns a route for every reachable destination, ascending by
// address.
func computeRoutes(self layer.Addr, links map[layer.Addr][]Link) []Route {
	g := buildGraph(links)
	s, ok := g.index[self]
	if !ok {
		return nil
	}
	n := len(g.addrs)
	// self's neighbours in the graph, numbered 0..k-1.
	nbrOf := make([]int, n)
	var nbrs []int
	var nbrCost []uint64
	for e := g.off[s]; e < g.off[s+1]; e++ {
		nbrOf[g.dst[e]] = len(nbrs)
		nbrs = append(nbrs, g.dst[e])
		nbrCost = append(nbrCost, g.cost[e])
	}
	if len(nbrs) == 0 {
		return nil
	}
	words := (len(nbrs) + 63) / 64
	fh := make([]uint64, n*words)
	distS := make([]uint64, n)
	var h heap
	g.dijkstra(s, distS, &h, nbrOf, fh, words)
	// Distances from each neighbour, for loop-free alternates.
	distN := make([]uint64, len(nbrs)*n)
	for k, v := range nbrs {
		g.dijkstra(v, distN[k*n:(k+1)*n], &h, nil, nil, 0)
	}
	routes := make([]Route, 0, n-1)
	hops := make([]layer.Addr, 0, len(nbrs)) // reused per route, cloned out
	for d := range n {
		if d == s || distS[d] == inf {
			continue
		}
		hops = hops[:0]
		for w := range words {
			for b := fh[d*words+w]; b != 0; b &= b - 1 {
				hops = append(hops, g.addrs[nbrs[w*64+bits.TrailingZeros64(b)]])
			}
		}
		slices.Sort(hops)
		r := Route{Dst: g.addrs[d], Metric: distS[d], NextHops: slices.Clone(hops)}
		primary := hops[0]
		best := uint64(inf)
		for k, v := range nbrs {
			if g.addrs[v] == primary {
				continue
			}
			dnd, dns := distN[k*n+d], distN[k*n+s]
			if dnd == inf || dns == inf || dnd >= dns+distS[d] {
				continue // not loop-free
			}
			if c := nbrCost[k] + dnd; c < best || (c == best && g.addrs[v] < r.Alternate) {
				best, r.Alternate = c, g.addrs[v]
			}
		}
		routes = append(routes, r)
	}
	return routes
}
