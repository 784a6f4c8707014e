package irm

import (
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// TestAllocHist: allocations land in the bucket of their time (a bound
// is inclusive, beyond the last bound is +Inf), counts are cumulative
// per (layer, result), errors are named from the closed set, and pairs
// beyond maxAllocKeys are counted under the "" layer.
func TestAllocHist(t *testing.T) {
	var h allocHist
	h.observe("uni", 250*time.Microsecond, nil) // the first bucket's bound
	h.observe("uni", 300*time.Microsecond, nil) // the second
	h.observe("uni", 9*time.Second, nil)        // past 8.192 s: +Inf
	h.observe("", time.Millisecond, fmt.Errorf("x: %w", flow.ErrNotFound))
	h.observe("eth", time.Millisecond, fmt.Errorf("x: %w", flow.ErrRefused))
	h.observe("eth", time.Millisecond, fmt.Errorf("odd"))

	tb := h.table()
	if want := []string{"layer", "result", "le", "count", "sum_seconds"}; fmt.Sprint(tb.Columns) != fmt.Sprint(want) {
		t.Fatalf("columns %v, want %v", tb.Columns, want)
	}
	rows := map[string][]string{}
	for _, r := range tb.Rows {
		rows[r[0]+"/"+r[1]+"/"+r[2]] = r
	}
	for key, want := range map[string]string{
		"uni/ok/0.00025": "1", "uni/ok/0.0005": "2", "uni/ok/8.192": "2", "uni/ok/+Inf": "3",
		"/not_found/0.001": "1", "eth/refused/+Inf": "1", "eth/error/+Inf": "1",
	} {
		r, ok := rows[key]
		if !ok || r[3] != want {
			t.Errorf("row %s: %v, want count %s", key, r, want)
		}
	}
	if got := rows["uni/ok/+Inf"][4]; got != "9.00055" {
		t.Errorf("uni/ok sum %s s, want 9.00055", got)
	}
	if len(tb.Rows) != 4*17 {
		t.Errorf("%d rows, want 17 for each of 4 (layer, result) pairs", len(tb.Rows))
	}

	for i := range maxAllocKeys + 10 {
		h.observe(fmt.Sprintf("l%d", i), time.Millisecond, nil)
	}
	if len(h.m) != maxAllocKeys+1 { // the cap, and ("", ok) taking the rest
		t.Errorf("%d pairs kept, want %d", len(h.m), maxAllocKeys+1)
	}
	if c := h.m[allocKey{"", "ok"}]; c == nil || c.n[2] != 14 {
		t.Errorf("the pairs beyond the cap are not counted under the empty layer: %+v", c)
	}
}
