package unicast_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// echo checks a flow both ways: a writes, b reads; b writes, a reads.
func echo(t testing.TB, a, b flow.Port, n int) {
	t.Helper()
	buf := make([]byte, flow.MaxSDU)
	for i := range n {
		msg := []byte(fmt.Sprintf("sdu %d", i))
		if err := a.Write(msg, time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("write #%d: %v", i, err)
		}
		k, err := b.Read(buf, time.Now().Add(2*time.Second))
		if err != nil {
			t.Fatalf("read #%d: %v", i, err)
		}
		if !bytes.Equal(buf[:k], msg) {
			t.Fatalf("read #%d got %q, want %q", i, buf[:k], msg)
		}
		if err := b.Write(msg, time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("write back #%d: %v", i, err)
		}
		if k, err = a.Read(buf, time.Now().Add(2*time.Second)); err != nil || !bytes.Equal(buf[:k], msg) {
			t.Fatalf("read back #%d: %q, %v", i, buf[:k], err)
		}
	}
}

func TestTwoNodes(t *testing.T) {
	n := unicasttest.New(t)
	a := n.Add("a.uni", true, nil, nil)
	b := n.Add("b.uni", false, []string{"a.uni"}, nil)
	n.WaitOperational(5 * time.Second)
	if a.IPCP.Addr() == b.IPCP.Addr() || a.IPCP.Addr() == 0 {
		t.Fatalf("addresses %d and %d", a.IPCP.Addr(), b.IPCP.Addr())
	}
	b.Register("echo")
	app, err := a.Alloc(ctxT(t, 5*time.Second), "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("Alloc: %v", err)
	}
	acc, err := b.Accept(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Req.Dst != "echo" || acc.Req.Src != "a.uni.app" {
		t.Errorf("FlowReq got dst %q src %q, want echo a.uni.app", acc.Req.Dst, acc.Req.Src)
	}
	echo(t, app, acc.Port, 20)

	// Deallocation reaches the peer.
	app.Close()
	buf := make([]byte, 16)
	if _, err := acc.Port.Read(buf, time.Now().Add(3*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("peer's Read after dealloc: %v, want ErrClosed", err)
	}
	n.WaitFor(2*time.Second, "flows gone", func() bool {
		return a.IPCP.Stats().FlowsActive == 0 && b.IPCP.Stats().FlowsActive == 0
	})

	// An unregistered name is not found.
	if _, err := a.Alloc(ctxT(t, 3*time.Second), "nobody", flow.BestEffort()); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("Alloc(nobody): %v, want ErrNotFound", err)
	}
}

func TestManagement(t *testing.T) {
	n := unicasttest.New(t)
	a := n.Add("a.uni", true, nil, nil)
	b := n.Add("b.uni", false, []string{"a.uni"}, nil)
	n.WaitOperational(5 * time.Second)
	b.Register("srv")
	n.WaitFor(2*time.Second, "directory entry at a", func() bool {
		return a.IPCP.Query(context.Background(), "srv") == nil
	})
	for _, cmd := range []string{"members", "routes", "pff", "dir", "flows", "stats"} {
		t.Run(cmd, func(t *testing.T) {
			r, err := a.IPCP.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: cmd})
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			if len(r.Table.Columns) == 0 {
				t.Fatalf("%s: no columns", cmd)
			}
			if cmd != "flows" && len(r.Table.Rows) == 0 {
				t.Fatalf("%s: no rows", cmd)
			}
		})
	}
	if _, err := a.IPCP.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: "bootstrap", Args: map[string]string{"admission": "open"}}); !errors.Is(err, flow.ErrExists) {
		t.Errorf("second bootstrap: %v, want ErrExists", err)
	}
	if _, err := a.IPCP.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: "frobnicate"}); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("unknown command: %v, want ErrInvalid", err)
	}
}

// TestManualBringUp drives a layer with management commands only.
func TestManualBringUp(t *testing.T) {
	n := unicasttest.New(t)
	a := n.Add("a.uni", false, nil, nil)
	b := n.Add("b.uni", false, nil, nil)
	ctx := ctxT(t, 10*time.Second)
	if _, err := a.IPCP.Mgmt(ctx, ipcp.MgmtReq{Cmd: unicast.CmdBootstrap, Args: map[string]string{"routing": "multipath", "addr_width": "8", "admission": "open"}}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	var err error
	n.WaitFor(5*time.Second, "enroll", func() bool {
		_, err = b.IPCP.Mgmt(ctx, ipcp.MgmtReq{Cmd: unicast.CmdEnroll, Args: map[string]string{"via": "a.uni"}})
		return err == nil
	})
	n.WaitOperational(5 * time.Second)
}
