package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// TestCreateIPCP creates a UDP shim IPCP at run time (ouro create), uses
// it for a flow, and destroys it.
func TestCreateIPCP(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	appB, brB := mgmtApp("app")
	startNode(t, `
[node]
name = "b"
[[ipcp]]
kind = "local"
`, appB)
	appA, brA := app("app")
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pa, pb), appA)
	a, b := <-brA, <-brB
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	bad := []struct {
		name string
		req  ipcp.MgmtReq
		want error
	}{
		{"unknown kind", ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "x", Layer: "net", Args: map[string]string{"kind": "carrier-pigeon"}}, flow.ErrInvalid},
		{"bad config", ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "x", Layer: "net", Args: map[string]string{"kind": "udp", "config": "addr = "}}, nil},
		{"max_sdu beyond the node's buffers", ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "x", Layer: "net", Args: map[string]string{"kind": "udp", "config": fmt.Sprintf("addr = \"127.0.0.1:%d\"\nmax_sdu = 8000", freeUDPPort(t))}}, nil},
		{"duplicate", ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "b.local", Layer: "local", Args: map[string]string{"kind": "local"}}, flow.ErrExists},
		{"destroy configured", ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "b.local"}, flow.ErrInvalid},
		{"destroy unknown", ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "nope"}, flow.ErrNotFound},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Mgmt(ctx, tc.req)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("got %v, want an error wrapping %v", err, tc.want)
			}
			if strings.HasPrefix(tc.name, "max_sdu") && !strings.Contains(err.Error(), "max_sdu = 8000 needs") {
				t.Fatalf("got %v, want the buffers it needs named", err)
			}
		})
	}

	resp, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "b.udp", Layer: "net",
		Args: map[string]string{"kind": "udp", "config": fmt.Sprintf("addr = \"127.0.0.1:%d\"", pb)}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Log(resp.Text)
	ipcps, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil || len(ipcps.Table.Rows) != 2 || ipcps.Table.Rows[1][0] != "b.udp" || ipcps.Table.Rows[1][3] != "operational" {
		t.Fatalf("ipcps after create: %v, %v", ipcps.Table.Rows, err)
	}

	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	go func() {
		p, _, err := b.Accept(ctx)
		if err == nil {
			echoPort(p)
			p.Close()
		}
	}()
	p, info, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc through the created IPCP: %v", err)
	}
	if info.Layer != "net" {
		t.Errorf("flow in layer %q, want net", info.Layer)
	}
	buf := make([]byte, 64)
	if err := p.Write([]byte("hello"), time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Read(buf, time.Now().Add(2*time.Second)); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("echo: %q, %v", buf[:n], err)
	}

	if _, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "b.udp"}); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	// Its flows ended with it.
	if _, err := p.Read(buf, time.Now().Add(3*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("read after the peer's IPCP was destroyed: got %v, want ErrClosed", err)
	}
	p.Close()
	ipcps, err = b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil || len(ipcps.Table.Rows) != 1 {
		t.Fatalf("ipcps after destroy: %v, %v", ipcps.Table.Rows, err)
	}
}

// TestCreatedIPCPSigns: an IPCP created at run time signs with the node's
// key, through the signing cap of its kind the IRM copies into it: a UDP
// shim created with seal = true (which needs a signer: before, created
// IPCPs had none and the create failed) carries a sealed flow whose
// requester sees the node b as its verified peer.
func TestCreatedIPCPSigns(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	idb := newIdentity(t)
	appB, brB := mgmtApp("app")
	startNodeID(t, idb, "[node]\nname = \"b\"\n[[ipcp]]\nkind = \"local\"\n", appB)
	appA, brA := app("app")
	startNodeID(t, newIdentity(t), fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pa, pb), appA)
	a, b := <-brA, <-brB
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "b.udp", Layer: "net",
		Args: map[string]string{"kind": "udp", "config": fmt.Sprintf("addr = \"127.0.0.1:%d\"\nseal = true", pb)}}); err != nil {
		t.Fatalf("create a sealing udp shim: %v", err)
	}
	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	go func() {
		p, _, err := b.Accept(ctx)
		if err == nil {
			echoPort(p)
			p.Close()
		}
	}()
	q := flow.BestEffort()
	q.Sealed = true
	p, info, err := allocRetry(t, ctx, a, "echo", q)
	if err != nil {
		t.Fatalf("sealed alloc through the created IPCP: %v", err)
	}
	defer p.Close()
	if info.Peer == nil || info.Peer.ID != identity.NameOf(idb.Public()) {
		t.Fatalf("peer %v, want node b (%s)", info.Peer, identity.NameOf(idb.Public()))
	}
}
