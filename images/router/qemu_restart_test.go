//go:build linux

package main

// Restarts on either side of a QEMU stream link (issue 18).
//
// TestQEMURestart runs A - VM - B (the armory router image forwarding in
// a unicast layer for two hosted nodes, as uniSubtests does) with the
// wiring that survives restarts: the VM's hub has two socket netdevs in
// listen mode and the hosted nodes dial them (qemu_connect, which dials
// again with back-off when the stream ends). A and B are router
// processes (tools/testnet), B with an echo app. Then, one after the
// other, A is killed (SIGKILL) and started again, B likewise, and the VM
// is stopped and booted again; after each, "ouro ping" on A must get an
// answer across the VM from B's echo within restartDeadline of the
// restarted side being ready, with nothing else restarted. The times are
// logged (and appended to OURO_QEMU_FIGURES).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

// restartDeadline is how soon after a restarted node (or VM) is ready a
// ping across the VM must succeed (issue 18).
const restartDeadline = 2 * time.Second

// restartMember is uniMember for a hosted node that dials the VM
// (qemu_connect) instead of listening for it.
func restartMember(name, kind string, port int, apps string) string {
	return fmt.Sprintf("[node]\nname = %q\n[irm]\nquery_timeout = \"200ms\"\n", name) +
		uniShim(kind, uniHostIP(name), fmt.Sprintf("qemu_connect = \"127.0.0.1:%d\"", port)) +
		fmt.Sprintf(`[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = [%q]
enroll = "vm.uni"
`, name, uniLower(kind)) + apps
}

// listenHubNet is hubNet with QEMU listening on each port: QEMU accepts
// a new connection when one ends, so a hosted node may restart.
func listenHubNet(mac string, ports ...int) []string {
	args := []string{"-net", "nic,model=imx.enet,macaddr=" + mac}
	for _, p := range ports {
		args = append(args, "-net", fmt.Sprintf("socket,listen=127.0.0.1:%d", p))
	}
	return args
}

// pingAcross runs "ouro ping -c 1" from nd to echo.b until an answer
// comes back or d has passed; it returns how long that took, or an error
// with the last attempt's output.
func pingAcross(n *testnet.Net, nd *testnet.Node, d time.Duration) (time.Duration, error) {
	start := time.Now()
	var last error
	for time.Since(start) < d {
		ctx, cancel := context.WithTimeout(context.Background(), min(800*time.Millisecond, d-time.Since(start)+10*time.Millisecond))
		out, err := n.Ouro(ctx, nd, "--json", "ping", "-c", "1", "-W", "300ms", "echo.b")
		cancel()
		if err == nil {
			var s pingSummary
			if jerr := json.Unmarshal([]byte(out), &s); jerr == nil && s.Received == 1 {
				return time.Since(start), nil
			}
			err = fmt.Errorf("no answer: %s", out)
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("no ping across the VM in %v: %w", d, last)
}

func TestQEMURestart(t *testing.T) {
	if os.Getenv("OURO_QEMU_TEST") == "" {
		t.Skip("SKIP: the QEMU test runs with OURO_QEMU_TEST=1 (make qemu-test)")
	}
	tool := findToolchain(t)
	elf := buildImage(t, tool, uniVMConfig("board = true", "board = true"))
	pa, pb := freePort(t), freePort(t)
	netArgs := listenHubNet("02:00:00:00:00:02", pa, pb)
	// QEMU listens from its start: boot it before the hosted nodes dial
	v := bootVMNet(t, elf, "vm", netArgs...)
	n := newNet(t)
	cfg := map[string]string{
		"a": restartMember("a", "eth", pa, ""),
		"b": restartMember("b", "udp", pb, uniEchoApp),
	}
	nodes := map[string]*testnet.Node{}
	startNode := func(name string) {
		t.Helper()
		nd, err := n.StartNode(name, cfg[name], testnet.NodeOpts{})
		if err != nil {
			t.Fatal(err)
		}
		nodes[name] = nd
	}
	startNode("a")
	startNode("b")
	d, err := pingAcross(n, nodes["a"], 30*time.Second)
	if err != nil {
		t.Fatalf("first ping: %v", err)
	}
	t.Logf("restart: layer up, first ping across the VM %v after the hosted nodes were ready", d.Round(time.Millisecond))

	var figs []string
	check := func(what string) {
		t.Helper()
		d, err := pingAcross(n, nodes["a"], restartDeadline)
		if err != nil {
			t.Fatalf("after %s: %v", what, err)
		}
		line := fmt.Sprintf("restart: after %s, a ping across the VM succeeded %v after it was ready", what, d.Round(time.Millisecond))
		t.Log(line)
		figs = append(figs, line)
	}

	for _, name := range []string{"a", "b"} {
		nodes[name].Kill()
		startNode(name)
		check("hosted node " + strings.ToUpper(name) + " was killed and restarted")
	}

	v.stop()
	v = bootVMNet(t, elf, "vm", netArgs...)
	check("the VM's reboot")

	if path := os.Getenv("OURO_QEMU_FIGURES"); path != "" {
		if fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			for _, l := range figs {
				fmt.Fprintln(fh, l)
			}
			fh.Close()
		}
	}
}
