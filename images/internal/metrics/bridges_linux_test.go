package metrics

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/ipstack/ipstacktest"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

// TestScrapeBridges: after pings through a node's [[ipnet]] bridge (its
// own stack, 10.9.0.2), every counter "ouro bridges" shows for it is in
// one scrape, as ouro_ipnet_<column>_total labelled bridge, prefix and
// peer, with the same value (the node idle between two answers that
// agree), the route's packets are the replies the peer got, and the
// status page at "/" has the same table.
func TestScrapeBridges(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "node.sock")
	cfg, err := node.ParseConfig([]byte(`
[node]
name = "a"
metrics = "127.0.0.1:0"
[[ipcp]]
kind = "local"
[[ipnet]]
name = "ip.a"
netstack = "10.9.0.2/24"
routes = ["10.9.0.1=ip.t"]
`))
	if err != nil {
		t.Fatal(err)
	}
	bridges, err := node.IPNets(cfg, nil, logx.Test(t))
	if err != nil {
		t.Fatal(err)
	}
	m := New(Config{Addr: cfg.Node.Metrics, Log: logx.Test(t)})
	n, err := node.New(cfg, append([]node.Extra{node.GatewayWith(sock, cfg.GatewayOptions(), logx.Test(t)), m.Extra()}, bridges...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	c, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pings = 7
	_, replyBytes := ipstacktest.Ping(t, ctx, c, "ip.t", netip.MustParseAddr("10.9.0.1"), "ip.a", netip.MustParseAddr("10.9.0.2"), pings)

	req := ipcp.MgmtReq{Cmd: ipcp.CmdBridges}
	before := ouroMgmt(t, c, req)
	fams := scrape(t, m)
	resp, err := http.Get("http://" + m.Addr().String() + "/?format=json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	after := ouroMgmt(t, c, req)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("the bridge's counters moved while idle:\n%v\n%v", before.Rows, after.Rows)
	}
	var page status.Page
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(page.Bridges, after) {
		t.Errorf("status page's bridges %v, want %v", page.Bridges, after)
	}

	checked := 0
	for _, row := range after.RowMaps() {
		if row["bridge"] != "ip.a" || row["error"] != "-" {
			t.Errorf("row %v: want bridge ip.a, no error", row)
			continue
		}
		peer := row["peer"]
		if peer == "-" {
			peer = ""
		}
		labels := map[string]string{"bridge": "ip.a", "prefix": row["prefix"], "peer": peer}
		for _, col := range []string{"packets", "bytes", "drops", "too_big", "aqm_drops", "aqm_marks", "supers", "flows", "flow_errors"} {
			want, err := strconv.ParseFloat(row[col], 64)
			if err != nil {
				continue // "-": not counted for this row
			}
			name := "ouro_ipnet_" + col + "_total"
			got, ok := value(fams, name, labels)
			if !ok || got != want {
				t.Errorf("%s%v = %v (present %v); ouro bridges shows %v", name, labels, got, ok, want)
			}
			checked++
		}
	}
	route := map[string]string{"bridge": "ip.a", "prefix": "10.9.0.1/32", "peer": "ip.t"}
	for name, want := range map[string]float64{"ouro_ipnet_packets_total": pings, "ouro_ipnet_bytes_total": float64(replyBytes), "ouro_ipnet_flows_total": 1} {
		if got, ok := value(fams, name, route); !ok || got != want {
			t.Errorf("%s%v = %v (present %v), want %v", name, route, got, ok, want)
		}
	}
	if got, ok := value(fams, "ouro_ipnet_up", map[string]string{"bridge": "ip.a"}); !ok || got != 1 {
		t.Errorf("ouro_ipnet_up{bridge=ip.a} = %v (present %v), want 1", got, ok)
	}
	if checked < 10 {
		t.Errorf("checked %d counters; want every numeric one of %v", checked, after.Rows)
	}
}
