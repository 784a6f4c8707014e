//go:build faultinject

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/tools/testnet"
)

// These tests run router processes built with the tag faultinject (a
// packet carrying faultinject.Poison makes the receive path that sees it
// panic) and check that a fault of one component is a fault, not a
// crash: the node survives, the IRM restarts the component, traffic
// resumes, and the fault is in "ouro ipcps", "ouro stats" and the log.

var faultRouter struct {
	once sync.Once
	bin  string
	err  error
}

// faultNet returns a Net whose nodes run the router built with the tag
// faultinject.
func faultNet(t *testing.T) *testnet.Net {
	t.Helper()
	faultRouter.once.Do(func() {
		root, err := testnet.ModuleRoot()
		if err != nil {
			faultRouter.err = err
			return
		}
		bin := filepath.Join(filepath.Dir(bins.router), "router-faultinject")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "faultinject", "-o", bin, "./images/router")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			faultRouter.err = fmt.Errorf("go build -tags faultinject: %w\n%s", err, out)
			return
		}
		faultRouter.bin = bin
	})
	if faultRouter.err != nil {
		t.Fatal(faultRouter.err)
	}
	n := testnet.New(t.TempDir(), faultRouter.bin, bins.ouro)
	n.Log = logx.Test(t)
	t.Cleanup(n.Close)
	return n
}

// pingsResume pings name from nd (one ping per attempt, a new flow each)
// until one comes back, and returns how long after start that was.
func pingsResume(t *testing.T, n *testnet.Net, nd *testnet.Node, name string, start time.Time) time.Duration {
	t.Helper()
	deadline := start.Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := n.Ouro(ctx, nd, "--json", "ping", "-c", "1", "-W", "200ms", name)
		cancel()
		var s pingSummary
		if err == nil && json.Unmarshal([]byte(out), &s) == nil && s.Received == 1 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pings to %s did not resume in 30s: %v %s", name, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// supervision returns the "ouro ipcps" row of ipcp once it has restarted
// at least once and is operational again.
func supervision(t *testing.T, n *testnet.Net, nd *testnet.Node, ipcp string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := n.Ouro(ctx, nd, "--json", "ipcps")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var tab struct {
			Rows []map[string]string `json:"rows"`
		}
		if err := json.Unmarshal([]byte(out), &tab); err != nil {
			t.Fatalf("ipcps output %q: %v", out, err)
		}
		for _, r := range tab.Rows {
			if r["name"] == ipcp && r["restarts"] != "0" && r["state"] == "operational" {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no restart of %s shown: %s", nd.Name, ipcp, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkFaultShown checks that ipcp's fault is in "ouro ipcps", "ouro
// stats" and the node's log, naming the poisoned receive path.
func checkFaultShown(t *testing.T, n *testnet.Net, nd *testnet.Node, ipcp, site string) {
	t.Helper()
	row := supervision(t, n, nd, ipcp)
	if !strings.Contains(row["last_fault"], "poison at "+site) {
		t.Errorf("ouro ipcps: %s last fault %q, want the poison at %s", ipcp, row["last_fault"], site)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Ouro(ctx, nd, "--json", "stats", ipcp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "supervisor.restarts") || !strings.Contains(out, "poison at "+site) {
		t.Errorf("ouro stats %s does not show the fault: %s", ipcp, out)
	}
	if log := nd.Output(); !strings.Contains(log, "faulted="+ipcp) || !strings.Contains(log, "poison at "+site) {
		t.Errorf("%s's log does not report the fault:\n%s", nd.Name, log)
	}
}

// TestFaultUDPShim sends one poison datagram to a UDP shim: its receive
// loop panics, the node survives, the shim is restarted and pings to a
// program behind it resume.
func TestFaultUDPShim(t *testing.T) {
	n := faultNet(t)
	pa, pb := freeUDP(t, "udp4", "127.0.0.1"), freeUDP(t, "udp4", "127.0.0.1")
	b, err := n.StartNode("b", fmt.Sprintf(`
[node]
name = "b"
log = true
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.StartNode("a", fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pa, pb), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, n, b, "echo", "echo")
	if s := ping(t, n, a, "echo", 5); s.Received != 5 {
		t.Fatalf("before the fault: %d of 5 replies", s.Received)
	}

	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", pb))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("a datagram carrying " + faultinject.Poison)); err != nil {
		t.Fatal(err)
	}
	took := pingsResume(t, n, a, "echo", start)
	t.Logf("pings resumed %v after the poison datagram", took.Round(time.Millisecond))
	if s := ping(t, n, a, "echo", 20); s.Received != 20 {
		t.Errorf("after the restart: %d of 20 replies", s.Received)
	}
	checkFaultShown(t, n, b, "b.udp", "udp/input")
	if err := b.Wait(0); !strings.Contains(fmt.Sprint(err), "still running") {
		t.Fatalf("node b exited: %v", err)
	}
}

// TestFaultUnicastInput sends one SDU carrying the poison over a unicast
// layer (over a serial link, whose shim has no fault hook): the receiving
// member's unicast IPCP panics in its data-transfer input, is restarted,
// comes back into the layer by itself from its configuration, and pings
// across the layer resume. The member poisoned is the layer's first
// (bootstrap, static address); an enrolled member comes back at its
// key's address (TestMemberRestart, docs/node.md).
func TestFaultUnicastInput(t *testing.T) {
	n := faultNet(t)
	port := freePort(t)
	// Names are registered by hand, in the layer only: flows to them go
	// over the layer, not over the serial link beneath it.
	cfg := func(name, serial, uni string) string { return serialUniConfig(name, "log = true", serial, uni) }
	b, err := n.StartNode("b", cfg("b", fmt.Sprintf("tcp_listen = \"127.0.0.1:%d\"", port), "bootstrap = true\nadmission = \"open\"\naddr = 11"), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.StartNode("a", cfg("a", fmt.Sprintf("tcp_connect = \"127.0.0.1:%d\"", port), `enroll = "b.uni"`), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("a's log:\n%s\nb's log:\n%s", a.Output(), b.Output())
		}
	})
	serve(t, n, b, "echo", "echo")
	regCtx, regCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer regCancel()
	if _, err := n.Ouro(regCtx, b, "reg", "echo", "--layer", "uni"); err != nil {
		t.Fatal(err)
	}
	pingsResume(t, n, a, "echo", time.Now()) // a enrolled, echo in the directory

	// A program on a writes the poison to echo on b: b.uni's input panics.
	prog, err := flow.Dial(a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, info, err := prog.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if info.Layer != "uni" {
		t.Fatalf("flow in layer %q, want uni", info.Layer)
	}
	start := time.Now()
	if err := p.Write([]byte("an SDU carrying "+faultinject.Poison), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	checkFaultShown(t, n, b, "b.uni", "unicast/dt")
	took := pingsResume(t, n, a, "echo", start)
	t.Logf("pings across the layer resumed %v after the poison SDU", took.Round(time.Millisecond))
	if s := ping(t, n, a, "echo", 20); s.Received != 20 {
		t.Errorf("after the restart: %d of 20 replies", s.Received)
	}
	if err := b.Wait(0); !strings.Contains(fmt.Sprint(err), "still running") {
		t.Fatalf("node b exited: %v", err)
	}
}
