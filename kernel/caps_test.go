package kernel

import (
	"errors"
	"testing"
)

func TestMintRights(t *testing.T) {
	_, pds := harness(t, pair(Read|Write), nil)
	a := pds["a"]
	ep := mustSlot(t, a, "ep")
	for _, tc := range []struct {
		name   string
		rights Rights
		want   error
	}{
		{"same", Read | Write, nil},
		{"fewer", Read, nil},
		{"none", 0, nil},
		{"more", Read | Write | Grant, ErrRights},
		{"other", GrantReply, ErrRights},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Mint(ep, tc.rights, 0)
			wantErr(t, "Mint", err, tc.want)
			if err == nil {
				ci, _ := a.Inspect(c)
				if ci.Rights != tc.rights {
					t.Fatalf("minted rights: got %s, want %s", ci.Rights, tc.rights)
				}
			}
		})
	}
}

func TestRevokeCascade(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	orig := mustSlot(t, a, "ep")
	c1, _ := a.Mint(orig, Read|Write|Grant, 1) // child
	c2, _ := a.Copy(c1)                        // grandchild
	c3, _ := a.Mint(c2, Write, 0)              // great-grandchild, moved to b
	keep, _ := a.Copy(orig)                    // sibling of c1: must survive
	eb := mustSlot(t, b, "ep")
	ch := recvAsync(b, eb)
	wantErr(t, "Send", a.Send(c1, &Msg{Caps: [MaxCaps]Cap{c3}, NCaps: 1}), nil)
	r := <-ch
	if r.m.NCaps != 1 {
		t.Fatalf("transfer: got %d caps, want 1", r.m.NCaps)
	}
	inB := r.m.Caps[0]

	wantErr(t, "Revoke", a.Revoke(c1), nil)
	for _, tc := range []struct {
		name string
		pd   *PD
		c    Cap
		want error
	}{
		{"revoked cap itself stays", a, c1, nil},
		{"child revoked", a, c2, ErrRevoked},
		{"moved grandchild in another CSpace revoked", b, inB, ErrRevoked},
		{"sibling survives", a, keep, nil},
		{"original survives", a, orig, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.pd.NBSend(tc.c, &Msg{})
			if errors.Is(err, ErrWouldBlock) {
				err = nil
			}
			wantErr(t, "NBSend", err, tc.want)
		})
	}
	t.Run("tombstone is deleted", func(t *testing.T) {
		ci, err := b.Inspect(inB)
		if err != nil || !ci.Revoked {
			t.Fatalf("Inspect tombstone: got %+v, %v, want Revoked", ci, err)
		}
		wantErr(t, "Delete tombstone", b.Delete(inB), nil)
		_, err = b.Inspect(inB)
		wantErr(t, "Inspect deleted", err, ErrInvalidCap)
	})
	t.Run("revoke the root", func(t *testing.T) {
		wantErr(t, "Revoke orig", a.Revoke(orig), nil)
		for _, c := range []Cap{c1, keep} {
			_, err := a.Inspect(c)
			if ci, _ := a.Inspect(c); err != nil || !ci.Revoked {
				t.Fatalf("cap %d after revoking its root: got %+v, %v, want revoked", c, ci, err)
			}
		}
	})
}

func TestDeleteKeepsDerived(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	orig := mustSlot(t, a, "ep")
	mid, _ := a.Copy(orig)
	leaf, _ := a.Mint(mid, Write, 0)
	wantErr(t, "Delete mid", a.Delete(mid), nil)
	wantErr(t, "Delete mid again", a.Delete(mid), ErrInvalidCap)
	if _, err := a.Inspect(leaf); err != nil {
		t.Fatalf("leaf after deleting its parent: %v, want it kept", err)
	}
	wantErr(t, "Revoke orig", a.Revoke(orig), nil)
	if ci, _ := a.Inspect(leaf); !ci.Revoked {
		t.Fatalf("leaf after revoking the grandparent: got %+v, want revoked (it moved up the tree)", ci)
	}
}

func TestMoveAndSlotNames(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	ep := mustSlot(t, a, "ep")
	moved, err := a.Move(ep)
	wantErr(t, "Move", err, nil)
	if got := mustSlot(t, a, "ep"); got != moved {
		t.Fatalf("Slot(ep) after Move: got %d, want %d", got, moved)
	}
	_, err = a.Inspect(ep)
	wantErr(t, "Inspect old slot", err, ErrInvalidCap)
	for _, c := range []Cap{0, 9999} {
		_, err := a.Inspect(c)
		wantErr(t, "Inspect bad slot", err, ErrInvalidCap)
	}
	_, err = a.Slot("nope")
	wantErr(t, "Slot(nope)", err, ErrInvalidCap)
	err = a.Signal(moved)
	wantErr(t, "Signal on an endpoint cap", err, ErrInvalidCap)
}

// TestHolds: Holds says what Inspect's success says, for a held cap, a
// revoked one's tombstone, a deleted one, one moved to another CSpace
// and a slot never used.
func TestHolds(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	orig := mustSlot(t, a, "ep")
	held, _ := a.Copy(orig)
	gone, _ := a.Copy(orig)
	wantErr(t, "Delete", a.Delete(gone), nil)
	child, _ := a.Copy(held)
	moved, _ := a.Copy(orig)
	eb := mustSlot(t, b, "ep")
	ch := recvAsync(b, eb)
	wantErr(t, "Send", a.Send(orig, &Msg{Caps: [MaxCaps]Cap{moved}, NCaps: 1}), nil)
	<-ch
	wantErr(t, "Revoke", a.Revoke(held), nil)
	for _, tc := range []struct {
		name string
		c    Cap
		want bool
	}{
		{"held", orig, true},
		{"revoked, its tombstone", child, true},
		{"deleted", gone, false},
		{"moved away", moved, false},
		{"never used", 999, false},
	} {
		_, err := a.Inspect(tc.c)
		if got := a.Holds(tc.c); got != tc.want || got != (err == nil) {
			t.Errorf("%s: Holds %v, want %v (Inspect: %v)", tc.name, got, tc.want, err)
		}
	}
}
