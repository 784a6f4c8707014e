package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/irm"
)

// TestSealedFlowBetweenNodes: two nodes on 127.0.0.1, a unicast layer
// over the UDP shim, each node's keys in its signer component. A sealed
// flow from a program on a to an echo on b: both programs learn the
// other node's verified identity, the IRMs list it, SDUs of the flow's
// (smaller) largest size go through; and b, which seals every flow,
// refuses an unsealed allocation.
func TestSealedFlowBetweenNodes(t *testing.T) {
	ida, idb := newIdentity(t), newIdentity(t)
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	cfg := func(name string, port int, uni string) string {
		return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "a.uni" = "127.0.0.1:%d", "b.uni" = "127.0.0.1:%d" }
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
%s
`, name, port, pa, pb, name, uni)
	}
	xa, bra := mgmtApp("app")
	xb, brb := app("echo")
	startNodeID(t, ida, cfg("a", pa, `bootstrap = true
admission = "open"`), xa)
	startNodeID(t, idb, cfg("b", pb, `enroll = "a.uni"
seal = true`), xb)
	ba, bb := <-bra, <-brb
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := bb.Bind(ctx, "sealed.echo"); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan flow.Info, 4)
	go func() {
		for {
			p, info, err := bb.Accept(ctx)
			if err != nil {
				return
			}
			accepted <- info
			go func() {
				defer p.Close()
				buf := make([]byte, flow.MaxSDU)
				for {
					n, err := p.Read(buf, time.Time{})
					if err != nil || p.Write(buf[:n], time.Time{}) != nil {
						return
					}
				}
			}()
		}
	}()
	q := flow.QoS{Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: true}
	var (
		p       flow.Port
		info    flow.Info
		err     error
		lastErr string
	)
	for {
		// Generous: under -race on a loaded machine a directory lookup
		// and the key exchange's signatures take seconds.
		actx, acancel := context.WithTimeout(ctx, 15*time.Second)
		p, info, err = ba.Alloc(actx, "sealed.echo", q)
		acancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		if last := err.Error(); last != lastErr {
			t.Logf("sealed alloc: %v (retrying)", err)
			lastErr = last
		}
		time.Sleep(100 * time.Millisecond) // b enrolling, its name not in the directory yet
	}
	if err != nil {
		t.Fatalf("sealed alloc: %v", err)
	}
	defer p.Close()
	if info.Peer == nil || info.Peer.ID != identity.NameOf(idb.Public()) || info.Peer.Name != "b" {
		t.Fatalf("a's peer %v, want node b (%s)", info.Peer, identity.NameOf(idb.Public()))
	}
	in := <-accepted
	if in.Peer == nil || in.Peer.ID != identity.NameOf(ida.Public()) || in.Peer.Name != "a" {
		t.Fatalf("b's peer %v, want node a (%s)", in.Peer, identity.NameOf(ida.Public()))
	}
	if info.MaxSDU == 0 || info.MaxSDU != in.MaxSDU {
		t.Fatalf("MaxSDU a %d, b %d", info.MaxSDU, in.MaxSDU)
	}
	msg := bytes.Repeat([]byte("s"), info.MaxSDU)
	if err := p.Write(msg, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, flow.MaxSDU)
	if n, err := p.Read(buf, time.Now().Add(5*time.Second)); err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("echo of %d bytes: %d, %v", len(msg), n, err)
	}
	r, err := ba.Mgmt(ctx, irm.MgmtReq{Cmd: irm.CmdFlows})
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, row := range r.Table.Rows {
		if row[2] == "sealed.echo" {
			listed = row[len(row)-1] == "b "+identity.NameOf(idb.Public())
		}
	}
	if !listed {
		t.Fatalf("a's flows do not name b as the sealed flow's peer: %v %v", r.Table.Columns, r.Table.Rows)
	}
	// b seals every flow: an unsealed request is refused.
	q.Sealed = false
	if _, _, err := ba.Alloc(ctx, "sealed.echo", q); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("unsealed alloc to a member that seals all: %v, want ErrRefused", err)
	}
}
