package node

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/ipstack/ipstacktest"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
)

// stuckTarget answers no management command until the call gives up.
type stuckTarget struct{}

func (stuckTarget) Mgmt(ctx context.Context, _ ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	<-ctx.Done()
	return ipcp.MgmtResp{}, ctx.Err()
}

// socketMgmt is a node socket's management as status.Read asks it.
type socketMgmt struct{ c *flow.SocketBroker }

func (m socketMgmt) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	var resp ipcp.MgmtResp
	err := m.c.Mgmt(ctx, req, &resp)
	return resp, err
}

// TestBridgesCommand: a node's [[ipnet]] bridge (its own stack,
// 10.9.0.2) offers its counters to the IRM, and "ouro bridges" (the
// "bridges" command over the node's socket) shows them per route after
// pings from a peer on the socket: exactly the requests the bridge
// received ("in") and the replies it sent on its route to the peer. A
// component that offers a target and then answers nothing shows as a
// row with its error, within the target timeout, and the bridge's rows
// are still there. The status page has the same table.
func TestBridgesCommand(t *testing.T) {
	stuck := Extra{Name: "stuck", Objects: 1, Program: func(pd *kernel.PD) error {
		ep, err := pd.Slot(slotIRM)
		if err != nil {
			return err
		}
		b, err := irm.OpenSession(pd.Context(), pd, ep, irm.SessionReq{})
		if err != nil {
			return err
		}
		defer b.Close()
		if err := b.ServeTarget(pd.Context(), irm.TargetArgs{Kind: irm.TargetIPNet, Name: "ip.stuck"}, stuckTarget{}); err != nil {
			return err
		}
		<-pd.Context().Done()
		return nil
	}}
	n, c := bridgeNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
[[ipnet]]
name = "ip.n"
netstack = "10.9.0.2/24"
routes = ["10.9.0.1=ip.t"]
`, stuck)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const pings = 5
	reqBytes, replyBytes := ipstacktest.Ping(t, ctx, c, "ip.t", netip.MustParseAddr("10.9.0.1"), "ip.n", netip.MustParseAddr("10.9.0.2"), pings)

	var tab ipcp.Table
	for wait := time.Now().Add(10 * time.Second); ; { // both targets offered (the stuck one as it starts)
		start := time.Now()
		var resp ipcp.MgmtResp
		if err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdBridges}, &resp); err != nil {
			t.Fatalf("bridges: %v", err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("bridges took %v: a stuck bridge held it up", d)
		}
		tab = resp.Table
		if len(tab.Rows) == 5 || time.Now().After(wait) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := []string{"bridge", "prefix", "peer", "packets", "bytes", "drops", "too_big", "aqm_drops", "aqm_marks", "supers", "flows", "flow_errors", "error"}
	if fmt.Sprint(tab.Columns) != fmt.Sprint(want) {
		t.Fatalf("columns %v, want %v", tab.Columns, want)
	}
	rows := map[string][]string{}
	for _, r := range tab.Rows {
		rows[r[0]+" "+r[1]] = r
	}
	d, r := strconv.Itoa, func(k string) string { return strings.Join(rows[k], " ") }
	for k, w := range map[string]string{
		"ip.n 10.9.0.1/32": "ip.n 10.9.0.1/32 ip.t " + d(pings) + " " + d(replyBytes) + " 0 0 0 0 0 1 0 -",
		"ip.n in":          "ip.n in - " + d(pings) + " " + d(reqBytes) + " 0 - 0 0 0 - 0 -",
		"ip.n no_route":    "ip.n no_route - - - 0 - - - - - - -",
		"ip.n device":      "ip.n device - - - 0 - - - - - - -",
	} {
		if r(k) != w {
			t.Errorf("row %q: got %q, want %q\n%v", k, r(k), w, tab.Rows)
		}
	}
	if s := rows["ip.stuck -"]; len(s) != len(want) || !strings.Contains(s[len(s)-1], "deadline") {
		t.Errorf("the stuck target's row: %q, want its error\n%v", s, tab.Rows)
	}

	// Idle: the page reads the same counters.
	p := status.Read(ctx, socketMgmt{c})
	if len(p.Bridges.Rows) != len(tab.Rows) || fmt.Sprint(p.Bridges.Rows[:4]) != fmt.Sprint(tab.Rows[:4]) {
		t.Errorf("status page's bridges: %v, want %v", p.Bridges.Rows, tab.Rows)
	}

	// A new incarnation of the bridge (its old session not ended: the
	// kernel restarted it behind the IRM's back) offers its endpoint
	// again: it replaces the old one, whose cap names a dead
	// incarnation's endpoint, and its counters start from zero.
	if err := n.Kernel().Restart("ipnet.ip.n"); err != nil {
		t.Fatal(err)
	}
	for wait := time.Now().Add(10 * time.Second); ; {
		var resp ipcp.MgmtResp
		if err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdBridges}, &resp); err != nil {
			t.Fatalf("bridges: %v", err)
		}
		tab = resp.Table
		if len(tab.Rows) == 5 && strings.Join(tab.Rows[0], " ") == "ip.n 10.9.0.1/32 ip.t 0 0 0 0 0 0 0 0 0 -" {
			break
		}
		if time.Now().After(wait) {
			t.Fatalf("after the bridge's restart: %v; want its route's counters at 0, once", tab.Rows)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
