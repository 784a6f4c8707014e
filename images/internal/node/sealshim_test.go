package node

import (
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
	q, info, in := sealedEcho(t, ctx, ba, bb, ida, idb)
	if info.MaxSDU != flow.MaxSDU-24 || in.MaxSDU != info.MaxSDU {
		t.Fatalf("MaxSDU a %d, b %d, want %d", info.MaxSDU, in.MaxSDU, flow.MaxSDU-24)
	}
	q.Sealed = false
	if _, _, err := ba.Alloc(ctx, "sealed.echo", q); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("unsealed alloc to a shim that seals all: %v, want ErrRefused", err)
	}
}
