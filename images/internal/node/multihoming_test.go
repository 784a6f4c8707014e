package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/layer/ipcp"
)

// TestMultiHoming registers a name in two layers (two UDP shims on
// different ports): it is reachable through either, and when the
// preferred layer goes away at the name's node, allocation finds it
// through the other.
func TestMultiHoming(t *testing.T) {
	pa1, pa2, pb1, pb2 := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	appB, brB := mgmtApp("echo")
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
name = "b.net2"
layer = "net2"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb2), appB)
	appA, brA := app("app")
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
name = "a.net1"
layer = "net1"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
[[ipcp]]
kind = "udp"
name = "a.net2"
layer = "net2"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pa1, pb1, pa2, pb2), appA)
	a, b := <-brA, <-brB
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// b's first layer is created at run time, so that it can go away.
	if _, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "b.net1", Layer: "net1",
		Args: map[string]string{"kind": "udp", "config": fmt.Sprintf("addr = \"127.0.0.1:%d\"", pb1)}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(ctx, "echo"); err != nil { // auto-registered in both layers
		t.Fatal(err)
	}
	names, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdNames})
	if err != nil || len(names.Table.Rows) != 1 || names.Table.Rows[0][2] != "b.net1,b.net2" {
		t.Fatalf("echo registered in %v (%v), want b.net1 and b.net2", names.Table.Rows, err)
	}
	acceptEchoes(ctx, b)

	ping := func(wantLayer string) { t.Helper(); echoIn(t, ctx, a, wantLayer) }
	ping("net1") // the first layer in a's configuration that reaches echo

	// b leaves net1: echo stays reachable through net2.
	if _, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "b.net1"}); err != nil {
		t.Fatal(err)
	}
	ping("net2")
}

// TestAllocRemembersLayer: on a node of two layers, an allocation to a
// name goes through the layer the last one to it went through, without
// asking every layer first, and falls back to asking them once that
// layer no longer reaches the name. Two local layers, loc1 preferred:
// echo registered in loc2 only, then in loc1 too. Without the memory the
// second allocation goes through loc1 (the first layer that reaches the
// name); with it, through loc2.
func TestAllocRemembersLayer(t *testing.T) {
	x, brs := mgmtApp("app")
	startNode(t, `
[node]
name = "a"
[[ipcp]]
kind = "local"
name = "a.loc1"
layer = "loc1"
[[ipcp]]
kind = "local"
name = "a.loc2"
layer = "loc2"
`, x)
	b := <-brs
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	serveEcho(t, ctx, b, "echo") // registered in both layers
	mgmt := func(cmd, layer string) {
		t.Helper()
		if _, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: cmd, Name: "echo", Layer: layer}); err != nil {
			t.Fatalf("%s echo in %s: %v", cmd, layer, err)
		}
	}
	alloc := func(wantLayer string) { t.Helper(); echoIn(t, ctx, b, wantLayer) }
	mgmt(ipcp.CmdUnreg, "loc1")
	alloc("loc2") // asked every layer: loc2 is the one
	mgmt(ipcp.CmdReg, "loc1")
	alloc("loc2") // remembered: loc1 is not asked
	mgmt(ipcp.CmdUnreg, "loc2")
	alloc("loc1") // loc2 says "not here": every layer asked again
	alloc("loc1")
}

// acceptEchoes accepts b's flows and echoes each until ctx ends.
func acceptEchoes(ctx context.Context, b *irm.Broker) {
	go func() {
		for {
			p, _, err := b.Accept(ctx)
			if err != nil {
				return
			}
			go func() { echoPort(p); p.Close() }()
		}
	}()
}

// echoIn allocates a flow to "echo" with b, checks that it is in
// wantLayer and that it carries an SDU there and back.
func echoIn(t *testing.T, ctx context.Context, b *irm.Broker, wantLayer string) {
	t.Helper()
	p, info, err := b.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc echo: %v", err)
	}
	defer p.Close()
	if info.Layer != wantLayer {
		t.Fatalf("flow in layer %q, want %q", info.Layer, wantLayer)
	}
	buf := make([]byte, 16)
	if err := p.Write([]byte("hi"), time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Read(buf, time.Now().Add(2*time.Second)); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("echo through %s: %q, %v", wantLayer, buf[:n], err)
	}
}
