package kernel

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRightsString(t *testing.T) {
	for _, tc := range []struct {
		r    Rights
		want string
	}{
		{0, "----"}, {Read, "R---"}, {Read | Write | Grant, "RWG-"}, {AllRights, "RWGC"}, {GrantReply, "---C"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("Rights(%d).String(): got %q, want %q", tc.r, got, tc.want)
		}
		back, err := ParseRights(tc.want)
		if err != nil || back != tc.r {
			t.Errorf("ParseRights(%q): got %v, %v, want %v", tc.want, back, err, tc.r)
		}
	}
	if _, err := ParseRights("RX"); err == nil {
		t.Errorf("ParseRights(RX): got nil error, want one")
	}
}

// TestRightsPerVerb runs every verb with a cap minted with each of the 16
// rights sets and checks it is refused (ErrRights) exactly when a needed
// right is missing, and that it works otherwise; then it runs every verb
// with a cap of each other kind and checks it is refused (ErrInvalidCap).
func TestRightsPerVerb(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	src := map[Kind]Cap{KindEndpoint: mustSlot(t, a, "ep"), KindNotification: mustSlot(t, a, "n"), KindRing: mustSlot(t, a, "r"), KindComponent: mustSlot(t, a, "c")}
	verbs := []struct {
		name string
		kind Kind
		ok   func(Rights) bool
		run  func(c Cap) error
		okIs error // what a permitted call returns (nothing else is waiting)
	}{
		{"NBSend", KindEndpoint, has(Write), func(c Cap) error { return a.NBSend(c, &Msg{}) }, ErrWouldBlock},
		{"SendCtx", KindEndpoint, has(Write), func(c Cap) error { return a.SendCtx(cancelled(), c, &Msg{}) }, context.Canceled},
		{"NBRecv", KindEndpoint, has(Read), func(c Cap) error { _, err := a.NBRecv(c, &Msg{}); return err }, ErrWouldBlock},
		{"RecvCtx", KindEndpoint, has(Read), func(c Cap) error { _, err := a.RecvCtx(cancelled(), c, &Msg{}); return err }, context.Canceled},
		{"CallCtx", KindEndpoint, func(r Rights) bool { return r&Write != 0 && r&(Grant|GrantReply) != 0 },
			func(c Cap) error { return a.CallCtx(cancelled(), c, &Msg{}) }, context.Canceled},
		{"ReplyRecvCtx", KindEndpoint, has(Read), func(c Cap) error {
			_, err := a.ReplyRecvCtx(cancelled(), c, 0, nil, &Msg{})
			return err
		}, context.Canceled},
		{"Signal", KindNotification, has(Write), func(c Cap) error { return a.Signal(c) }, nil},
		{"Poll", KindNotification, has(Read), func(c Cap) error { _, err := a.Poll(c); return err }, nil},
		{"WaitCtx", KindNotification, has(Read), func(c Cap) error { _, err := a.WaitCtx(cancelled(), c); return err }, context.Canceled},
		{"Push", KindRing, has(Write), func(c Cap) error {
			b, err := a.AllocBuf()
			if err != nil {
				return err
			}
			bufs := []*Buf{b}
			_, err = a.Push(c, bufs)
			if bufs[0] != nil {
				a.FreeBuf(bufs[0])
			}
			return err
		}, nil},
		{"Pop", KindRing, has(Read), func(c Cap) error {
			var bufs [8]*Buf
			n, err := a.Pop(c, bufs[:])
			a.FreeBufs(bufs[:n])
			return err
		}, nil},
		{"PopWait", KindRing, has(Read), func(c Cap) error { _, err := a.PopWait(cancelled(), c, make([]*Buf, 1)); return err }, context.Canceled},
		{"BindRing", KindRing, has(Read), func(c Cap) error { return a.BindRing(c, 0) }, nil},
		{"CloseRing", KindRing, has(0), func(c Cap) error { return a.CloseRing(c) }, nil},
		{"Kill", KindComponent, has(Write), func(c Cap) error { return a.Kill(c) }, nil},
		{"Restart", KindComponent, has(Write), func(c Cap) error { return a.Restart(c) }, nil},
		{"GrantBudget", KindComponent, has(Write), func(c Cap) error { return a.GrantBudget(c, Budget{}) }, nil},
	}
	// fresh makes the object a verb's subtests mint from (one per
	// subtest, deleted after); check tests a permitted call's effect
	// through the original cap.
	type special struct {
		fresh func() (Cap, error)
		check func(orig Cap) error
	}
	specials := map[string]special{
		"CloseRing": {
			fresh: func() (Cap, error) { return a.NewRing(1) },
			check: func(orig Cap) error { // the ring is closed for every holder
				if info, err := a.Inspect(orig); err != nil || !info.Closed {
					return fmt.Errorf("Inspect after CloseRing: got %+v, %v, want Closed", info, err)
				}
				x, _ := a.AllocBuf()
				n, err := a.Push(orig, []*Buf{x})
				if n == 0 {
					a.FreeBuf(x)
				}
				if !errors.Is(err, ErrClosed) {
					return fmt.Errorf("Push after CloseRing: got %d, %v, want ErrClosed", n, err)
				}
				return nil
			},
		},
	}
	for _, v := range verbs {
		for r := Rights(0); r <= AllRights; r++ {
			t.Run(fmt.Sprintf("%s/%s", v.name, r), func(t *testing.T) {
				orig, sp := src[v.kind], specials[v.name]
				if sp.fresh != nil {
					o, err := sp.fresh()
					if err != nil {
						t.Fatalf("making the object: %v", err)
					}
					defer a.Delete(o)
					orig = o
				}
				c, err := a.Mint(orig, r, 0)
				if err != nil {
					t.Fatalf("Mint: %v", err)
				}
				defer a.Delete(c)
				err = v.run(c)
				if !v.ok(r) {
					if !errors.Is(err, ErrRights) {
						t.Fatalf("got error %v, want ErrRights", err)
					}
					return
				}
				if errors.Is(err, ErrRights) {
					t.Fatalf("got ErrRights (%v), want it permitted", err)
				}
				if v.okIs != nil && !errors.Is(err, v.okIs) {
					t.Fatalf("got error %v, want %v", err, v.okIs)
				}
				if sp.check != nil {
					if err != nil {
						t.Fatalf("got error %v, want nil", err)
					}
					if err := sp.check(orig); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
		for kind, c := range src {
			if kind == v.kind {
				continue
			}
			t.Run(fmt.Sprintf("%s/%s cap", v.name, kind), func(t *testing.T) {
				if err := v.run(c); !errors.Is(err, ErrInvalidCap) {
					t.Fatalf("got error %v, want ErrInvalidCap", err)
				}
			})
		}
	}
	// Drain what Push left and the notification word.
	var bufs [8]*Buf
	n, _ := a.Pop(src[KindRing], bufs[:])
	a.FreeBufs(bufs[:n])
}

func has(need Rights) func(Rights) bool { return func(r Rights) bool { return r&need == need } }
