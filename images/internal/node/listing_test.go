package node

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

// fetchAll pages through a management listing over the node socket, as
// the ouro tool does.
func fetchAll(t *testing.T, ctx context.Context, b *flow.SocketBroker, req ipcp.MgmtReq) (ipcp.Table, int) {
	t.Helper()
	var all ipcp.Table
	pages := 0
	for next := 0; ; pages++ {
		r := req
		r.Args = map[string]string{ipcp.ArgOffset: strconv.Itoa(next)}
		var resp ipcp.MgmtResp
		if err := b.Mgmt(ctx, r, &resp); err != nil {
			t.Fatalf("%s from %d: %v", req.Cmd, next, err)
		}
		all.Columns = resp.Table.Columns
		all.Rows = append(all.Rows, resp.Table.Rows...)
		if resp.Next == 0 {
			return all, pages + 1
		}
		next = resp.Next
	}
}

// TestListingsPage fills a node with thousands of names and flows and
// lists them over the socket: every listing comes whole, a page at a
// time, where one answer used to exceed the control-message limit
// ("control message of 415115 bytes: SDU too big" for 24,052 flows).
func TestListingsPage(t *testing.T) {
	const names, flows = 3000, 1500
	sock := filepath.Join(t.TempDir(), "node.sock")
	x, ch := app("filler")
	startNode(t, "[node]\nname = \"a\"\n[irm]\nring_size = 4\n[[ipcp]]\nkind = \"local\"\nbufs = 65536\n", x, Gateway(sock, logx.Test(t)))
	b := <-ch
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for i := range names {
		if err := b.Bind(ctx, fmt.Sprintf("name-%05d", i)); err != nil {
			t.Fatal(err)
		}
	}
	accepted := make(chan error, 1)
	go func() {
		for range flows {
			if _, _, err := b.Accept(ctx); err != nil {
				accepted <- err
				return
			}
		}
		accepted <- nil
	}()
	for range flows {
		if _, _, err := b.Alloc(ctx, "name-00000", flow.QoS{}); err != nil {
			t.Fatalf("alloc: %v", err)
		}
	}
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}

	c, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var whole ipcp.MgmtResp
	if err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdNames}, &whole); err != nil || whole.Next == 0 || whole.Total != names {
		t.Fatalf("names, first page: next %d, total %d, %v", whole.Next, whole.Total, err)
	}

	start := time.Now()
	tab, pages := fetchAll(t, ctx, c, ipcp.MgmtReq{Cmd: ipcp.CmdNames})
	if len(tab.Rows) != names {
		t.Fatalf("names: %d rows, want %d", len(tab.Rows), names)
	}
	for i, r := range tab.Rows {
		if want := fmt.Sprintf("name-%05d", i); r[0] != want || r[2] != "a.local" {
			t.Fatalf("names row %d = %v, want %s in a.local", i, r, want)
		}
	}
	t.Logf("names: %d rows in %d pages, %v", len(tab.Rows), pages, time.Since(start))

	start = time.Now()
	tab, pages = fetchAll(t, ctx, c, ipcp.MgmtReq{Cmd: ipcp.CmdFlows})
	if len(tab.Rows) != 2*flows { // both ends' flows
		t.Fatalf("flows: %d rows, want %d", len(tab.Rows), 2*flows)
	}
	for i := 1; i < len(tab.Rows); i++ {
		a, _ := strconv.Atoi(tab.Rows[i-1][0])
		b, _ := strconv.Atoi(tab.Rows[i][0])
		if b <= a {
			t.Fatalf("flows rows %d, %d: ids %d, %d out of order or repeated", i-1, i, a, b)
		}
	}
	t.Logf("flows: %d rows in %d pages, %v", len(tab.Rows), pages, time.Since(start))

	// An IPCP's own table is paged by its component.
	tab, pages = fetchAll(t, ctx, c, ipcp.MgmtReq{Cmd: "flows", IPCP: "a.local"})
	if len(tab.Rows) < flows {
		t.Fatalf("a.local flows: %d rows, want at least %d", len(tab.Rows), flows)
	}
	t.Logf("a.local flows: %d rows in %d pages", len(tab.Rows), pages)
}
