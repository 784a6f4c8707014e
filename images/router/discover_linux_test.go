package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

// TestDiscoverEthernet runs three node processes on one Ethernet segment
// (a bridge in a namespace of its own, "sw", with a veth to each host),
// each with an eth shim on it and a unicast IPCP above it configured with
// enroll only: h1 bootstraps, h2 and h3 enroll via h1, and no neighbours
// are configured. With discover = true h2 and h3 find each other from
// what their shims heard announced and become adjacent (a one-hop route
// between them); without it only the enrollment adjacencies exist and
// h2 reaches h3 through h1.
func TestDiscoverEthernet(t *testing.T) {
	needNetns(t)
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			hosts := []string{"h1", "h2", "h3"}
			topo := testnet.Topology{Hosts: append([]string{"sw"}, hosts...)}
			for _, h := range hosts {
				topo.Links = append(topo.Links, [2]string{"sw", h})
			}
			ns := buildNetns(t, topo)
			sw := ns.Name("sw")
			bridge := [][]string{{"link", "add", "br0", "type", "bridge", "forward_delay", "0"}, {"link", "set", "br0", "up"}}
			for _, h := range hosts {
				bridge = append(bridge, []string{"link", "set", ns.Iface("sw", h), "master", "br0"})
			}
			for _, args := range bridge {
				if out, err := exec.Command("ip", append([]string{"-n", sw}, args...)...).CombinedOutput(); err != nil {
					t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
				}
			}
			l := &layerNet{t: t, n: newNet(t), topo: testnet.Topology{Hosts: hosts}, ns: ns, layer: "uni", nodes: map[string]*testnet.Node{}}
			for i, h := range hosts {
				role := `enroll = "h1.uni"`
				if i == 0 {
					role = "bootstrap = true\nadmission = \"open\""
				}
				cfg := fmt.Sprintf(`[node]
name = %q
[irm]
%s
[[ipcp]]
kind = "eth"
name = "%s.seg"
layer = "seg"
[ipcp.eth]
interface = %q
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["seg"]
%s
discover = %v
`, h, layerIRM, h, ns.Iface(h, "sw"), h, role, on)
				nd, err := l.n.StartNode(h, cfg, testnet.NodeOpts{Netns: ns.Name(h)})
				if err != nil {
					t.Fatalf("starting %s: %v", h, err)
				}
				l.nodes[h] = nd
			}
			l.converge()
			neighbours := func(h string) []string {
				rows, err := l.table(h, "ipcp", "members", h+".uni")
				if err != nil {
					t.Fatalf("members of %s: %v", h, err)
				}
				var out []string
				for _, r := range rows {
					if r["neighbour"] == "yes" {
						out = append(out, r["name"])
					}
				}
				slices.Sort(out)
				return out
			}
			want := map[string][]string{"h1": {"h2.uni", "h3.uni"}, "h2": {"h1.uni"}, "h3": {"h1.uni"}}
			if on {
				want["h2"], want["h3"] = []string{"h1.uni", "h3.uni"}, []string{"h1.uni", "h2.uni"}
			}
			// Discovery looks every 2 s: give it a few rounds either way.
			deadline := time.Now().Add(15 * time.Second)
			for !slices.Equal(neighbours("h2"), want["h2"]) && on && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
			if !on {
				time.Sleep(5 * time.Second)
			}
			for _, h := range hosts {
				if got := neighbours(h); !slices.Equal(got, want[h]) {
					t.Errorf("discover = %v: %s's neighbours are %v, want %v", on, h, got, want[h])
				}
			}
			// The routes follow: h2 reaches h3 in one hop with discovery,
			// two (through h1) without.
			wantMetric := map[bool]string{true: "1", false: "2"}[on]
			var metric string
			for time.Now().Before(deadline.Add(5 * time.Second)) {
				rows, err := l.table("h2", "ipcp", "routes", "h2.uni")
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rows {
					if r["name"] == "h3.uni" {
						metric = r["metric"]
					}
				}
				if metric == wantMetric {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if metric != wantMetric {
				t.Errorf("discover = %v: h2's route to h3 has metric %q, want %s", on, metric, wantMetric)
			}
		})
	}
}
