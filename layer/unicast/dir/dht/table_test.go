package dht

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer"
)

func TestPrefixLen(t *testing.T) {
	var a, b layer.Hash
	tests := []struct {
		name string
		flip int // bit of b to flip, -1 for none
		want int
	}{
		{"equal", -1, idBits},
		{"first bit", 0, 0},
		{"bit 9", 9, 9},
		{"last bit", idBits - 1, idBits - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b = a
			if tt.flip >= 0 {
				b[tt.flip/8] ^= 0x80 >> (tt.flip % 8)
			}
			if got := prefixLen(a, b); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRandomIn(t *testing.T) {
	tab := newTable(42, 8)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range idBits {
		var x layer.Hash
		for j := range x {
			x[j] = byte(r.Uint32())
		}
		if got := prefixLen(tab.self.id, tab.randomIn(i, x)); got != i {
			t.Fatalf("bucket %d: got an id with prefix %d", i, got)
		}
	}
}

func TestBucket(t *testing.T) {
	const k = 2
	tab := newTable(1, k)
	// Addresses whose ids share no first bit with self's: all in bucket 0.
	var far []layer.Addr
	for a := layer.Addr(2); len(far) < 4; a++ {
		if prefixLen(tab.self.id, NodeID(a)) == 0 {
			far = append(far, a)
		}
	}
	for _, a := range far {
		tab.seen(a)
	}
	b := tab.buckets[0]
	if len(b.live) != k || len(b.spare) != 2 || tab.n != k {
		t.Fatalf("got %d live, %d spare, n %d, want %d, 2, %d", len(b.live), len(b.spare), tab.n, k, k)
	}
	tab.seen(far[0]) // most recently seen moves to the tail
	if b.live[k-1].addr != far[0] {
		t.Errorf("got tail %d, want %d", b.live[k-1].addr, far[0])
	}
	tab.failed(far[1], false) // a spare exists: replaced at once
	if indexOf(b.live, far[1]) >= 0 || indexOf(b.live, far[3]) < 0 {
		t.Errorf("got live %v, want %d replaced by the newest spare %d", b.live, far[1], far[3])
	}
	tab.remove(far[2]) // the last spare
	tab.failed(far[0], false)
	if indexOf(b.live, far[0]) < 0 {
		t.Error("one failure without a spare evicted the contact")
	}
	tab.failed(far[0], false)
	if indexOf(b.live, far[0]) >= 0 {
		t.Errorf("%d failures kept the contact", maxFails)
	}
	if got := tab.closest(NodeID(far[3]), 1); len(got) != 1 || got[0].addr != far[3] {
		t.Errorf("closest to %d: got %v", far[3], got)
	}
	if st := tab.staleBuckets(time.Unix(100, 0), time.Minute); len(st) != 1 || st[0] != 0 {
		t.Errorf("got stale buckets %v, want [0]", st)
	}
}
