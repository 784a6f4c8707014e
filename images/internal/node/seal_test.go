package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/layer/ipcp"
)

// sealPair starts nodes a (bootstrap) and b (enrolled through a, with
// bUni's extra [ipcp.unicast] lines), a unicast layer over UDP on
// 127.0.0.1, each with its own identity; it returns a's and b's brokers
// and identities.
func sealPair(t *testing.T, bUni string) (ba, bb *irm.Broker, ida, idb *identity.Identity) {
	ida, idb = newIdentity(t), newIdentity(t)
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	cfg := uniPairConfig(pa, pb)
	xa, bra := mgmtApp("app")
	xb, brb := app("echo")
	startNodeID(t, ida, cfg("a", pa, `bootstrap = true
admission = "open"`), xa)
	startNodeID(t, idb, cfg("b", pb, "enroll = \"a.uni\"\n"+bUni), xb)
	return <-bra, <-brb, ida, idb
}

// TestSealedFlowBetweenNodes: two nodes on 127.0.0.1, a unicast layer
// over the UDP shim, each node's keys in its signer component. A sealed
// flow from a program on a to an echo on b: both programs learn the
// other node's verified identity, the IRMs list it, SDUs of the flow's
// (smaller) largest size go through; and b, which seals every flow,
// refuses an unsealed allocation.
func TestSealedFlowBetweenNodes(t *testing.T) {
	ba, bb, ida, idb := sealPair(t, "seal = true")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, info, in := sealedEcho(t, ctx, ba, bb, ida, idb)
	if info.MaxSDU == 0 || info.MaxSDU != in.MaxSDU {
		t.Fatalf("MaxSDU a %d, b %d", info.MaxSDU, in.MaxSDU)
	}
	r, err := ba.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdFlows})
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	col := slices.Index(r.Table.Columns, "max_sdu")
	for _, row := range r.Table.Rows {
		if row[2] == "sealed.echo" {
			listed = row[len(row)-1] == "b "+identity.NameOf(idb.Public())+" "+seal.Preferred()[0].String() // and the AEAD negotiated
			if col < 0 || row[col] != strconv.Itoa(info.MaxSDU) {
				t.Errorf("a's flows list the sealed flow's max_sdu (column %d) as %v, want %d", col, row, info.MaxSDU)
			}
		}
	}
	if !listed {
		t.Fatalf("a's flows do not name b and the AEAD as the sealed flow's peer: %v %v", r.Table.Columns, r.Table.Rows)
	}
	// b seals every flow: an unsealed request is refused.
	q.Sealed = false
	if _, _, err := ba.Alloc(ctx, "sealed.echo", q); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("unsealed alloc to a member that seals all: %v, want ErrRefused", err)
	}
}

// allocRetry allocates a flow to name, retrying while the name is not
// found yet (b enrolling, its name not in the directory), until ctx ends.
func allocRetry(t *testing.T, ctx context.Context, b *irm.Broker, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	var lastErr string
	for {
		// Generous: under -race on a loaded machine a directory lookup
		// and the key exchange's signatures take seconds.
		actx, acancel := context.WithTimeout(ctx, 15*time.Second)
		p, info, err := b.Alloc(actx, name, q)
		acancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, flow.ErrRefused) {
			return p, info, err
		}
		if last := err.Error(); last != lastErr {
			t.Logf("alloc %s: %v (retrying)", name, err)
			lastErr = last
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBindPeers: a program on b binds "friends" for flows from node a
// only and "strangers" for flows from another node only. a's sealed
// flow to "friends" is accepted (and its peer is a); its sealed flow to
// "strangers" and its unsealed flow to "friends" are refused by b's IRM
// (ErrRefused at a), and b's program never hears of them.
func TestBindPeers(t *testing.T) {
	ba, bb, ida, _ := sealPair(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := bb.BindPeers(ctx, "friends", []string{identity.NameOf(ida.Public())}); err != nil {
		t.Fatal(err)
	}
	if err := bb.BindPeers(ctx, "strangers", []string{identity.NameOf(newIdentity(t).Public())}); err != nil {
		t.Fatal(err)
	}
	if err := bb.BindPeers(ctx, "too many", make([]string, irm.MaxBindPeers+1)); !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("bind with %d peers: %v, want ErrInvalid", irm.MaxBindPeers+1, err)
	}
	accepted := make(chan flow.Info, 4)
	go func() {
		for {
			p, info, err := bb.Accept(ctx)
			if err != nil {
				return
			}
			p.Close()
			accepted <- info
		}
	}()
	sealed := flow.QoS{Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: true}
	p, _, err := allocRetry(t, ctx, ba, "friends", sealed)
	if err != nil {
		t.Fatalf("sealed alloc to a name that takes a's flows: %v", err)
	}
	p.Close()
	if in := <-accepted; in.Local != "friends" || in.Peer == nil || in.Peer.ID != identity.NameOf(ida.Public()) {
		t.Fatalf("b accepted %+v, want a's flow to friends", in)
	}
	if _, _, err := allocRetry(t, ctx, ba, "strangers", sealed); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("sealed alloc to a name that takes another node's flows only: %v, want ErrRefused", err)
	}
	unsealed := sealed
	unsealed.Sealed = false
	if _, _, err := allocRetry(t, ctx, ba, "friends", unsealed); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("unsealed alloc to a name bound with peers: %v, want ErrRefused", err)
	}
	select {
	case in := <-accepted:
		t.Fatalf("b's program heard of a refused flow: %+v", in)
	case <-time.After(200 * time.Millisecond):
	}
	// Bound again without a list: anyone.
	if err := bb.Bind(ctx, "strangers"); err != nil {
		t.Fatal(err)
	}
	if err := bb.BindPeers(ctx, "strangers", nil); err != nil {
		t.Fatal(err)
	}
	if p, _, err = allocRetry(t, ctx, ba, "strangers", sealed); err != nil {
		t.Fatalf("sealed alloc after the list was lifted: %v", err)
	}
	p.Close()
}

