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
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/tools/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// freePorts hands out this test binary's UDP ports, none twice.
var freePorts testnet.Ports

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago
// and that no other test of this binary was given.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	p, err := freePorts.UDP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// app is an Extra (an application component) whose program opens a
// session with the IRM and hands its broker to the test.
func app(name string) (Extra, <-chan *irm.Broker) {
	ch := make(chan *irm.Broker, 1)
	return Extra{Name: name, Program: func(pd *kernel.PD) error {
		ep, err := pd.Slot(slotIRM)
		if err != nil {
			return err
		}
		b, err := irm.OpenSession(pd.Context(), pd, ep, irm.SessionReq{})
		if err != nil {
			return err
		}
		ch <- b
		<-pd.Context().Done()
		return nil
	}}, ch
}

// mgmtApp is app with management authority.
func mgmtApp(name string) (Extra, <-chan *irm.Broker) {
	x, ch := app(name)
	x.Mgmt = true
	return x, ch
}

func startNode(t *testing.T, cfg string, extras ...Extra) *Node {
	t.Helper()
	return startParsed(t, parse(t, cfg), extras...)
}

// parse parses a test's node configuration.
func parse(t *testing.T, cfg string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startParsed starts the node of c with extras; it stops when the test ends.
func startParsed(t *testing.T, c *Config, extras ...Extra) *Node {
	t.Helper()
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

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestShims allocates a flow between two programs over each shim, echoes
// SDUs of every size across it, checks that deallocation reaches the peer
// and that an unknown name is a clear error.
func TestShims(t *testing.T) {
	tests := []struct {
		name string
		// configs returns the configurations of the accepting node (started
		// first) and the allocating node; an empty second config means both
		// programs live in the first node.
		configs func(t *testing.T) (string, string)
	}{
		{"udp4", func(t *testing.T) (string, string) {
			pa, pb := freeUDPPort(t), freeUDPPort(t)
			return fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pa, pb)
		}},
		{"udp6", func(t *testing.T) (string, string) {
			c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
			if err != nil {
				t.Skipf("no IPv6 loopback here: %v", err)
			}
			pb := c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
			return fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "[::1]:%d"
`, pb), `
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "[::1]:0"
dir = { echo = "[::1]:` + fmt.Sprint(pb) + `" }
`
		}},
		{"eth-stream", func(t *testing.T) (string, string) {
			p := freeTCPPort(t)
			return fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "eth"
layer = "net"
[ipcp.eth]
qemu_listen = "127.0.0.1:%d"
`, p), fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "eth"
layer = "net"
[ipcp.eth]
qemu_connect = "127.0.0.1:%d"
`, p)
		}},
		{"serial-tcp", func(t *testing.T) (string, string) {
			p := freeTCPPort(t)
			return fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "serial"
layer = "net"
[ipcp.serial]
tcp_listen = "127.0.0.1:%d"
`, p), fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "serial"
layer = "net"
[ipcp.serial]
tcp_connect = "127.0.0.1:%d"
`, p)
		}},
		{"local", func(t *testing.T) (string, string) {
			return `
[node]
name = "a"
[[ipcp]]
kind = "local"
layer = "net"
`, ""
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfgB, cfgA := tc.configs(t)
			appB, brB := app("echo")
			appA, brA := app("app")
			if cfgA == "" {
				startNode(t, cfgB, appB, appA)
			} else {
				startNode(t, cfgB, appB)
				startNode(t, cfgA, appA)
			}
			echoAcross(t, <-brA, <-brB)
		})
	}
}

func echoAcross(t *testing.T, a, b *irm.Broker) {
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
	dl := func() time.Time { return time.Now().Add(2 * time.Second) }
	for _, size := range []int{1, 2, 46, 64, 500, 1400} {
		for i := 0; i < 20; i++ {
			msg := bytes.Repeat([]byte{byte(i)}, size)
			if err := pA.Write(msg, dl()); err != nil {
				t.Fatalf("write %d bytes: %v", size, err)
			}
			n, err := pB.Read(buf, dl())
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("read %d-byte SDU: got %d bytes, %v", size, n, err)
			}
			if err := pB.Write(buf[:n], dl()); err != nil {
				t.Fatalf("echo %d bytes: %v", size, err)
			}
			n, err = pA.Read(buf, dl())
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("echoed %d-byte SDU: got %d bytes, %v", size, n, err)
			}
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

// TestBroadcastLayer joins programs of two nodes to a broadcast layer
// over the UDP shim: what one writes, the other reads.
func TestBroadcastLayer(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	appB, brB := app("app")
	appA, brA := app("app")
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "a.bc" = "127.0.0.1:%d" }
[[ipcp]]
name = "b.bc"
kind = "broadcast"
layer = "bc"
[ipcp.broadcast]
lower = ["udp"]
retry = "50ms"
`, pb, pa), appB)
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "b.bc" = "127.0.0.1:%d" }
[[ipcp]]
name = "a.bc"
kind = "broadcast"
layer = "bc"
[ipcp.broadcast]
lower = ["udp"]
neighbours = ["b.bc"]
retry = "50ms"
`, pa, pb), appA)
	a, b := <-brA, <-brB
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pa2, _, err := a.Join(ctx, "bc")
	if err != nil {
		t.Fatalf("join at a: %v", err)
	}
	defer pa2.Close()
	pb2, _, err := b.Join(ctx, "bc")
	if err != nil {
		t.Fatalf("join at b: %v", err)
	}
	defer pb2.Close()
	// The members connect in the background: write until the other side
	// hears, then check one SDU each way.
	buf := make([]byte, 64)
	deadline := time.Now().Add(8 * time.Second)
	for {
		if err := pa2.Write([]byte("hello"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := pb2.Read(buf, time.Now().Add(200*time.Millisecond))
		if err == nil && string(buf[:n]) == "hello" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b never heard a's broadcast: last %q, %v", buf[:n], err)
		}
	}
	for { // drain what a sent before b heard it
		if _, err := pb2.Read(buf, time.Now().Add(100*time.Millisecond)); err != nil {
			break
		}
	}
	if err := pb2.Write([]byte("back"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := pa2.Read(buf, time.Now().Add(2*time.Second)); err != nil || string(buf[:n]) != "back" {
		t.Fatalf("a read %q, %v; want back", buf[:n], err)
	}
}
