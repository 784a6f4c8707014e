package testnet

import (
	"fmt"
	"strings"
)

// LinkShim returns the shim IPCP that host uses on link number link (an
// index into Topology.Links) to peer: its kind ("eth", "udp") and the
// body of its [ipcp.KIND] table.
type LinkShim func(host, peer string, link int) (kind, table string)

// UnicastOpts shapes the configurations UnicastConfigs writes.
type UnicastOpts struct {
	Layer     string            // the unicast layer's name (default "uni")
	NodeKeys  string            // extra [node] keys of every host (log = true, ...)
	IRM       string            // body of the [irm] table, if any
	LayerKeys string            // extra [ipcp.unicast] keys of the bootstrapping host (hello, dead, routing, ...)
	HostKeys  string            // extra [ipcp.unicast] keys of every host (routing_tick, keepalive, ...)
	Extra     map[string]string // TOML appended to a host's configuration
}

// UnicastIPCP is the name of host's IPCP in the unicast layer.
func UnicastIPCP(host, layer string) string { return host + "." + layer }

// LinkLayer is the name of the shim layer of link number i.
func LinkLayer(i int) string { return fmt.Sprintf("l%d", i) }

// UnicastConfigs returns, per host of t, a node configuration with one
// shim IPCP per link (in a layer of its own, LinkLayer) and one unicast
// IPCP on top of all of them. The first host bootstraps; every other
// enrolls through its parent in a breadth-first tree from the first (a
// direct neighbour: enrolling allocates a flow to the member's IPCP name
// over a shim). Each link's adjacency is listed at one end only: the end
// further from the first host (or later in Hosts), which becomes a
// member later and so dials at once instead of waiting out a refusal's
// backoff.
func UnicastConfigs(t Topology, shim LinkShim, o UnicastOpts) map[string]string {
	if o.Layer == "" {
		o.Layer = "uni"
	}
	depth, parent := t.bfs()
	order := make(map[string]int, len(t.Hosts))
	for i, h := range t.Hosts {
		order[h] = i
	}
	neighbours := make(map[string][]string)
	for _, l := range t.Links {
		a, b := l[0], l[1]
		if depth[a] > depth[b] || (depth[a] == depth[b] && order[a] > order[b]) {
			a, b = b, a
		}
		neighbours[b] = append(neighbours[b], UnicastIPCP(a, o.Layer))
	}
	cfgs := make(map[string]string, len(t.Hosts))
	for hi, h := range t.Hosts {
		var s strings.Builder
		fmt.Fprintf(&s, "[node]\nname = %q\n%s\n", h, o.NodeKeys)
		if o.IRM != "" {
			fmt.Fprintf(&s, "\n[irm]\n%s\n", o.IRM)
		}
		var lower []string
		for i, l := range t.Links {
			peer := ""
			switch h {
			case l[0]:
				peer = l[1]
			case l[1]:
				peer = l[0]
			default:
				continue
			}
			kind, table := shim(h, peer, i)
			fmt.Fprintf(&s, "\n[[ipcp]]\nkind = %q\nname = %q\nlayer = %q\n[ipcp.%s]\n%s\n",
				kind, h+"."+LinkLayer(i), LinkLayer(i), kind, table)
			lower = append(lower, LinkLayer(i))
		}
		fmt.Fprintf(&s, "\n[[ipcp]]\nkind = \"unicast\"\nname = %q\nlayer = %q\n[ipcp.unicast]\nlower = %s\n",
			UnicastIPCP(h, o.Layer), o.Layer, tomlList(lower))
		if hi == 0 {
			fmt.Fprintf(&s, "bootstrap = true\nadmission = \"open\"\n%s\n", o.LayerKeys)
		} else {
			fmt.Fprintf(&s, "enroll = %q\n", UnicastIPCP(parent[h], o.Layer))
		}
		fmt.Fprintf(&s, "neighbours = %s\n%s\n", tomlList(neighbours[h]), o.HostKeys)
		if x := o.Extra[h]; x != "" {
			fmt.Fprintf(&s, "\n%s\n", x)
		}
		cfgs[h] = s.String()
	}
	return cfgs
}

// bfs returns each host's hop count from the first host and its parent
// in a breadth-first tree.
func (t Topology) bfs() (depth map[string]int, parent map[string]string) {
	depth, parent = make(map[string]int), make(map[string]string)
	if len(t.Hosts) == 0 {
		return
	}
	q := []string{t.Hosts[0]}
	depth[t.Hosts[0]] = 0
	for len(q) > 0 {
		h := q[0]
		q = q[1:]
		for _, nb := range t.Neighbours(h) {
			if _, seen := depth[nb]; !seen {
				depth[nb] = depth[h] + 1
				parent[nb] = h
				q = append(q, nb)
			}
		}
	}
	return
}

// Hops returns the number of links on a shortest path from a to b, or -1.
func (t Topology) Hops(a, b string) int {
	d := Topology{Hosts: append([]string{a}, t.Hosts...), Links: t.Links}
	depth, _ := d.bfs()
	if n, ok := depth[b]; ok {
		return n
	}
	return -1
}

func tomlList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// EthShim is a LinkShim for the Ethernet shim on the veth of each link.
func (ns *Netns) EthShim(host, peer string, _ int) (string, string) {
	return "eth", fmt.Sprintf("interface = %q", ns.Iface(host, peer))
}
