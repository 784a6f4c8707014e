package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

// TestMoveAcrossLowerLayers is the intermittent-networks issue's "a node
// that loses its neighbour and gains another in a different lower layer
// (Ethernet to UDP)": a line h1 – h2 – h3 of node processes in network
// namespaces (Ethernet shims) and h4, a mobile node attached to h1 by
// Ethernet and to h3 by the UDP shim over IP (a veth of its own,
// 10.79.4.0/24 inside the test's namespaces). Every 4 s h4 moves to the
// other attachment (the new link up, the old one down 200 ms later), so
// its unicast IPCP's lower flows change kind each time. Across
// OURO_MOVE_SECONDS (default 20) a reliable flow h2 → h4 must lose and
// reorder nothing, an unreliable ping h2 → h4 reports its loss, and
// afterwards every echo name is reachable from every host.
func TestMoveAcrossLowerLayers(t *testing.T) {
	needNetns(t)
	secs := 20
	if s := os.Getenv("OURO_MOVE_SECONDS"); s != "" {
		var err error
		if secs, err = strconv.Atoi(s); err != nil || secs < 8 {
			t.Fatalf("OURO_MOVE_SECONDS=%q: want at least 8", s)
		}
	}
	topo := testnet.Line(3)
	topo.Hosts = append(topo.Hosts, "h4")
	topo.Links = append(topo.Links, [2]string{"h4", "h1"}, [2]string{"h4", "h3"})
	udpLink := len(topo.Links) - 1 // h4 – h3
	ns := buildNetns(t, topo)
	ip := map[string]string{"h4": "10.79.4.4", "h3": "10.79.4.3"}
	for h, peer := range map[string]string{"h4": "h3", "h3": "h4"} {
		if out, err := exec.Command("ip", "-n", ns.Name(h), "addr", "add", ip[h]+"/24", "dev", ns.Iface(h, peer)).CombinedOutput(); err != nil {
			t.Fatalf("ip addr add in %s: %v: %s", h, err, out)
		}
	}
	shim := func(host, peer string, link int) (string, string) {
		if link != udpLink {
			return ns.EthShim(host, peer, link)
		}
		return "udp", fmt.Sprintf("addr = \"%s:3435\"\ndir = { %q = \"%s:3435\" }", ip[host], testnet.UnicastIPCP(peer, "uni"), ip[peer])
	}
	l := startLayer(t, topo, ns, shim, testnet.UnicastOpts{HostKeys: `routing_tick = "20ms"`, NodeKeys: "log = true"})
	l.logsOnFailure()
	l.converge()
	for _, h := range topo.Hosts {
		l.serveEcho(h, echoName(h), "uni")
	}
	l.servePerf("h4", "perf.h4", "uni")
	l.pingPairs([]string{"h2"}, []string{"h4"}, "uni", echoName)

	dur := time.Duration(secs) * time.Second
	rel, err := l.n.StartOuro(l.nodes["h2"], "--json", "perf", "--qos", "data", "-r", "500", "-s", "1000", "-t", dur.String(), "-v", "perf.h4")
	if err != nil {
		t.Fatal(err)
	}
	ping, err := l.n.StartOuro(l.nodes["h2"], "ping", "-c", strconv.Itoa(int(dur/(20*time.Millisecond))), "-i", "20ms", "-W", "2s", echoName("h4"))
	if err != nil {
		t.Fatal(err)
	}

	// h4 starts on the Ethernet link to h1 only.
	attach := [2]string{"h1", "h3"}
	kind := map[string]string{"h1": "Ethernet", "h3": "UDP"}
	at := 0
	if err := ns.SetLink("h4", attach[1], false); err != nil {
		t.Fatal(err)
	}
	var moves []string
	end := time.Now().Add(dur)
	for next := time.Now().Add(4 * time.Second); next.Add(2 * time.Second).Before(end); next = next.Add(4 * time.Second) {
		time.Sleep(time.Until(next))
		to := 1 - at
		if err := ns.SetLink("h4", attach[to], true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := ns.SetLink("h4", attach[at], false); err != nil {
			t.Fatal(err)
		}
		moves = append(moves, fmt.Sprintf("%s (%s) → %s (%s)", attach[at], kind[attach[at]], attach[to], kind[attach[to]]))
		at = to
	}
	t.Logf("h4 moved %d times: %s", len(moves), strings.Join(moves, "; "))

	checkReliable(t, rel, dur, "h2 → h4", "the moves")
	reportPing(t, ping, dur, "h2 → h4", "the moves")
	// both attachments up again: every name from everywhere
	if err := ns.SetLink("h4", attach[1-at], true); err != nil {
		t.Fatal(err)
	}
	l.pingPairs(topo.Hosts, topo.Hosts, "uni", echoName)
}
