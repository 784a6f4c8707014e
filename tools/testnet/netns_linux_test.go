package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestTopologies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		topo  Topology
		hosts int
		links int
		deg   map[string]int
	}{
		{"line4", Line(4), 4, 3, map[string]int{"h1": 1, "h2": 2, "h4": 1}},
		{"ring5", Ring(5), 5, 5, map[string]int{"h1": 2, "h5": 2}},
		{"diamond", Diamond(), 4, 4, map[string]int{"h1": 2, "h2": 2, "h4": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.topo.Hosts) != tc.hosts || len(tc.topo.Links) != tc.links {
				t.Fatalf("got %d hosts, %d links; want %d, %d", len(tc.topo.Hosts), len(tc.topo.Links), tc.hosts, tc.links)
			}
			for h, d := range tc.deg {
				if got := len(tc.topo.Neighbours(h)); got != d {
					t.Errorf("%s has %d neighbours, want %d", h, got, d)
				}
			}
		})
	}
}

func TestBuildNetns(t *testing.T) {
	if err := NetnsAvailable(); err != nil {
		t.Skip("SKIP: " + err.Error())
	}
	ns, err := BuildNetns(Diamond(), fmt.Sprint(os.Getpid()%10000))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	out, err := exec.Command("ip", "-n", ns.Name("h1"), "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"h2", "h3"} {
		if !strings.Contains(string(out), ns.Iface("h1", peer)) {
			t.Errorf("h1 lacks its interface to %s (%s): %s", peer, ns.Iface("h1", peer), out)
		}
	}
	if err := ns.SetLink("h1", "h2", false); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("ip", "-n", ns.Name("h2"), "-o", "link", "show", ns.Iface("h2", "h1")).CombinedOutput()
	if strings.Contains(string(out), ",UP") || strings.Contains(string(out), "<UP") {
		t.Errorf("link h1-h2 still up after SetLink(false): %s", out)
	}
	ns.Close()
	if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(out), ns.Name("h1")) {
		t.Errorf("namespace %s left behind", ns.Name("h1"))
	}
}
