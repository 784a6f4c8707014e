// Command demo starts a small ouro network on this machine and shows it
// working: three hosted nodes (router processes) a — b — c, joined by UDP
// shim links on 127.0.0.1 (a and c have no link to each other), with a
// unicast layer on top that routes between all three; echo and perf
// servers on every node, and pings and throughput measurements across
// them, each beside the same measurement over plain UDP. It is the
// README's main job: go run ./tools/demo (or make demo).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

func main() {
	log.SetFlags(0)
	keep := flag.Bool("keep", false, "leave the nodes running until interrupted (inspect them with ouro --socket ...)")
	dur := flag.Duration("t", 2*time.Second, "duration of each throughput measurement")
	verbose := flag.Bool("v", false, "log every process started")
	flag.Parse()
	if err := run(*keep, *dur, *verbose); err != nil {
		log.Fatalf("demo: %v", err)
	}
}

func run(keep bool, dur time.Duration, verbose bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "ouro-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root, err := testnet.ModuleRoot()
	if err != nil {
		return err
	}
	step("building the router image and the ouro tool")
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	router, ouro, err := testnet.Build(bctx, root, dir)
	cancel()
	if err != nil {
		return err
	}
	n := testnet.New(dir, router, ouro)
	if verbose {
		n.Log = slog.Default()
	}
	defer n.Close()

	nodes := []string{"a", "b", "c"}
	// One Ports for every port the demo binds: none handed out twice.
	var free testnet.Ports
	ports := map[string]int{}
	got, err := free.UDPs("127.0.0.1", len(nodes))
	if err != nil {
		return err
	}
	for i, nd := range nodes {
		ports[nd] = got[i]
	}
	// Links: a — b — c over the UDP shim (layer "udp"); each node's UDP
	// directory names only its neighbours' unicast IPCPs. The unicast
	// layer "uni" runs over it: b bootstraps it, a and c enroll through b.
	links := map[string][]string{"a": {"b"}, "b": {"a", "c"}, "c": {"b"}}
	step("starting nodes a — b — c: UDP shim links on 127.0.0.1 (layer \"udp\"), a unicast layer \"uni\" on top")
	// The layer's policies come from its bootstrapping member, b; the demo
	// names every one, so that what it prints is what runs.
	var policies strings.Builder
	fmt.Fprintln(&policies, "bootstrap = true")
	fmt.Println("  layer \"uni\" runs with these policies, set by b ([ipcp.unicast] in docs/config.md):")
	for _, p := range layerPolicies() {
		fmt.Fprintf(&policies, "%s = %q\n", p.key, p.value)
		fmt.Printf("    %-9s %-10s %s\n", p.key, p.value, p.note)
	}
	running := map[string]*testnet.Node{}
	for _, nd := range []string{"b", "a", "c"} {
		var dirEntries []string
		for _, peer := range links[nd] {
			dirEntries = append(dirEntries, fmt.Sprintf("\"%s.uni\" = \"127.0.0.1:%d\"", peer, ports[peer]))
		}
		member := policies.String()
		if nd != "b" {
			member = `enroll = "b.uni"`
		}
		cfg := fmt.Sprintf(`[node]
name = %q

[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { %s }

[[ipcp]]
name = "%s.uni"
kind = "unicast"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
%s
`, nd, ports[nd], strings.Join(dirEntries, ", "), nd, member)
		node, err := n.StartNode(nd, cfg, testnet.NodeOpts{})
		if err != nil {
			return err
		}
		running[nd] = node
		fmt.Printf("  node %s: udp 127.0.0.1:%d (links to %s), socket %s\n", nd, ports[nd], strings.Join(links[nd], ", "), node.Socket)
	}
	for _, nd := range nodes {
		for _, args := range [][]string{{"echo", "echo." + nd}, {"perf", "--server", "perf." + nd}} {
			p, err := n.StartOuro(running[nd], args...)
			if err != nil {
				return err
			}
			if err := p.WaitFor("ready", 10*time.Second); err != nil {
				return err
			}
		}
	}
	step("names registered at each node (ouro names)")
	for _, nd := range nodes {
		out, err := n.Ouro(ctx, running[nd], "names")
		if err != nil {
			return err
		}
		fmt.Printf("  node %s:\n%s", nd, indent(out, "    "))
	}

	udpEcho, udpEchoAddr, err := startUDP(n, &free, running["b"], "echo")
	if err != nil {
		return err
	}
	defer udpEcho.Stop()
	udpPerf, udpPerfAddr, err := startUDP(n, &free, running["b"], "perf")
	if err != nil {
		return err
	}
	defer udpPerf.Stop()

	step("waiting for the unicast layer to converge")
	if err := waitReachable(ctx, n, running["a"], "echo.c"); err != nil {
		return err
	}
	out, err := n.Ouro(ctx, running["a"], "ipcp", "routes", "a.uni")
	if err != nil {
		return err
	}
	fmt.Printf("  a.uni's routes (ouro ipcp routes a.uni):\n%s", indent(out, "    "))

	step("ping across the layer (ouro ping -c 50 -i 10ms), beside plain UDP on the same loopback")
	fmt.Printf("  %-28s %-6s %6s %6s %10s %10s %10s\n", "path", "layer", "sent", "recvd", "rtt avg", "rtt min", "alloc")
	for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}, {"c", "a"}} {
		s, err := ping(ctx, n, running[p[0]], "echo."+p[1])
		if err != nil {
			return err
		}
		fmt.Printf("  %-28s %-6s %6d %6d %8.3f ms %8.3f ms %8.3f ms\n", fmt.Sprintf("flow %s -> echo.%s", p[0], p[1]), s.Layer, s.Transmitted, s.Received, s.RTTAvgMS, s.RTTMinMS, s.AllocMS)
	}
	s, err := ping(ctx, n, running["a"], "--udp", udpEchoAddr)
	if err != nil {
		return err
	}
	fmt.Printf("  %-28s %-6s %6d %6d %8.3f ms %8.3f ms %10s\n", "plain UDP (baseline)", "-", s.Transmitted, s.Received, s.RTTAvgMS, s.RTTMinMS, "-")

	step("throughput for %v, 1300-byte SDUs (ouro perf), against plain UDP", dur)
	fmt.Printf("  %-28s %12s %12s %12s %8s\n", "path", "sent SDU/s", "recvd SDU/s", "recvd Mbit/s", "loss")
	for _, p := range [][2]string{{"a", "b"}, {"c", "a"}} {
		r, err := perf(ctx, n, running[p[0]], dur, "perf."+p[1])
		if err != nil {
			return err
		}
		fmt.Printf("  %-28s %12.0f %12.0f %12.1f %7.1f%%\n", fmt.Sprintf("flow %s -> perf.%s", p[0], p[1]), r.SendPPS, r.RecvPPS, r.RecvBPS/1e6, r.Loss)
	}
	r, err := perf(ctx, n, running["a"], dur, "--udp", udpPerfAddr)
	if err != nil {
		return err
	}
	fmt.Printf("  %-28s %12.0f %12.0f %12.1f %7.1f%%\n", "plain UDP (baseline)", r.SendPPS, r.RecvPPS, r.RecvBPS/1e6, r.Loss)

	step("node a's IPCPs, the layer's members, and a's unicast counters (ouro ipcps; ouro ipcp members a.uni; ouro stats a.uni)")
	for _, args := range [][]string{{"ipcps"}, {"ipcp", "members", "a.uni"}, {"stats", "a.uni"}} {
		out, err := n.Ouro(ctx, running["a"], args...)
		if err != nil {
			return err
		}
		fmt.Print(indent(out, "  "))
	}
	if keep {
		step("nodes keep running; try: OURO_SOCKET=%s go run ./tools/ouro ping echo.b  (Ctrl-C ends the demo)", running["a"].Socket)
		<-ctx.Done()
	}
	step("stopping the nodes")
	return nil
}

