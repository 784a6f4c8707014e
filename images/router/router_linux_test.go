package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/tools/testnet"
)

// These tests start real node processes (the router image, hosted) and
// drive them with the ouro tool, as a user would.

var bins struct{ router, ouro string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ouro-router-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := testnet.ModuleRoot()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		bins.router, bins.ouro, err = testnet.Build(ctx, root, dir)
		cancel()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newNet(t *testing.T) *testnet.Net {
	t.Helper()
	n := testnet.New(t.TempDir(), bins.router, bins.ouro)
	n.Log = logx.Test(t)
	t.Cleanup(n.Close)
	return n
}

// freePorts hands out this test binary's UDP ports, none twice (two
// link ends of one test on the same port: "bind: address already in
// use" in a node, seen in CI).
var freePorts testnet.Ports

// freeUDP returns a UDP port on host that was free a moment ago and that
// no other test of this binary was given; it skips the test where host
// has no such network (network names it for the message).
func freeUDP(t *testing.T, network, host string) int {
	t.Helper()
	p, err := freePorts.UDP(host)
	if err != nil {
		t.Skipf("no %s on %s here: %v", network, host, err)
	}
	return p
}

type pingSummary struct {
	Transmitted uint64  `json:"transmitted"`
	Received    uint64  `json:"received"`
	LossPercent float64 `json:"loss_percent"`
	RTTAvgMS    float64 `json:"rtt_avg_ms"`
	AllocMS     float64 `json:"alloc_ms"`
}

func ping(t *testing.T, n *testnet.Net, from *testnet.Node, name string, count int) pingSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := n.Ouro(ctx, from, "--json", "ping", "-c", fmt.Sprint(count), "-i", "10ms", "-W", "2s", name)
	if err != nil {
		t.Fatalf("ping %s: %v", name, err)
	}
	var s pingSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("ping output %q: %v", out, err)
	}
	return s
}

// serve starts the ouro tool as a server against nd and waits until it
// is ready.
func serve(t *testing.T, n *testnet.Net, nd *testnet.Node, args ...string) *testnet.Proc {
	t.Helper()
	p, err := n.StartOuro(nd, args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUDPNodes runs two node processes over the UDP shim, on 127.0.0.1
// and on ::1: a flow is allocated, pinged, measured and deallocated; then
// one side restarts and the flow comes back.
func TestUDPNodes(t *testing.T) {
	for _, tc := range []struct{ name, network, host string }{
		{"ipv4", "udp4", "127.0.0.1"},
		{"ipv6", "udp6", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNet(t)
			pa, pb := freeUDP(t, tc.network, tc.host), freeUDP(t, tc.network, tc.host)
			addr := func(p int) string { return net.JoinHostPort(tc.host, fmt.Sprint(p)) }
			b, err := n.StartNode("b", fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = %q
`, addr(pb)), testnet.NodeOpts{})
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
addr = %q
dir = { echo = %q, perf = %q }
`, addr(pa), addr(pb), addr(pb)), testnet.NodeOpts{})
			if err != nil {
				t.Fatal(err)
			}
			echo := serve(t, n, b, "echo", "echo")
			s := ping(t, n, a, "echo", 20)
			if s.Received != 20 || s.Transmitted != 20 {
				t.Errorf("ping: got %d of %d replies, want 20 of 20", s.Received, s.Transmitted)
			}
			t.Logf("ping over UDP (%s): avg rtt %.3f ms, alloc %.3f ms", tc.name, s.RTTAvgMS, s.AllocMS)

			serve(t, n, b, "perf", "--server", "perf")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, err := n.Ouro(ctx, a, "--json", "perf", "-t", "1s", "-s", "1000", "--no-progress", "perf")
			cancel()
			if err != nil {
				t.Fatalf("perf: %v", err)
			}
			var p struct {
				Sent   uint64 `json:"sent"`
				Server struct {
					SDUs uint64 `json:"sdus"`
				} `json:"server"`
			}
			if err := json.Unmarshal([]byte(out), &p); err != nil {
				t.Fatalf("perf output %q: %v", out, err)
			}
			if p.Sent == 0 || p.Server.SDUs == 0 {
				t.Errorf("perf: sent %d, server counted %d; want both above 0", p.Sent, p.Server.SDUs)
			}

			// Deallocation reaches the peer: once the clients exited, b has
			// no flows left.
			waitFlows(t, n, b, 0)

			// b restarts (its programs reconnect); a's allocations work again.
			if err := n.Restart(b); err != nil {
				t.Fatal(err)
			}
			echo.Wait(10 * time.Second) // its session ended with the node
			serve(t, n, b, "echo", "echo")
			if s := ping(t, n, a, "echo", 5); s.Received != 5 {
				t.Errorf("ping after restart: got %d of 5 replies", s.Received)
			}
		})
	}
}

