package node

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
)

// TestStalledProgramContained runs two programs on node b's socket (each
// in its session component) behind one UDP shim with a budget of 64
// buffers: one accepts a flow and never reads it while node a floods it,
// the other echoes. Every ping to the echoing program comes back: what
// the stalled flow holds is charged to its ring, not to the shim. (Before
// buffers in a ring were charged to their ring's creator, the shim's 64
// buffers were all queued to the stalled program: 0 of 20.)
func TestStalledProgramContained(t *testing.T) {
	const pings = 20
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	sock := filepath.Join(t.TempDir(), "b.sock")
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "net"
bufs = 64
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), Gateway(sock, logx.Test(t)))
	appA, brA := app("app")
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { stall = "127.0.0.1:%d", echo = "127.0.0.1:%d" }
`, pa, pb, pb), appA)
	a := <-brA
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The stalled program: accepts, never reads.
	stalled, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if err := stalled.Bind(ctx, "stall"); err != nil {
		t.Fatal(err)
	}
	held := make(chan flow.Port, 1)
	go func() {
		p, _, err := stalled.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		held <- p
	}()
	// The echoing program.
	echo, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	if err := echo.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	go func() {
		p, _, err := echo.Accept(ctx)
		if err != nil {
			return
		}
		defer p.Close()
		echoPort(p)
	}()

	flood, _, err := a.Alloc(ctx, "stall", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	if p := <-held; p != nil {
		defer p.Close()
	}
	stop := make(chan struct{})
	flooded := make(chan int, 1)
	go func() {
		sdu := make([]byte, 1000)
		n := 0
		for {
			select {
			case <-stop:
				flooded <- n
				return
			default:
			}
			if flood.Write(sdu, time.Now().Add(100*time.Millisecond)) == nil {
				n++
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the stalled flow's socket and ring fill up

	p, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc to the echoing program during the flood: %v", err)
	}
	defer p.Close()
	got := 0
	buf := make([]byte, 64)
	for i := 0; i < pings; i++ {
		msg := fmt.Sprintf("ping %d", i)
		if err := p.Write([]byte(msg), time.Now().Add(time.Second)); err != nil {
			continue
		}
		// Skip late echoes of earlier pings.
		for {
			n, err := p.Read(buf, time.Now().Add(time.Second))
			if err != nil {
				break
			}
			if string(buf[:n]) == msg {
				got++
				break
			}
		}
	}
	close(stop)
	t.Logf("flooded the stalled flow with %d SDUs; echo %d/%d", <-flooded, got, pings)
	// Uncontained, the stalled flow took the shim's whole budget and the
	// echo got 0/20. The flood shares b's UDP socket with the pings, so
	// under load the host kernel may drop a ping datagram from the full
	// socket buffer: that loss is below the node and not what is tested.
	if got < pings*3/4 {
		t.Fatalf("echo %d/%d while another program on the same shim stalled", got, pings)
	}
}
