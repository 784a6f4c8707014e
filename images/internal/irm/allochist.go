package irm

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// allocBounds are the upper bounds of the allocation histogram's
// buckets: 250 µs to 8.192 s, doubling; a last bucket takes the rest.
var allocBounds = func() []time.Duration {
	b := make([]time.Duration, 16)
	for i := range b {
		b[i] = 250 * time.Microsecond << i
	}
	return b
}()

// maxAllocKeys bounds the (layer, result) pairs the histogram keeps:
// layers are the node's own IPCPs' and results a closed set, so only a
// node that creates and destroys layers without end reaches it; further
// pairs are counted in the "" layer's.
const maxAllocKeys = 256

// allocHist counts the IRM's flow allocations by the layer that
// allocated the flow ("" when none did), their result and their time,
// for the "allocs" management command (ouro_flow_alloc_duration_seconds).
// The zero value is ready; safe for concurrent use.
type allocHist struct {
	mu sync.Mutex
	m  map[allocKey]*allocCounts
}

type allocKey struct{ layer, result string }

type allocCounts struct {
	n   [17]uint64 // by bucket, not cumulative: allocBounds, then the rest
	sum time.Duration
}

// observe records one allocation.
func (h *allocHist) observe(layer string, d time.Duration, err error) {
	k := allocKey{layer, allocResult(err)}
	i, _ := slices.BinarySearch(allocBounds, d)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[allocKey]*allocCounts)
	}
	c := h.m[k]
	if c == nil {
		if len(h.m) >= maxAllocKeys {
			k.layer = ""
			c = h.m[k]
		}
		if c == nil {
			c = new(allocCounts)
			h.m[k] = c
		}
	}
	c.n[i]++
	c.sum += d
}

// table is the histogram as the "allocs" command gives it: per layer
// and result, a row per bucket with its upper bound in seconds ("+Inf"
// for the last), the allocations up to it (cumulative, as Prometheus
// counts) and the sum of all their times in seconds.
func (h *allocHist) table() ipcp.Table {
	t := ipcp.Table{Columns: []string{"layer", "result", "le", "count", "sum_seconds"}}
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]allocKey, 0, len(h.m))
	for k := range h.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b allocKey) int {
		if a.layer != b.layer {
			return strings.Compare(a.layer, b.layer)
		}
		return strings.Compare(a.result, b.result)
	})
	for _, k := range keys {
		c := h.m[k]
		sum := strconv.FormatFloat(c.sum.Seconds(), 'g', -1, 64)
		var cum uint64
		for i, n := range c.n {
			cum += n
			le := "+Inf"
			if i < len(allocBounds) {
				le = strconv.FormatFloat(allocBounds[i].Seconds(), 'g', -1, 64)
			}
			t.Rows = append(t.Rows, []string{k.layer, k.result, le, strconv.FormatUint(cum, 10), sum})
		}
	}
	return t
}

// allocResult names an allocation's outcome for the histogram: one of a
// small closed set, so that its values stay few.
func allocResult(err error) string {
	if err == nil {
		return "ok"
	}
	for _, k := range []struct {
		err  error
		name string
	}{
		{flow.ErrNotFound, "not_found"}, {flow.ErrRefused, "refused"}, {flow.ErrTimeout, "timeout"},
		{context.DeadlineExceeded, "timeout"}, {flow.ErrBusy, "busy"}, {flow.ErrInvalid, "invalid"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "error"
}