func waitFlows(t *testing.T, n *testnet.Net, nd *testnet.Node, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := n.Ouro(ctx, nd, "--json", "flows")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var tab struct {
			Rows []map[string]string `json:"rows"`
		}
		if err := json.Unmarshal([]byte(out), &tab); err != nil {
			t.Fatalf("flows output %q: %v", out, err)
		}
		if len(tab.Rows) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d flows, want %d: %v", nd.Name, len(tab.Rows), want, tab.Rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEthernetNetns runs two node processes in two network namespaces
// joined by a veth pair, over the Ethernet shim (AF_PACKET).
func TestEthernetNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root to create network namespaces and veth pairs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIP: needs ip from iproute2 (apt-get install iproute2)")
	}
	tag := fmt.Sprintf("%d", os.Getpid()%100000)
	nsA, nsB := "ouro-a-"+tag, "ouro-b-"+tag
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", nsA)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsA).Run() })
	run("netns", "add", nsB)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nsB).Run() })
	run("link", "add", "veth-a"+tag, "netns", nsA, "type", "veth", "peer", "name", "veth-b"+tag, "netns", nsB)
	run("-n", nsA, "link", "set", "veth-a"+tag, "up")
	run("-n", nsB, "link", "set", "veth-b"+tag, "up")

	n := newNet(t)
	b, err := n.StartNode("b", fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "eth"
layer = "lan"
[ipcp.eth]
interface = "veth-b%s"
`, tag), testnet.NodeOpts{Netns: nsB})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.StartNode("a", fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "eth"
layer = "lan"
[ipcp.eth]
interface = "veth-a%s"
`, tag), testnet.NodeOpts{Netns: nsA})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, n, b, "echo", "echo")
	s := ping(t, n, a, "echo", 20)
	if s.Received != 20 {
		t.Errorf("ping over Ethernet: got %d of %d replies, want 20", s.Received, s.Transmitted)
	}
	t.Logf("ping over Ethernet (veth): avg rtt %.3f ms, alloc %.3f ms", s.RTTAvgMS, s.AllocMS)
	waitFlows(t, n, b, 0)
}

// TestHTTPAcrossNodes serves net/http on a flow listener at one node
// process and fetches from it through another, over the UDP shim.
func TestHTTPAcrossNodes(t *testing.T) {
	n := newNet(t)
	pa, pb := freeUDP(t, "udp4", "127.0.0.1"), freeUDP(t, "udp4", "127.0.0.1")
	b, err := n.StartNode("b", fmt.Sprintf("[node]\nname = \"b\"\n[[ipcp]]\nkind = \"udp\"\n[ipcp.udp]\naddr = \"127.0.0.1:%d\"\n", pb), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.StartNode("a", fmt.Sprintf("[node]\nname = \"a\"\n[[ipcp]]\nkind = \"udp\"\n[ipcp.udp]\naddr = \"127.0.0.1:%d\"\ndir = { web = \"127.0.0.1:%d\" }\n", pa, pb), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OURO_SOCKET", b.Socket)
	l, err := flow.Listen("web")
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("recursive "), 50_000)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()

	t.Setenv("OURO_SOCKET", a.Socket)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return flow.DialName(ctx, "web")
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get("http://web/")
	if err != nil {
		t.Fatalf("GET over a flow: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("GET: %d bytes, %v; want %d bytes intact", len(got), err, len(body))
	}
}
