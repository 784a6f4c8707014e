package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

// members returns the addresses in nd's unicast IPCP's link-state
// database ("ouro ipcp members"), ascending.
func members(t *testing.T, n *testnet.Net, nd *testnet.Node, ipcp string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Ouro(ctx, nd, "--json", "ipcp", "members", ipcp)
	if err != nil {
		t.Fatal(err)
	}
	var tab struct {
		Rows []map[string]string `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out), &tab); err != nil {
		t.Fatalf("members output %q: %v", out, err)
	}
	var as []string
	for _, r := range tab.Rows {
		as = append(as, r["addr"])
	}
	slices.Sort(as)
	return as
}

// pingUntil pings name from nd (one ping per attempt, a new flow each)
// until one comes back, and returns how long after start that was.
func pingUntil(t *testing.T, n *testnet.Net, nd *testnet.Node, name string, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := n.Ouro(ctx, nd, "--json", "ping", "-c", "1", "-W", "200ms", name)
		cancel()
		var s pingSummary
		if err == nil && json.Unmarshal([]byte(out), &s) == nil && s.Received == 1 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("no ping to %s answered within %v: %v %s", name, limit, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMemberRestart (issue 9) runs a unicast layer of two node processes
// over a serial link: b bootstraps, a enrolls through b with its node key
// kept in a file and no static address, and serves echo in the layer. a
// is killed (SIGKILL: nothing said to b) and started again: it comes
// back at its old address, b's link-state database keeps two members (no
// ghost), and pings from b to echo on a answer within 2 s of a's node
// being ready again (the echo server started and registered included).
// Before membership was bound to the key a came back at a new address:
// b's database had three members, and the directory kept echo's old
// address for an hour.
func TestMemberRestart(t *testing.T) {
	n := newNet(t)
	port := freePort(t)
	cfg := func(name, serial, uni string) string {
		return serialUniConfig(name, fmt.Sprintf("key = %q", filepath.Join(n.Dir, name+".key")), serial, uni)
	}
	b, err := n.StartNode("b", cfg("b", fmt.Sprintf("tcp_listen = \"127.0.0.1:%d\"", port), "bootstrap = true\nadmission = \"open\""), testnet.NodeOpts{})
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
	echoOn := func() *testnet.Proc {
		t.Helper()
		p := serve(t, n, a, "echo", "echo")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := n.Ouro(ctx, a, "reg", "echo", "--layer", "uni"); err != nil {
			t.Fatal(err)
		}
		return p
	}
	echo := echoOn()
	pingUntil(t, n, b, "echo", time.Now(), 30*time.Second)
	before := members(t, n, b, "b.uni")
	if len(before) != 2 {
		t.Fatalf("members before the restart: %v", before)
	}

	a.Kill()
	echo.Wait(10 * time.Second)
	if err := n.Restart(a); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	echo = echoOn()
	took := pingUntil(t, n, b, "echo", ready, 2*time.Second)
	t.Logf("ping to echo on the restarted member answered %v after its node was ready", took.Round(time.Millisecond))
	echo.Stop()
	if after := members(t, n, b, "b.uni"); !slices.Equal(after, before) {
		t.Errorf("members after the restart %v, before %v", after, before)
	}
}

// serialUniConfig is the configuration of node name: a unicast layer
// "uni" over a serial link "ser" (serial: its [ipcp.serial] lines, uni:
// extra [ipcp.unicast] lines), names registered by hand, and node, extra
// [node] lines.
func serialUniConfig(name, node, serial, uni string) string {
	return fmt.Sprintf(`
[node]
name = %q
%s
[irm]
auto_register = false
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["ser"]
%s
[[ipcp]]
kind = "serial"
layer = "ser"
[ipcp.serial]
%s
`, name, node, name, uni, serial)
}
