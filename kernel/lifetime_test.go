package kernel

import (
	"testing"
)

// TestStaleCapAfterReuse checks that a cap number kept after its slot was
// freed and reused by another cap is refused by every verb instead of
// acting on the new cap's object.
func TestStaleCapAfterReuse(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	old, err := a.NewRing(4)
	wantErr(t, "NewRing", err, nil)
	wantErr(t, "Delete", a.Delete(old), nil)
	cur, err := a.NewRing(4)
	wantErr(t, "NewRing", err, nil)
	if cur.index() != old.index() {
		t.Fatalf("slot reuse: got index %d, want %d (the freed slot)", cur.index(), old.index())
	}
	if cur == old {
		t.Fatalf("reused slot: got the same cap number %d, want a new generation", cur)
	}
	for _, tc := range []struct {
		name string
		op   func(c Cap) error
	}{
		{"push", func(c Cap) error { _, err := a.Push(c, make([]*Buf, 1)); return err }},
		{"pop", func(c Cap) error { _, err := a.Pop(c, make([]*Buf, 1)); return err }},
		{"close", func(c Cap) error { return a.CloseRing(c) }},
		{"ring len", func(c Cap) error { _, err := a.RingLen(c); return err }},
		{"inspect", func(c Cap) error { _, err := a.Inspect(c); return err }},
		{"mint", func(c Cap) error { _, err := a.Mint(c, Read, 0); return err }},
		{"move", func(c Cap) error { _, err := a.Move(c); return err }},
		{"revoke", func(c Cap) error { return a.Revoke(c) }},
		{"delete", func(c Cap) error { return a.Delete(c) }},
		{"send as transferred cap", func(c Cap) error {
			m := Msg{NCaps: 1}
			m.Caps[0] = c
			return a.NBSend(mustSlot(t, a, "ep"), &m)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, tc.name+" on the stale cap", tc.op(old), ErrInvalidCap)
			info, err := a.Inspect(cur)
			if err != nil || info.Closed || info.Kind != KindRing {
				t.Fatalf("the new cap after %s on the stale one: got %+v, %v, want an open ring", tc.name, info, err)
			}
		})
	}
}
