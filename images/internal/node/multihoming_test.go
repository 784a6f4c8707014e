package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
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
	go func() {
		for {
			p, _, err := b.Accept(ctx)
			if err != nil {
				return
			}
			go func() { echoPort(p); p.Close() }()
		}
	}()

	ping := func(wantLayer string) {
		t.Helper()
		p, info, err := a.Alloc(ctx, "echo", flow.BestEffort())
		if err != nil {
			t.Fatalf("alloc echo: %v", err)
		}
		defer p.Close()
		if info.Layer != wantLayer {
			t.Errorf("flow in layer %q, want %q", info.Layer, wantLayer)
		}
		buf := make([]byte, 16)
		if err := p.Write([]byte("hi"), time.Now().Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err := p.Read(buf, time.Now().Add(2*time.Second)); err != nil || string(buf[:n]) != "hi" {
			t.Fatalf("echo through %s: %q, %v", wantLayer, buf[:n], err)
		}
	}
	ping("net1") // the first layer in a's configuration that reaches echo

	// b leaves net1: echo stays reachable through net2.
	if _, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "b.net1"}); err != nil {
		t.Fatal(err)
	}
	ping("net2")
}
