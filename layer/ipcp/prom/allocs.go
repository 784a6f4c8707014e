package prom

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

var allocDuration = prometheus.NewDesc("ouro_flow_alloc_duration_seconds",
	"Flow allocations the node's IRM made (programs on its socket, in-node applications, IPCPs' N-1 flows): the time from the request to the IRM's answer "+
		"(every layer's query, the layer's allocation, the peer's accept), by the layer that allocated the flow (\"\" if none did) and result.",
	[]string{"layer", "result"}, nil)

// collectAllocs exports the IRM's allocation histogram ("allocs").
func collectAllocs(ctx context.Context, m Mgmt, ch chan<- prometheus.Metric) {
	r, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdAllocs})
	if errors.Is(err, flow.ErrInvalid) || errors.Is(err, flow.ErrRefused) {
		return // a node from before "allocs" (unknown to its IRM, or to its management flow)
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(allocDuration, err)
		return
	}
	hs, err := allocHistograms(r.Table)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(allocDuration, err)
		return
	}
	for _, h := range hs {
		ch <- prometheus.MustNewConstHistogram(allocDuration, h.count, h.sum, h.buckets, h.layer, h.result)
	}
}

// allocHist is one (layer, result) histogram read from "allocs".
type allocHist struct {
	layer, result string
	buckets       map[float64]uint64 // upper bound → cumulative count, +Inf left out
	count         uint64
	sum           float64
}

// allocHistograms groups the rows of "allocs" (layer, result, le, count,
// sum_seconds) into histograms, in the table's order.
func allocHistograms(t ipcp.Table) ([]allocHist, error) {
	col := map[string]int{}
	for i, c := range t.Columns {
		col[c] = i
	}
	for _, c := range []string{"layer", "result", "le", "count", "sum_seconds"} {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("prom: allocs: no column %q", c)
		}
	}
	var out []allocHist
	for _, row := range t.Rows {
		if len(row) < len(t.Columns) {
			return nil, fmt.Errorf("prom: allocs: row of %d columns, want %d", len(row), len(t.Columns))
		}
		layer, result := row[col["layer"]], row[col["result"]]
		le, err1 := strconv.ParseFloat(row[col["le"]], 64)
		n, err2 := strconv.ParseUint(row[col["count"]], 10, 64)
		sum, err3 := strconv.ParseFloat(row[col["sum_seconds"]], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("prom: allocs: row %q: not numbers", row)
		}
		if len(out) == 0 || out[len(out)-1].layer != layer || out[len(out)-1].result != result {
			out = append(out, allocHist{layer: layer, result: result, buckets: map[float64]uint64{}})
		}
		h := &out[len(out)-1]
		h.sum = sum
		if math.IsInf(le, 1) {
			h.count = n
		} else {
			h.buckets[le] = n
		}
	}
	return out, nil
}
