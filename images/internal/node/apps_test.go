package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
	"github.com/ouronet/ouro/kernel/logx"
)

// startWithApps starts a node from cfg with its configured apps and extras.
func startWithApps(t *testing.T, cfg string, env AppEnv, extras ...Extra) *Node {
	t.Helper()
	return startParsedApps(t, parse(t, cfg), env, extras...)
}

// startParsedApps starts the node of c with its in-node apps and extras.
func startParsedApps(t *testing.T, c *Config, env AppEnv, extras ...Extra) *Node {
	t.Helper()
	apps, err := Apps(c, env)
	if err != nil {
		t.Fatal(err)
	}
	return startParsed(t, c, append(apps, extras...)...)
}

// TestEchoAppOverNetstack runs the UDP shim of two hosted nodes on their
// own netstacks (127.0.10.0/24) joined by a QEMU socket stream, as a VM's
// would be, and pings the in-node echo app of one from the other; then
// the halt app reports its code.
func TestEchoAppOverNetstack(t *testing.T) {
	port := freeTCPPort(t)
	halted := make(chan int, 1)
	startWithApps(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "ip"
[ipcp.udp]
addr = "127.0.10.2:3435"
[ipcp.udp.netstack]
addrs = ["127.0.10.2/24"]
qemu_listen = "127.0.0.1:%d"
[[app]]
kind = "echo"
name = "echo.b"
[[app]]
kind = "halt"
name = "halt.b"
`, port), AppEnv{Log: logx.Test(t), Halt: func(code int) { halted <- code }})

	appA, brA := app("client")
	startWithApps(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "ip"
[ipcp.udp]
dir = { "echo.b" = "127.0.10.2:3435", "halt.b" = "127.0.10.2:3435" }
[ipcp.udp.netstack]
addrs = ["127.0.10.1/24"]
qemu_connect = "127.0.0.1:%d"
`, port), AppEnv{}, appA)

	a := <-brA
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// b's echo app starts beside b's IRM: until it has bound its name, b
	// answers "not found"; and an attempt can time out on a loaded
	// machine. Both are retried.
	var (
		p    flow.Port
		info flow.Info
		err  error
	)
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		p, info, err = a.Alloc(actx, "echo.b", flow.BestEffort())
		acancel()
		if err == nil || !errors.Is(err, flow.ErrNotFound) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, flow.ErrTimeout) || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("alloc echo.b: %v", err)
	}
	if info.Layer != "ip" {
		t.Errorf("layer = %q, want ip", info.Layer)
	}
	buf := make([]byte, flow.MaxSDU)
	dl := func() time.Time { return time.Now().Add(3 * time.Second) }
	for _, size := range []int{1, 64, 1000, flow.MaxSDU} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if err := p.Write(msg, dl()); err != nil {
			t.Fatalf("write %d: %v", size, err)
		}
		n, err := p.Read(buf, dl())
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("echo of %d bytes: got %d, %v", size, n, err)
		}
	}
	p.Close()

	h, _, err := a.Alloc(ctx, "halt.b", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc halt.b: %v", err)
	}
	defer h.Close()
	if err := h.Write([]byte("halt 42"), dl()); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-halted:
		if code != 42 {
			t.Fatalf("halt code %d, want 42", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("halt app did not halt")
	}
}

// TestAppsConfig checks the [[app]] validation.
func TestAppsConfig(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		env       AppEnv
		ok        bool
	}{
		{"echo", "[[app]]\nkind = \"echo\"\n", AppEnv{}, true},
		{"unknown kind", "[[app]]\nkind = \"chat\"\n", AppEnv{}, false},
		{"halt without Halt", "[[app]]\nkind = \"halt\"\n", AppEnv{}, false},
		{"twice", "[[app]]\nkind = \"echo\"\n[[app]]\nkind = \"echo\"\n", AppEnv{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte("[node]\nname = \"n\"\n" + tc.cfg))
			if err != nil {
				if tc.ok {
					t.Fatal(err)
				}
				return // refused when parsed, before Apps
			}
			_, err = Apps(c, tc.env)
			if (err == nil) != tc.ok {
				t.Fatalf("Apps: err = %v, want ok = %v", err, tc.ok)
			}
		})
	}
}

// TestPerfApp: "ouro perf"'s client protocol against the in-node perf
// app over a local layer: the server's report comes back and counts what
// was sent (a local layer loses nothing), pings are echoed.
func TestPerfApp(t *testing.T) {
	x, brokers := app("client")
	startWithApps(t, `
[node]
name = "p"
[[ipcp]]
kind = "local"
[[app]]
kind = "perf"
`, AppEnv{Log: logx.Test(t)}, x)
	b := <-brokers
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var p flow.Port
	var err error
	for p == nil { // the app binds "perf" as the node starts
		if p, _, err = b.Alloc(ctx, "perf", flow.BestEffort()); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("alloc perf: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer p.Close()
	res, err := probe.PerfClient(ctx, p, probe.PerfConfig{Name: "perf", Duration: 300 * time.Millisecond, Size: 1000, Rate: 2000})
	if err != nil {
		t.Fatalf("perf: %v", err)
	}
	if !res.HaveServer || res.Sent == 0 || res.Server.SDUs != res.Sent {
		t.Fatalf("perf result: sent %d, server reported %v with %d SDUs", res.Sent, res.HaveServer, res.Server.SDUs)
	}
	t.Logf("perf app: %d SDUs sent, %d counted, %.0f SDU/s", res.Sent, res.Server.SDUs, res.RecvPPS)
}
