package prom

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// bridgeLabels label the IP bridges' counters: the bridge's name, the
// route's prefix (or "in", "no_route", "device" for the bridge's own
// rows) and the peer name the route goes to ("" for those).
var bridgeLabels = []string{"bridge", "prefix", "peer"}

// bridgeCounters are the columns of "bridges" exported as
// ouro_ipnet_<column>_total, with their help.
var bridgeCounters = []struct{ col, help string }{
	{"packets", "Packets an IP bridge sent on a route's flows (prefix \"in\": received from peers)."},
	{"bytes", "Bytes of those packets."},
	{"drops", "Packets an IP bridge dropped on a route (queue full, no flow, too big, refused); \"in\": received but not written; \"no_route\": matched no route; \"device\": device reads that failed."},
	{"too_big", "Of a route's drops, those larger than the flow's SDU limit (answered with ICMP too big)."},
	{"aqm_drops", "Of a route's drops, those of its active queue management (CoDel: packets that waited too long for the flow, not ECN-capable); \"in\": of what peers sent, dropped for the layer's congestion marks."},
	{"aqm_marks", "Packets an IP bridge's active queue management marked CE instead of dropping them (ECN-capable); \"in\": for the layer's congestion marks."},
	{"supers", "TCP super-packets an IP bridge read for a route (\"in\": received from peers)."},
	{"flows", "Flows an IP bridge allocated for a route."},
	{"flow_errors", "Allocations that failed for a route (\"in\": accepts that failed)."},
}

var bridgeUp = prometheus.NewDesc("ouro_ipnet_up", "Whether an IP bridge of the node answered for its counters (ouro bridges): 1, else 0 (its error is in the bridges table).",
	[]string{"bridge"}, nil)

// collectBridges exports the node's IP bridges' counters ("bridges"):
// per route, each of bridgeCounters as ouro_ipnet_<column>_total; per
// bridge, ouro_ipnet_up.
func collectBridges(ctx context.Context, m Mgmt, ch chan<- prometheus.Metric) {
	r, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdBridges})
	if errors.Is(err, flow.ErrInvalid) || errors.Is(err, flow.ErrRefused) {
		return // a node from before "bridges" (unknown to its IRM, or to its management flow)
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(bridgeUp, err)
		return
	}
	descs := make([]*prometheus.Desc, len(bridgeCounters))
	for i, c := range bridgeCounters {
		descs[i] = prometheus.NewDesc("ouro_ipnet_"+c.col+"_total", c.help, bridgeLabels, nil)
	}
	up := map[string]bool{}
	var order []string
	seen := map[string]bool{}
	for _, row := range r.Table.RowMaps() {
		b := row["bridge"]
		if _, ok := up[b]; !ok {
			order = append(order, b)
			up[b] = true
		}
		if e := row["error"]; e != "" && e != "-" {
			up[b] = false
			continue
		}
		peer := row["peer"]
		if peer == "-" {
			peer = ""
		}
		key := fmt.Sprintf("%s\x00%s\x00%s", b, row["prefix"], peer)
		if seen[key] { // two routes for one prefix: not in one bridge
			continue
		}
		seen[key] = true
		for i, c := range bridgeCounters {
			v, err := strconv.ParseFloat(row[c.col], 64)
			if err != nil {
				continue // "-": not counted for this row
			}
			ch <- prometheus.MustNewConstMetric(descs[i], prometheus.CounterValue, v, b, row["prefix"], peer)
		}
	}
	for _, b := range order {
		v := 0.0
		if up[b] {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(bridgeUp, prometheus.GaugeValue, v, b)
	}
}