// layerPolicies returns the unicast layer's policies in the demo.
func layerPolicies() []struct{ key, value, note string } {
	return []struct{ key, value, note string }{
		{"admission", "open", "chosen (there is no default): any node with a key may join; docs/security.md for the others"},
		{"routing", "alternate", "the default: a loop-free alternate next hop beside the primary"},
		{"dir", "dht", "the default: names are found in a distributed hash table"},
		{"hash", "sha3-256", "the default name hash"},
		{"ca", "mb-ecn-local", "the default: multi-bit ECN congestion avoidance, slow start then additive increase, the node's own queues telling its senders at once"},
		{"sched", "strict", "the default: strict priority across QoS cubes"},
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n== "+format+"\n", args...)
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

// startUDP starts the plain-UDP twin of a server (echo or perf) and
// returns its address.
func startUDP(n *testnet.Net, free *testnet.Ports, nd *testnet.Node, kind string) (*testnet.Proc, string, error) {
	port, err := free.UDP("127.0.0.1")
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{kind, "--udp", addr}
	if kind == "perf" {
		args = []string{"perf", "--server", "--udp", addr}
	}
	p, err := n.StartOuro(nd, args...)
	if err != nil {
		return nil, "", err
	}
	if err := p.WaitFor("ready", 10*time.Second); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

type pingSummary struct {
	Transmitted uint64  `json:"transmitted"`
	Received    uint64  `json:"received"`
	RTTMinMS    float64 `json:"rtt_min_ms"`
	RTTAvgMS    float64 `json:"rtt_avg_ms"`
	AllocMS     float64 `json:"alloc_ms"`
	Layer       string  `json:"layer"`
}

func ping(ctx context.Context, n *testnet.Net, from *testnet.Node, target ...string) (pingSummary, error) {
	args := append([]string{"--json", "ping", "-c", "50", "-i", "10ms", "-W", "2s"}, target...)
	out, err := n.Ouro(ctx, from, args...)
	if err != nil {
		return pingSummary{}, err
	}
	var s pingSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("ping output %q: %w", out, err)
	}
	if s.Received == 0 {
		return s, errors.New("ping: no replies")
	}
	return s, nil
}

type perfResult struct {
	SendPPS float64 `json:"send_pps"`
	RecvPPS float64 `json:"recv_pps"`
	RecvBPS float64 `json:"recv_bps"`
	Loss    float64 `json:"loss_percent"`
}

func perf(ctx context.Context, n *testnet.Net, from *testnet.Node, dur time.Duration, target ...string) (perfResult, error) {
	args := append([]string{"--json", "perf", "-t", dur.String(), "-s", "1300", "--no-progress"}, target...)
	out, err := n.Ouro(ctx, from, args...)
	if err != nil {
		return perfResult{}, err
	}
	var r perfResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return r, fmt.Errorf("perf output %q: %w", out, err)
	}
	return r, nil
}

// waitReachable pings name from nd until a flow can be allocated (the
// layer has converged and the directory knows the name), for 20 s at most.
func waitReachable(ctx context.Context, n *testnet.Net, nd *testnet.Node, name string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := ping(ctx, n, nd, "-c", "1", name)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not reachable from %s: %w", name, nd.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
