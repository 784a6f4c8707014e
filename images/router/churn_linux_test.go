package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

// churnTopology is a ring of five (h1..h5) with the chord h1 – h3, and
// h6, a mobile node with two attachment points, h1 and h4: taking down
// any one link of the ring or the chord leaves the five connected.
func churnTopology() testnet.Topology {
	t := testnet.Ring(5)
	t.Hosts = append(t.Hosts, "h6")
	t.Links = append(t.Links, [2]string{"h1", "h3"}, [2]string{"h6", "h1"}, [2]string{"h6", "h4"})
	return t
}

// TestChurn is the mobility test of the intermittent-networks issue: six
// node processes in network namespaces, a unicast layer over the
// Ethernet shim. For OURO_CHURN_SECONDS (default 60) one link of the
// ring or the chord, chosen at random (seeded, the seed logged), goes
// down for 1–3 s at a time, and h6 moves between its two attachment
// points every 5 s (the new link up, the old one down 200 ms later).
// Across it all, a reliable flow h2 → h6 (ouro perf --qos data at 500
// SDU/s) must lose nothing and reorder nothing; an unreliable ping h3 →
// h6 every 20 ms reports its loss; afterwards every host's echo name is
// reachable from every host. The reliable flow's throughput per second
// is logged.
func TestChurn(t *testing.T) {
	needNetns(t)
	secs := 60
	if s := os.Getenv("OURO_CHURN_SECONDS"); s != "" {
		var err error
		if secs, err = strconv.Atoi(s); err != nil || secs < 10 {
			t.Fatalf("OURO_CHURN_SECONDS=%q: want at least 10", s)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OURO_CHURN_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("churn for %d s, seed %d (OURO_CHURN_SEED=%d reproduces the schedule)", secs, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	topo := churnTopology()
	ns := buildNetns(t, topo)
	l := startLayer(t, topo, ns, ns.EthShim, testnet.UnicastOpts{HostKeys: `routing_tick = "20ms"`, NodeKeys: "log = true"})
	l.logsOnFailure()
	l.converge()
	for _, h := range topo.Hosts {
		l.serveEcho(h, echoName(h), "uni")
	}
	l.servePerf("h6", "perf.h6", "uni")
	l.pingPairs([]string{"h2", "h3"}, []string{"h6"}, "uni", echoName)

	// The flows across the churn.
	dur := time.Duration(secs) * time.Second
	rel, err := l.n.StartOuro(l.nodes["h2"], "--json", "perf", "--qos", "data", "-r", "500", "-s", "1000", "-t", dur.String(), "-v", "perf.h6")
	if err != nil {
		t.Fatal(err)
	}
	count := int(dur / (20 * time.Millisecond))
	ping, err := l.n.StartOuro(l.nodes["h3"], "ping", "-c", strconv.Itoa(count), "-i", "20ms", "-W", "2s", echoName("h6"))
	if err != nil {
		t.Fatal(err)
	}

	// The churn.
	var ring [][2]string
	for _, lk := range topo.Links {
		if lk[0] != "h6" && lk[1] != "h6" {
			ring = append(ring, lk)
		}
	}
	attach := [2]string{"h1", "h4"}
	at := 0 // h6 is on attach[at]; both links are up at the start
	if err := ns.SetLink("h6", attach[1], false); err != nil {
		t.Fatal(err)
	}
	var events []string
	end := time.Now().Add(dur)
	nextMove := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		lk := ring[rng.IntN(len(ring))]
		down := time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		if err := ns.SetLink(lk[0], lk[1], false); err != nil {
			t.Fatal(err)
		}
		events = append(events, fmt.Sprintf("%s–%s down %v", lk[0], lk[1], down.Round(10*time.Millisecond)))
		upAt := time.Now().Add(down)
		for time.Now().Before(upAt) {
			if time.Now().After(nextMove) {
				to := 1 - at
				if err := ns.SetLink("h6", attach[to], true); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
				if err := ns.SetLink("h6", attach[at], false); err != nil {
					t.Fatal(err)
				}
				events = append(events, fmt.Sprintf("h6 moved %s → %s", attach[at], attach[to]))
				at = to
				nextMove = time.Now().Add(5 * time.Second)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := ns.SetLink(lk[0], lk[1], true); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d churn events: %s", len(events), strings.Join(events, "; "))

	// The reliable flow lost and reordered nothing.
	checkReliable(t, rel, dur, "h2 → h6", "the churn")

	// The unreliable flow's loss.
	reportPing(t, ping, dur, "h3 → h6", "the churn")

	// Every name is still reachable from everywhere.
	l.pingPairs(topo.Hosts, topo.Hosts, "uni", echoName)
}

// checkReliable waits for a reliable `ouro --json perf -v` that ran for
// dur across what (a description for the log) and fails the test unless
// the server received every SDU sent, in order; it logs the throughput
// per second and in all.
func checkReliable(t *testing.T, rel *testnet.Proc, dur time.Duration, path, what string) {
	t.Helper()
	if err := rel.Wait(dur + 60*time.Second); err != nil {
		t.Fatalf("reliable perf across %s: %v\n%s", what, err, rel.Output())
	}
	var res struct {
		Sent    uint64  `json:"sent"`
		HaveSrv bool    `json:"server_reported"`
		RecvBPS float64 `json:"recv_bps"`
		Server  struct {
			SDUs      uint64 `json:"sdus"`
			Reordered uint64 `json:"reordered"`
		} `json:"server"`
	}
	out := rel.Output()
	var progress, doc []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "[") && doc == nil:
			progress = append(progress, strings.TrimSpace(line))
		case strings.HasPrefix(line, "{") || doc != nil:
			doc = append(doc, line)
		}
	}
	if err := json.Unmarshal([]byte(strings.Join(doc, "\n")), &res); err != nil {
		t.Fatalf("perf's JSON: %v\n%s", err, out)
	}
	t.Logf("reliable flow %s, per second: %s", path, strings.Join(progress, " | "))
	if !res.HaveSrv || res.Sent == 0 || res.Server.SDUs != res.Sent || res.Server.Reordered != 0 {
		t.Fatalf("reliable flow across %s: sent %d, the server got %d (%d reordered); want all, in order\n%s", what, res.Sent, res.Server.SDUs, res.Server.Reordered, out)
	}
	t.Logf("reliable flow %s across %s: %d SDUs sent, all %d received in order, %.2f Mbit/s", path, what, res.Sent, res.Server.SDUs, res.RecvBPS/1e6)
}

// reportPing waits for an `ouro ping -i 20ms` that ran for dur across
// what and logs its loss and longest gap.
func reportPing(t *testing.T, ping *testnet.Proc, dur time.Duration, path, what string) {
	t.Helper()
	if err := ping.Wait(dur + 60*time.Second); err != nil {
		t.Fatalf("ping across %s: %v\n%s", what, err, ping.Output())
	}
	r, err := parsePing(ping.Output())
	if err != nil {
		t.Fatal(err)
	}
	lost, longest := r.lost(r.firstSeq())
	t.Logf("unreliable ping %s every 20 ms across %s: %d of %d received (%.1f%% lost), longest gap %d SDUs ≈ %d ms",
		path, what, r.received, r.sent, 100*float64(len(lost))/float64(max(r.sent, 1)), longest, longest*20)
}
