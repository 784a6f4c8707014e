package dht

import (
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer"
)

// TestStoredApply: first come, first owner; multi-homing by the owner;
// replays; withdrawals kept as tombstones; the owner's record ending
// frees the name. Records here are unsigned: apply takes verified ones.
func TestStoredApply(t *testing.T) {
	keyA, keyB := make([]byte, ed25519.PublicKeySize), make([]byte, ed25519.PublicKeySize)
	keyA[0], keyB[0] = 'a', 'b'
	rec := func(key []byte, a layer.Addr, seq uint64, ttl uint32) Record {
		return Record{Addr: a, Key: key, Seq: seq, TTL: ttl}
	}
	t0 := time.Unix(1000, 0)
	const ttl = 60
	until := func(now time.Time) time.Time { return now.Add(time.Hour) }
	type step struct {
		at   time.Duration // after t0
		r    Record
		want int
	}
	tests := []struct {
		name  string
		steps []step
		live  []layer.Addr // at the last step's time
	}{
		{"first owner", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyB, 2, 1, ttl), notOwner}}, []layer.Addr{1}},
		{"other key, same address", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyB, 1, 9, ttl), notOwner}}, []layer.Addr{1}},
		{"other key withdraws", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyB, 1, 9, 0), notOwner}}, []layer.Addr{1}},
		{"multi-homing", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyA, 2, 2, ttl), applied}}, []layer.Addr{1, 2}},
		{"replica", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyA, 1, 1, ttl), applied}}, []layer.Addr{1}},
		{"replay", []step{{0, rec(keyA, 1, 2, ttl), applied}, {0, rec(keyA, 1, 1, ttl), replay}}, []layer.Addr{1}},
		{"withdrawal", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyA, 1, 2, 0), applied}}, nil},
		{"replay after withdrawal", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyA, 1, 2, 0), applied}, {time.Second, rec(keyA, 1, 1, ttl), replay}}, nil},
		{"withdrawn: name free", []step{{0, rec(keyA, 1, 1, ttl), applied}, {0, rec(keyA, 1, 2, 0), applied}, {0, rec(keyB, 2, 1, ttl), applied}}, []layer.Addr{2}},
		{"expired: name free", []step{{0, rec(keyA, 1, 1, ttl), applied}, {ttl * time.Second, rec(keyB, 1, 1, ttl), applied}}, []layer.Addr{1}},
		{"replica does not extend", []step{{0, rec(keyA, 1, 1, ttl), applied}, {ttl / 2 * time.Second, rec(keyA, 1, 1, ttl), applied}, {ttl * time.Second, rec(keyB, 2, 1, ttl), applied}}, []layer.Addr{2}},
		{"newer extends", []step{{0, rec(keyA, 1, 1, ttl), applied}, {ttl / 2 * time.Second, rec(keyA, 1, 2, ttl), applied}, {ttl * time.Second, rec(keyB, 2, 1, ttl), notOwner}}, []layer.Addr{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s stored
			var now time.Time
			for i, st := range tt.steps {
				now = t0.Add(st.at)
				if got := s.apply(st.r, nil, false, until(now), now); got != st.want {
					t.Fatalf("step %d: got outcome %d, want %d", i, got, st.want)
				}
			}
			var got []layer.Addr
			for _, r := range s.live(now, nil) {
				got = append(got, r.Addr)
			}
			if !slices.Equal(got, tt.live) {
				t.Errorf("got live %v, want %v", got, tt.live)
			}
		})
	}
}

// TestStoredApplyFull: one name holds at most MaxValues addresses.
func TestStoredApplyFull(t *testing.T) {
	key := make([]byte, ed25519.PublicKeySize)
	now := time.Unix(1000, 0)
	var s stored
	for i := range MaxValues {
		if got := s.apply(Record{Addr: layer.Addr(i + 1), Key: key, Seq: 1, TTL: 60}, nil, false, now.Add(time.Hour), now); got != applied {
			t.Fatalf("address %d: got %d, want applied", i+1, got)
		}
	}
	if got := s.apply(Record{Addr: MaxValues + 1, Key: key, Seq: 1, TTL: 60}, nil, false, now.Add(time.Hour), now); got != full {
		t.Errorf("address %d: got %d, want full", MaxValues+1, got)
	}
}
