//go:build linux

package main

// Restarts on either side of a QEMU stream link (issue 18).
//
// TestQEMURestart runs A - VM - B (the armory router image forwarding in
// a unicast layer for two hosted nodes, as uniSubtests does) with the
// wiring that survives restarts: the VM's hub has two socket netdevs in
// listen mode and the hosted nodes dial them (qemu_connect, which dials
// again with back-off when the stream ends). Then, one after the other,
// hosted node A is stopped and started again, hosted node B likewise,
// and the VM is stopped and booted again; after each, A must get a ping
// across the VM to B's echo within restartDeadline of the restarted side
// being ready, with nothing else restarted. The times are logged (and
// appended to OURO_QEMU_FIGURES).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/kernel"
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

// hostedNode is a hosted node that a test can stop and start again.
type hostedNode struct {
	cfg string
	n   *node.Node
	b   *irm.Broker
}

// start starts the node from its configuration (again); it returns when
// the node's client session is open.
func (h *hostedNode) start(t *testing.T) {
	t.Helper()
	c, err := node.ParseConfig([]byte(h.cfg))
	if err != nil {
		t.Fatal(err)
	}
	xs, err := node.Apps(c, node.AppEnv{})
	if err != nil {
		t.Fatal(err)
	}
	brc := make(chan *irm.Broker, 1)
	xs = append(xs, node.Extra{Name: "client", Program: func(pd *kernel.PD) error {
		ep, err := pd.Slot("irm")
		if err != nil {
			return err
		}
		b, err := irm.OpenSession(pd.Context(), pd, ep, irm.SessionReq{})
		if err != nil {
			return err
		}
		brc <- b
		<-pd.Context().Done()
		return nil
	}, Mgmt: true})
	n, err := node.New(c, xs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	h.n, h.b = n, <-brc
}

// pingAcross allocates a flow from b to echo.b in layer uni and gets one
// SDU echoed on it, retrying until both worked or d has passed; it
// returns how long that took, or an error saying what failed last.
func pingAcross(b *irm.Broker, d time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	msg := []byte("ping across the VM")
	buf := make([]byte, flow.MaxSDU)
	var last error
	for ctx.Err() == nil {
		actx, acancel := context.WithTimeout(ctx, 800*time.Millisecond)
		p, info, err := b.Alloc(actx, "echo.b", flow.BestEffort())
		acancel()
		if err != nil {
			last = fmt.Errorf("alloc echo.b: %w", err)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if info.Layer != "uni" {
			p.Close()
			return 0, fmt.Errorf("echo.b allocated in layer %q, want uni", info.Layer)
		}
		for ctx.Err() == nil {
			t0 := time.Now()
			if err := p.Write(msg, t0.Add(200*time.Millisecond)); err != nil {
				last = fmt.Errorf("write: %w", err)
				break
			}
			n, err := p.Read(buf, t0.Add(300*time.Millisecond))
			if err == nil && string(buf[:n]) == string(msg) {
				p.Close()
				return time.Since(start), nil
			}
			if err != nil && !errors.Is(err, flow.ErrTimeout) {
				last = fmt.Errorf("read: %w", err)
				break
			}
			last = fmt.Errorf("no echo in 300ms")
		}
		p.Close()
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
	a := &hostedNode{cfg: restartMember("a", "eth", pa, "")}
	b := &hostedNode{cfg: restartMember("b", "udp", pb, uniEchoApp)}
	a.start(t)
	b.start(t)
	d, err := pingAcross(a.b, 30*time.Second)
	if err != nil {
		t.Fatalf("first ping: %v", err)
	}
	t.Logf("restart: layer up, first ping across the VM %v after the hosted nodes started", d.Round(time.Millisecond))

	var figs []string
	check := func(what string) {
		t.Helper()
		d, err := pingAcross(a.b, restartDeadline)
		if err != nil {
			t.Fatalf("after %s: %v", what, err)
		}
		line := fmt.Sprintf("restart: after %s, a ping across the VM succeeded %v after it was ready", what, d.Round(time.Millisecond))
		t.Log(line)
		figs = append(figs, line)
	}

	a.n.Stop()
	a.start(t)
	check("hosted node A's restart")

	b.n.Stop()
	b.start(t)
	check("hosted node B's restart")

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
