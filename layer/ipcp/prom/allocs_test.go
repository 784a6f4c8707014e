package prom

import (
	"testing"

	"github.com/ouronet/ouro/layer/ipcp"
)

// TestAllocHistograms: the rows of "allocs" become one histogram per
// (layer, result) with the cumulative counts as buckets, the +Inf row's
// count as the total, and the sum; a table that is not shaped so is an
// error, not a made-up histogram.
func TestAllocHistograms(t *testing.T) {
	cols := []string{"layer", "result", "le", "count", "sum_seconds"}
	hs, err := allocHistograms(ipcp.Table{Columns: cols, Rows: [][]string{
		{"uni", "ok", "0.00025", "1", "0.5"}, {"uni", "ok", "0.0005", "2", "0.5"}, {"uni", "ok", "+Inf", "3", "0.5"},
		{"", "not_found", "0.00025", "0", "0.002"}, {"", "not_found", "+Inf", "1", "0.002"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 {
		t.Fatalf("%d histograms, want 2", len(hs))
	}
	u := hs[0]
	if u.layer != "uni" || u.result != "ok" || u.count != 3 || u.sum != 0.5 || u.buckets[0.00025] != 1 || u.buckets[0.0005] != 2 || len(u.buckets) != 2 {
		t.Errorf("uni/ok: %+v", u)
	}
	if n := hs[1]; n.layer != "" || n.result != "not_found" || n.count != 1 || n.buckets[0.00025] != 0 {
		t.Errorf("not_found: %+v", n)
	}
	for name, tb := range map[string]ipcp.Table{
		"no le column":   {Columns: []string{"layer", "result", "count", "sum_seconds"}},
		"short row":      {Columns: cols, Rows: [][]string{{"uni", "ok", "0.1"}}},
		"not a number":   {Columns: cols, Rows: [][]string{{"uni", "ok", "soon", "1", "0"}}},
		"negative count": {Columns: cols, Rows: [][]string{{"uni", "ok", "+Inf", "-1", "0"}}},
	} {
		if _, err := allocHistograms(tb); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