// serveEcho binds name on b and echoes every flow accepted for it until
// ctx ends; each accepted flow's info is sent on the channel returned.
func serveEcho(t *testing.T, ctx context.Context, b *irm.Broker, name string) <-chan flow.Info {
	t.Helper()
	if err := b.Bind(ctx, name); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan flow.Info, 4)
	go func() {
		for {
			p, info, err := b.Accept(ctx)
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
	return accepted
}

// checkPeers checks that a sealed flow's two ends see each other's
// verified node: info is a's side (node a, identity ida), the accepted
// flow's info b's (idb); it returns b's side.
func checkPeers(t *testing.T, info flow.Info, accepted <-chan flow.Info, ida, idb *identity.Identity) flow.Info {
	t.Helper()
	if info.Peer == nil || info.Peer.ID != identity.NameOf(idb.Public()) || info.Peer.Name != "b" {
		t.Fatalf("a's peer %v, want node b (%s)", info.Peer, identity.NameOf(idb.Public()))
	}
	in := <-accepted
	if in.Peer == nil || in.Peer.ID != identity.NameOf(ida.Public()) || in.Peer.Name != "a" {
		t.Fatalf("b's peer %v, want node a (%s)", in.Peer, identity.NameOf(ida.Public()))
	}
	return in
}

// uniPairConfig returns the configuration of node a or b of a unicast
// layer "uni" over a UDP shim on 127.0.0.1 (a at port pa, b at pb, each
// naming the other's unicast IPCP), with rest as extra [ipcp.unicast]
// lines.
func uniPairConfig(pa, pb int) func(name string, port int, rest string) string {
	return func(name string, port int, rest string) string {
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
`, name, port, pa, pb, name, rest)
	}
}

// sealedEcho serves an echo as "sealed.echo" on bb, allocates a sealed
// flow to it from ba (retrying while the layer comes up), checks that
// both ends see the other's verified node (a: ida, b: idb) and that an
// SDU of the flow's largest size comes back. It returns the QoS used and
// both ends' flow info; the flow closes when the test ends.
func sealedEcho(t *testing.T, ctx context.Context, ba, bb *irm.Broker, ida, idb *identity.Identity) (flow.QoS, flow.Info, flow.Info) {
	t.Helper()
	accepted := serveEcho(t, ctx, bb, "sealed.echo")
	q := flow.QoS{Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: true}
	p, info, err := allocRetry(t, ctx, ba, "sealed.echo", q)
	if err != nil {
		t.Fatalf("sealed alloc: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	in := checkPeers(t, info, accepted, ida, idb)
	msg := bytes.Repeat([]byte("s"), info.MaxSDU)
	if err := p.Write(msg, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, flow.MaxSDU)
	if n, err := p.Read(buf, time.Now().Add(5*time.Second)); err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("echo of %d bytes: %d, %v", len(msg), n, err)
	}
	return q, info, in
}
