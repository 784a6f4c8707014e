package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/rpc"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
)

// component is a component's PD and its cap to the IRM, handed to a test
// that acts as that component (as an attacker inside the node would).
type component struct {
	pd  *kernel.PD
	irm kernel.Cap
}

// rawApp is an Extra whose program hands the test its PD and IRM cap.
func rawApp(name string, mgmt bool) (Extra, <-chan component) {
	ch := make(chan component, 1)
	return Extra{Name: name, Mgmt: mgmt, Program: func(pd *kernel.PD) error {
		ep, err := pd.Slot(slotIRM)
		if err != nil {
			return err
		}
		ch <- component{pd, ep}
		<-pd.Context().Done()
		return nil
	}}, ch
}

func (c component) session(t *testing.T) *irm.Broker {
	t.Helper()
	b, err := irm.OpenSession(context.Background(), c.pd, c.irm, irm.SessionReq{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestAuthority acts as an ordinary application component and tries what
// only IPCPs, the management role or another program may do: each is
// refused, and the victim is unaffected.
func TestAuthority(t *testing.T) {
	evilX, evilCh := rawApp("app.evil", false)
	victimX, victimCh := rawApp("app.victim", false)
	startNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
`, evilX, victimX)
	evil, victim := <-evilCh, <-victimCh
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vs := victim.session(t)
	if err := vs.Bind(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	es := evil.session(t)
	raw := rpc.NewClient(evil.pd, evil.irm)
	viaSession := rpc.NewClient(evil.pd, es.Cap())

	for _, tc := range []struct {
		name string
		try  func() error
		want error
	}{
		{"FlowReq with its own cap", func() error {
			_, err := raw.Call(ctx, irm.OpFlowReq, ipcp.AllocReq{Dst: "svc", Src: "spoofed"}, nil, nil)
			return err
		}, kernel.ErrRights},
		{"FlowReq with its session cap", func() error {
			_, err := viaSession.Call(ctx, irm.OpFlowReq, ipcp.AllocReq{Dst: "svc", Src: "spoofed"}, nil, nil)
			return err
		}, kernel.ErrRights},
		{"Hello", func() error {
			_, err := raw.Call(ctx, irm.OpHello, ipcp.Info{Name: "n.local"}, nil, nil)
			return err
		}, kernel.ErrRights},
		{"session operation without a session", func() error {
			_, err := raw.Call(ctx, irm.OpBind, irm.NameArgs{Name: "x"}, nil, nil)
			return err
		}, kernel.ErrRights},
		{"a management session", func() error {
			_, err := irm.OpenSession(ctx, evil.pd, evil.irm, irm.SessionReq{Mgmt: true})
			return err
		}, kernel.ErrRights},
		{"bind an IPCP's name", func() error { return es.Bind(ctx, "n.local") }, kernel.ErrRights},
		{"bind another program's name", func() error { return es.Bind(ctx, "svc") }, flow.ErrExists},
		{"unbind another program's name", func() error { return es.Unbind(ctx, "svc") }, flow.ErrNotFound},
		{"unregister another program's name", func() error {
			_, err := es.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdUnreg, Name: "svc"})
			return err
		}, kernel.ErrRights},
		{"register a name", func() error {
			_, err := es.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: "svc2"})
			return err
		}, kernel.ErrRights},
		{"create an IPCP", func() error {
			_, err := es.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdCreate, Name: "x", Layer: "x", Args: map[string]string{"kind": "local"}})
			return err
		}, kernel.ErrRights},
		{"destroy an IPCP", func() error {
			_, err := es.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdDestroy, Name: "n.local"})
			return err
		}, kernel.ErrRights},
		{"an IPCP command that changes state", func() error {
			_, err := es.Mgmt(ctx, ipcp.MgmtReq{Cmd: "enroll", IPCP: "n.local", Args: map[string]string{"via": "x"}})
			return err
		}, kernel.ErrRights},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.try(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want an error wrapping %v", err, tc.want)
			}
		})
	}
	// What it may do: read-only management, its own names.
	if _, err := es.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs}); err != nil {
		t.Errorf("ipcps: %v", err)
	}
	if err := es.Bind(ctx, "mine"); err != nil {
		t.Errorf("bind its own name: %v", err)
	}
	// Load sharing: a second session of the same component may bind it.
	if err := evil.session(t).Bind(ctx, "mine"); err != nil {
		t.Errorf("bind from a second session of the same component: %v", err)
	}

	// The victim still gets its flows.
	acc := make(chan error, 1)
	go func() {
		p, info, err := vs.Accept(ctx)
		if err == nil {
			p.Close()
			if info.Local != "svc" {
				err = fmt.Errorf("accepted a flow to %q", info.Local)
			}
		}
		acc <- err
	}()
	p, _, err := evil.session(t).Alloc(ctx, "svc", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc to the victim: %v", err)
	}
	p.Close()
	if err := <-acc; err != nil {
		t.Fatalf("the victim's accept: %v", err)
	}
}

// TestSessionEnd checks that an ended session stays ended: its cap is
// revoked (also in the hands of whoever it was lent to), its names are
// free, its Accepts end.
func TestSessionEnd(t *testing.T) {
	x, ch := rawApp("app.x", false)
	startNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
`, x)
	c := <-ch
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := irm.OpenSession(ctx, c.pd, c.irm, irm.SessionReq{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(ctx, "name"); err != nil {
		t.Fatal(err)
	}
	lent, err := c.pd.Copy(b.Cap()) // as if handed to someone else
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		_, _, err := b.Accept(ctx)
		accepted <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the Accept reach the IRM
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, flow.ErrClosed) {
			t.Errorf("accept in an ended session: %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("an Accept of an ended session still waits")
	}
	for _, op := range []rpc.Op{irm.OpBind, irm.OpAccept, irm.OpAlloc} {
		_, err := rpc.NewClient(c.pd, lent).Call(ctx, op, irm.NameArgs{Name: "name"}, nil, nil)
		if !errors.Is(err, kernel.ErrRevoked) {
			t.Errorf("op %d on a lent cap of the ended session: %v, want ErrRevoked", op, err)
		}
	}
	// Its name is free for another session.
	b2, err := irm.OpenSession(ctx, c.pd, c.irm, irm.SessionReq{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.Bind(ctx, "name"); err != nil {
		t.Fatal(err)
	}
	if b2.Session().ID == b.Session().ID {
		t.Fatal("a session id was reused")
	}
}
