package testnet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Topology is a set of hosts joined by point-to-point links.
type Topology struct {
	Hosts []string
	Links [][2]string
}

// Line returns hosts h1..hn in a line.
func Line(n int) Topology {
	var t Topology
	for i := 1; i <= n; i++ {
		t.Hosts = append(t.Hosts, fmt.Sprintf("h%d", i))
		if i > 1 {
			t.Links = append(t.Links, [2]string{fmt.Sprintf("h%d", i-1), fmt.Sprintf("h%d", i)})
		}
	}
	return t
}

// Ring returns hosts h1..hn in a ring.
func Ring(n int) Topology {
	t := Line(n)
	t.Links = append(t.Links, [2]string{fmt.Sprintf("h%d", n), "h1"})
	return t
}

// Diamond returns h1 joined to h4 through h2 and through h3.
func Diamond() Topology {
	return Topology{
		Hosts: []string{"h1", "h2", "h3", "h4"},
		Links: [][2]string{{"h1", "h2"}, {"h1", "h3"}, {"h2", "h4"}, {"h3", "h4"}},
	}
}

// Neighbours returns the hosts linked to h.
func (t Topology) Neighbours(h string) []string {
	var ns []string
	for _, l := range t.Links {
		switch h {
		case l[0]:
			ns = append(ns, l[1])
		case l[1]:
			ns = append(ns, l[0])
		}
	}
	return ns
}

// Netns is a Topology built from network namespaces (one per host) and
// veth pairs (one per link), created by this process and removed by
// Close. No addresses are configured: the links carry raw Ethernet.
type Netns struct {
	Topology
	tag string
	// ifaces[host][peer] is host's interface on its link to peer.
	ifaces map[string]map[string]string
}

// NetnsAvailable reports why namespaces cannot be built here, or nil.
func NetnsAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces and veth pairs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("needs ip from iproute2 (apt-get install iproute2)")
	}
	return nil
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BuildNetns creates the namespaces and links of t. Names carry tag
// (keep it short: interface names are at most 15 bytes) so that parallel
// runs do not collide.
func BuildNetns(t Topology, tag string) (*Netns, error) {
	if err := NetnsAvailable(); err != nil {
		return nil, err
	}
	ns := &Netns{Topology: t, tag: tag, ifaces: make(map[string]map[string]string)}
	for _, h := range t.Hosts {
		if err := ipCmd("netns", "add", ns.Name(h)); err != nil {
			ns.Close()
			return nil, err
		}
		ns.ifaces[h] = make(map[string]string)
	}
	for i, l := range t.Links {
		a, b := fmt.Sprintf("o%s%da", tag, i), fmt.Sprintf("o%s%db", tag, i)
		if len(a) > 15 {
			ns.Close()
			return nil, fmt.Errorf("testnet: interface name %q too long: shorten the tag", a)
		}
		if err := ipCmd("link", "add", a, "netns", ns.Name(l[0]), "type", "veth", "peer", "name", b, "netns", ns.Name(l[1])); err != nil {
			ns.Close()
			return nil, err
		}
		ns.ifaces[l[0]][l[1]] = a
		ns.ifaces[l[1]][l[0]] = b
		for _, e := range [][2]string{{l[0], a}, {l[1], b}} {
			if err := ipCmd("-n", ns.Name(e[0]), "link", "set", e[1], "up"); err != nil {
				ns.Close()
				return nil, err
			}
		}
	}
	return ns, nil
}

// Name returns the namespace of host h.
func (ns *Netns) Name(h string) string { return "ouro-" + ns.tag + "-" + h }

// Iface returns h's interface on its link to peer.
func (ns *Netns) Iface(h, peer string) string { return ns.ifaces[h][peer] }

// SetLink brings the link between a and b down or up (both ends), as a
// cut cable would.
func (ns *Netns) SetLink(a, b string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	for _, e := range [][2]string{{a, b}, {b, a}} {
		if err := ipCmd("-n", ns.Name(e[0]), "link", "set", ns.Iface(e[0], e[1]), state); err != nil {
			return err
		}
	}
	return nil
}

// Close removes every namespace (and with them the veth pairs).
func (ns *Netns) Close() {
	for _, h := range ns.Hosts {
		exec.Command("ip", "netns", "del", ns.Name(h)).Run()
	}
}
