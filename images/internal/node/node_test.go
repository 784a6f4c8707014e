package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/kernel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// app is an Extra whose program hands its broker to the test.
func app(name string) (Extra, <-chan *irm.Broker) {
	ch := make(chan *irm.Broker, 1)
	return Extra{Name: name, Program: func(pd *kernel.PD) error {
		ep, err := pd.Slot(slotIRM)
		if err != nil {
			return err
		}
		ch <- irm.NewBroker(pd, ep, 0)
		<-pd.Context().Done()
		return nil
	}}, ch
}

func startNode(t *testing.T, cfg string, extras ...Extra) *Node {
	t.Helper()
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(c, extras...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

func TestTwoNodesOverUDP(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	appA, brA := app("app")
	appB, brB := app("app")
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
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), appB)
	a, b := <-brA, <-brB
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatalf("bind: %v", err)
	}
	accepted := make(chan flow.Port, 1)
	go func() {
		p, info, err := b.Accept(ctx)
		if err != nil {
			t.Errorf("accept: %v", err)
			close(accepted)
			return
		}
		if info.Local != "echo" || info.Layer != "net" {
			t.Errorf("accepted info = %+v, want local echo in layer net", info)
		}
		accepted <- p
	}()
	pA, info, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc: %v", err)
	}
	if info.Layer != "net" || info.Remote != "echo" {
		t.Errorf("alloc info = %+v", info)
	}
	pB := <-accepted
	if pB == nil {
		t.FailNow()
	}
	buf := make([]byte, flow.MaxSDU)
	for i := 0; i < 100; i++ {
		msg := []byte(fmt.Sprintf("sdu %d", i))
		if err := pA.Write(msg, time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		n, err := pB.Read(buf, time.Now().Add(2*time.Second))
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Fatalf("got %q, want %q", buf[:n], msg)
		}
		if err := pB.Write(buf[:n], time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		n, err = pA.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("echo %d: got %q, %v; want %q", i, buf[:n], err, msg)
		}
	}
	// Deallocation is signalled to the peer.
	pA.Close()
	if _, err := pB.Read(buf, time.Now().Add(3*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("peer read after dealloc: got %v, want ErrClosed", err)
	}
	pB.Close()

	// An unknown name is a clear error.
	if _, _, err := a.Alloc(ctx, "nobody", flow.BestEffort()); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("alloc unknown name: got %v, want ErrNotFound", err)
	}
}
