package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// TestSealedFlowOverShim: two nodes on 127.0.0.1 with only a shim
// between them (UDP; serial over a TCP stream), each with its identity
// in its signer component. A sealed flow from a program on a straight
// over the shim to an echo on b: both programs learn the other node's
// verified identity (the shim got the node's signer, and the IRM its
// peer through AllocPeer), SDUs of the sealed flow's largest size go
// through; b's shim seals every flow and refuses an unsealed allocation.
func TestSealedFlowOverShim(t *testing.T) {
	t.Run("udp", func(t *testing.T) {
		pa, pb := freeUDPPort(t), freeUDPPort(t)
		cfg := func(name string, port int, extra string) string {
			return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "sealed.echo" = "127.0.0.1:%d" }
%s
`, name, port, pb, extra)
		}
		sealedOverShim(t, cfg("a", pa, ""), cfg("b", pb, "seal = true"))
	})
	t.Run("serial", func(t *testing.T) {
		port := freeTCPPort(t)
		cfg := func(name, end string) string {
			return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "serial"
layer = "net"
[ipcp.serial]
%s
`, name, end)
		}
		sealedOverShim(t, cfg("a", fmt.Sprintf("tcp_listen = \"127.0.0.1:%d\"", port)),
			cfg("b", fmt.Sprintf("tcp_connect = \"127.0.0.1:%d\"\nseal = true", port)))
	})
}

// sealedOverShim runs TestSealedFlowOverShim between nodes a and b of
// the configurations given (b serves sealed.echo, and seals every flow).
func sealedOverShim(t *testing.T, cfgA, cfgB string) {
	ida, idb := newIdentity(t), newIdentity(t)
	xa, bra := app("app")
	xb, brb := app("echo")
	startNodeID(t, idb, cfgB, xb)
	startNodeID(t, ida, cfgA, xa)
	ba, bb := <-bra, <-brb
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	accepted := serveEcho(t, ctx, bb, "sealed.echo")
	q := flow.QoS{Loss: flow.MaxLoss, MaxGap: flow.MaxGapAny, Sealed: true}
	p, info, err := allocRetry(t, ctx, ba, "sealed.echo", q)
	if err != nil {
		t.Fatalf("sealed alloc over the shim: %v", err)
	}
	defer p.Close()
	in := checkPeers(t, info, accepted, ida, idb)
	if info.MaxSDU != flow.MaxSDU-24 || in.MaxSDU != info.MaxSDU {
		t.Fatalf("MaxSDU a %d, b %d, want %d", info.MaxSDU, in.MaxSDU, flow.MaxSDU-24)
	}
	msg := bytes.Repeat([]byte("s"), info.MaxSDU)
	if err := p.Write(msg, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, flow.MaxSDU)
	if n, err := p.Read(buf, time.Now().Add(5*time.Second)); err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("echo of %d bytes: %d, %v", len(msg), n, err)
	}
	q.Sealed = false
	if _, _, err := ba.Alloc(ctx, "sealed.echo", q); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("unsealed alloc to a shim that seals all: %v, want ErrRefused", err)
	}
}
