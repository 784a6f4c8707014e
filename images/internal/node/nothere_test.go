package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// TestEthNotHere: node a has an Ethernet layer (preferred, first) on a
// segment with node c, and a UDP layer to node b. A program at a
// allocates "echo", which only b serves: a's Ethernet shim learns from
// c's "not here" that the segment does not hold it, and the IRM moves on
// to the UDP layer at once. The allocation completes well below the
// query timeout, although a started moments ago (the announcement
// warm-up, 3 s, has not passed: before "not here" the query waited for
// its whole timeout, the Ethernet shim's own 1 s, and the allocation took
// 1.0 s) — docs/shims.md, "Names on a segment".
func TestEthNotHere(t *testing.T) {
	pEth, pa, pb := freeTCPPort(t), freeUDPPort(t), freeUDPPort(t)
	appC, brC := app("other")
	startNode(t, fmt.Sprintf(`
[node]
name = "c"
[[ipcp]]
kind = "eth"
name = "c.seg"
layer = "seg"
[ipcp.eth]
qemu_listen = "127.0.0.1:%d"
`, pEth), appC)
	appB, brB := app("echo")
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
name = "b.net"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), appB)
	c, b := <-brC, <-brB
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Bind(ctx, "other"); err != nil { // c holds a name on the segment
		t.Fatal(err)
	}
	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	acceptEchoes(ctx, b)

	appA, brA := app("client")
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[irm]
query_timeout = "5s"
[[ipcp]]
kind = "eth"
name = "a.seg"
layer = "seg"
[ipcp.eth]
qemu_connect = "127.0.0.1:%d"
[[ipcp]]
kind = "udp"
name = "a.net"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pEth, pa, pb), appA)
	a := <-brA
	time.Sleep(200 * time.Millisecond) // a's start solicit is answered

	t0 := time.Now()
	p, info, err := a.Alloc(ctx, "echo", flow.BestEffort())
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("alloc echo: %v", err)
	}
	defer p.Close()
	if info.Layer != "net" {
		t.Fatalf("echo allocated in layer %q, want net", info.Layer)
	}
	if took > 500*time.Millisecond {
		t.Fatalf("allocating echo took %v, the query timeout is 1 s; want well below (the segment says not here)", took)
	}
	if err := p.Write([]byte("hi"), time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := p.Read(buf, time.Now().Add(2*time.Second)); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("echo: %q, %v", buf[:n], err)
	}
	t.Logf("echo allocated over layer net in %v", took)
}
