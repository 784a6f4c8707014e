package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/mgmtflow"
	"github.com/ouronet/ouro/layer/ipcp"
)

func TestMemberNode(t *testing.T) {
	for in, want := range map[string]string{"b.uni": "b", "r1.core.uni": "r1.core", "solo": "solo", ".x": ".x"} {
		if got := memberNode(in); got != want {
			t.Errorf("memberNode(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestViaFakeNode: --via over the fake IRM: a program serves the
// management flow with mgmtflow.Serve in front of the fake node's
// management, as a node's mgmt app does; the tool's answer is the one the
// socket gives, changes are refused, and flow commands and status without
// --via are usage errors.
func TestViaFakeNode(t *testing.T) {
	tn := newTestNet()
	tn.mgmt.answer = func(r ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		if r.Cmd == "stats" && r.IPCP == "r.uni" {
			return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"counter", "value"}, Rows: [][]string{{"sent", "7"}, {"delivered", "9"}}}}, nil
		}
		return ipcp.MgmtResp{}, flow.ErrInvalid
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := tn.root.Program("mgmt-app")
	if err := srv.Bind(ctx, "r.mgmt"); err != nil {
		t.Fatal(err)
	}
	local := fakeNode{Broker: srv, mgmt: tn.mgmt}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			p, info, err := srv.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				defer p.Close()
				mgmtflow.Serve(ctx, p, info, mgmtAdapter{local})
			}()
		}
	}()
	code, want, _ := tn.ouro(ctx, "stats", "r.uni")
	if code != 0 {
		t.Fatalf("local stats: exit %d", code)
	}
	code, got, errs := tn.ouro(ctx, "--via", "r.mgmt", "stats", "r.uni")
	if code != 0 || got != want {
		t.Fatalf("stats --via: exit %d, %q (%s); want %q", code, got, errs, want)
	}
	before := len(tn.mgmt.reqs)
	if code, _, errs := tn.ouro(ctx, "--via", "r.mgmt", "destroy", "r.uni"); code != 1 || !strings.Contains(errs, "refused") {
		t.Errorf("destroy --via: exit %d, %s; want refused", code, errs)
	}
	if len(tn.mgmt.reqs) != before {
		t.Errorf("a refused destroy reached the node: %+v", tn.mgmt.reqs[before:])
	}
	if code, _, errs := tn.ouro(ctx, "--via", "r.mgmt", "ping", "x"); code != 2 {
		t.Errorf("ping --via: exit %d, %s; want 2", code, errs)
	}
	if code, _, errs := tn.ouro(ctx, "status"); code != 2 || !strings.Contains(errs, "needs --via") {
		t.Errorf("status without --via: exit %d, %s; want 2", code, errs)
	}
	cancel()
	srv.Close()
	<-done
}

// mgmtAdapter is the fake node's management as mgmtflow.Mgmter.
type mgmtAdapter struct{ n fakeNode }

func (m mgmtAdapter) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	var r ipcp.MgmtResp
	err := m.n.Mgmt(ctx, req, &r)
	return r, err
}
