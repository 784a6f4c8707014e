package prom

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ouronet/ouro/layer/ipcp"
)

// TestUnicastTables: a unicast IPCP's flows and its N-1 ports are both
// exported, the queue columns with them (ouro_flow_queued_out,
// ouro_port_queued, ...), labelled by flow and by port; a column a
// table lacks ("-", or not there) is left out, not exported as 0.
func TestUnicastTables(t *testing.T) {
	tables := map[string]ipcp.Table{
		"ipcps": {Columns: []string{"name", "layer", "kind", "state"}, Rows: [][]string{{"u", "uni", "unicast", "operational"}}},
		"stats": {Columns: []string{"counter", "value"}, Rows: [][]string{{"sent", "5"}}},
		"flows": {Columns: []string{"eid", "peer", "peer_eid", "name", "dir", "cube", "pkts_in", "queued_out", "queued_in"},
			Rows: [][]string{{"11", "2", "12", "app", "out", "raw", "4", "7", "-"}}},
		"ports": {Columns: []string{"kind", "name", "addr", "port", "queued", "queue_cap", "below", "backlog", "pkts_in", "pkts_out", "tx_errors"},
			Rows: [][]string{{"neighbour", "n1", "2", "1", "30", "1024", "5", "-", "9", "8", "0"}}},
	}
	m := func(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		if tb, ok := tables[req.Cmd]; ok {
			return ipcp.MgmtResp{Table: tb}, nil
		}
		return ipcp.MgmtResp{}, fmt.Errorf("no %q here", req.Cmd)
	}
	ch := make(chan prometheus.Metric, 100)
	collectIPCPs(context.Background(), m, ch)
	close(ch)
	got := map[string]float64{}
	for mt := range ch {
		var d dto.Metric
		if err := mt.Write(&d); err != nil {
			t.Fatalf("%v: %v", mt.Desc(), err)
		}
		name := mt.Desc().String()
		name = name[strings.Index(name, `"`)+1:]
		name = name[:strings.Index(name, `"`)]
		var ls []string
		for _, l := range d.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		got[name+"{"+strings.Join(ls, ",")+"}"] = d.GetUntyped().GetValue()
	}
	flowL := "{dir=out,eid=11,ipcp=u,layer=uni,name=app,peer=2}"
	portL := "{ipcp=u,kind=neighbour,layer=uni,name=n1}"
	for k, v := range map[string]float64{
		"ouro_flow_pkts_in" + flowL: 4, "ouro_flow_queued_out" + flowL: 7,
		"ouro_port_queued" + portL: 30, "ouro_port_queue_cap" + portL: 1024, "ouro_port_below" + portL: 5,
		"ouro_port_pkts_in" + portL: 9, "ouro_port_pkts_out" + portL: 8, "ouro_port_tx_errors" + portL: 0,
		"ouro_ipcp_sent{ipcp=u,layer=uni}": 5,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, k := range []string{"ouro_flow_queued_in" + flowL, "ouro_port_backlog" + portL} {
		if g, ok := got[k]; ok {
			t.Errorf("%s = %v exported, want it left out (the table says \"-\")", k, g)
		}
	}
}
