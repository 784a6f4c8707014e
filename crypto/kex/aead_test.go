package kex

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
)

const (
	cc = seal.ChaCha20Poly1305
	gg = seal.AES256GCM
)

func testNode(t testing.TB, name string, aeads ...seal.AEAD) Config {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := identity.NewDocument(id, name, "test", identity.Measurement{}, time.Now()).Sign(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Signer: id, Doc: doc, Context: []byte("flow a.app -> echo, sealed"), AEADs: aeads}
}

// mitm changes a message in transit (nil: carries it as it is).
type mitm struct {
	hello, reply func(t *testing.T, b []byte) []byte
}

func (m mitm) do(t *testing.T, f func(*testing.T, []byte) []byte, b []byte) []byte {
	if f == nil {
		return b
	}
	return f(t, b)
}

// fullExchange runs the three messages between i and r through m.
func fullExchange(t *testing.T, i, r Config, m mitm) (Result, Result, error) {
	t.Helper()
	ctx := context.Background()
	in, hello, err := Start(i)
	if err != nil {
		t.Fatal(err)
	}
	rs, reply, err := Respond(ctx, r, m.do(t, m.hello, hello))
	if err != nil {
		return Result{}, Result{}, err
	}
	fin, err := in.Reply(ctx, m.do(t, m.reply, reply))
	if err != nil {
		return Result{}, Result{}, err
	}
	rr, err := rs.Finish(fin)
	if err != nil {
		return Result{}, Result{}, err
	}
	ri, err := in.Result()
	return ri, rr, err
}

// resumption runs a resumption from tickets ti, tr through m.
func resumption(t *testing.T, ti, tr Ticket, ai, ar []seal.AEAD, m mitm) (Result, Result, error) {
	t.Helper()
	c := []byte("flow a.app -> echo, sealed")
	rm, hello, err := StartResume(ti, c, nil, ai)
	if err != nil {
		t.Fatal(err)
	}
	rr, reply, err := RespondResume(tr, c, m.do(t, m.hello, hello), nil, nil, ar)
	if err != nil {
		return Result{}, Result{}, err
	}
	ri, err := rm.Reply(m.do(t, m.reply, reply))
	return ri, rr, err
}

// sealsBothWays checks that the two results agree on the AEAD and that
// their keys seal and open under it, both ways.
func sealsBothWays(t *testing.T, ri, rr Result) {
	t.Helper()
	if ri.AEAD != rr.AEAD {
		t.Fatalf("initiator seals with %s, responder with %s", ri.AEAD, rr.AEAD)
	}
	for _, p := range []struct{ from, to Result }{{ri, rr}, {rr, ri}} {
		s, err := seal.NewSealer(p.from.AEAD, p.from.Keys.Send[:])
		if err != nil {
			t.Fatal(err)
		}
		o, err := seal.NewOpener(p.to.AEAD, p.to.Keys.Recv[:])
		if err != nil {
			t.Fatal(err)
		}
		pkt, _ := s.Seal(nil, []byte("sdu"), nil)
		if got, err := o.Open(nil, pkt, nil); err != nil || string(got) != "sdu" {
			t.Fatalf("%s: %q, %v", p.from.AEAD, got, err)
		}
	}
}

// TestNegotiate: each side's list, the AEAD both end with, in the full
// exchange and in a resumption (which negotiates again); lists that
// share nothing fail both with ErrNoAEAD.
func TestNegotiate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		ai, ar []seal.AEAD
		want   seal.AEAD // 0: ErrNoAEAD
	}{
		{"defaults", nil, nil, seal.Preferred()[0]},
		{"both hardware AES", []seal.AEAD{gg, cc}, []seal.AEAD{gg, cc}, gg},
		{"initiator without", []seal.AEAD{cc, gg}, []seal.AEAD{gg, cc}, cc},
		{"responder without", []seal.AEAD{gg, cc}, []seal.AEAD{cc, gg}, cc},
		{"initiator forced to ChaCha (Version1)", []seal.AEAD{cc}, []seal.AEAD{gg, cc}, cc},
		{"initiator forced to AES", []seal.AEAD{gg}, []seal.AEAD{cc, gg}, gg},
		{"responder forced to AES", []seal.AEAD{cc, gg}, []seal.AEAD{gg}, gg},
		{"forced apart", []seal.AEAD{gg}, []seal.AEAD{cc}, 0},
		{"forced apart, Version1", []seal.AEAD{cc}, []seal.AEAD{gg}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := testNode(t, "a", tt.ai...), testNode(t, "b", tt.ar...)
			if tt.ai == nil {
				a.AEADs = nil
			}
			if tt.ar == nil {
				b.AEADs = nil
			}
			ri, rr, err := fullExchange(t, a, b, mitm{})
			if tt.want == 0 {
				if !errors.Is(err, ErrNoAEAD) {
					t.Fatalf("full exchange: %v, want ErrNoAEAD", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("full exchange: %v", err)
			}
			if ri.AEAD != tt.want {
				t.Fatalf("full exchange: %s, want %s", ri.AEAD, tt.want)
			}
			sealsBothWays(t, ri, rr)
			// Resume from a ticket of a handshake with the defaults:
			// the lists of this case decide again.
			d1, d2 := testNode(t, "a"), testNode(t, "b")
			d1.AEADs, d2.AEADs = nil, nil
			pi, pr, err := fullExchange(t, d1, d2, mitm{})
			if err != nil {
				t.Fatal(err)
			}
			ri, rr, err = resumption(t, pi.Next, pr.Next, a.AEADs, b.AEADs, mitm{})
			if err != nil || ri.AEAD != tt.want {
				t.Fatalf("resumption: %s, %v; want %s", ri.AEAD, err, tt.want)
			}
			sealsBothWays(t, ri, rr)
		})
	}
	t.Run("resumption forced apart", func(t *testing.T) {
		a, b := testNode(t, "a"), testNode(t, "b")
		pi, pr, err := fullExchange(t, a, b, mitm{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := resumption(t, pi.Next, pr.Next, []seal.AEAD{gg}, []seal.AEAD{cc}, mitm{}); !errors.Is(err, ErrNoAEAD) {
			t.Fatalf("%v, want ErrNoAEAD", err)
		}
	})
	t.Run("bad lists", func(t *testing.T) {
		for _, l := range [][]seal.AEAD{{}, {7}, {cc, cc}, {0}} {
			c := testNode(t, "a", l...)
			c.AEADs = l
			if _, _, err := Start(c); !errors.Is(err, seal.ErrAEAD) {
				t.Errorf("%v: %v, want seal.ErrAEAD", l, err)
			}
			if _, _, err := StartResume(Ticket{}, nil, nil, l); !errors.Is(err, seal.ErrAEAD) {
				t.Errorf("resume %v: %v, want seal.ErrAEAD", l, err)
			}
		}
	})
}

// TestOldPeer: a peer of the first version, which sends a Hello with no
// list of AEADs (made here as that version made it) and reads only a
// Reply of its form, makes a handshake with this version's responder
// (which prefers AES-256-GCM) and both seal with ChaCha20-Poly1305. And
// an initiator that offers ChaCha20-Poly1305 alone sends exactly that
// first version's Hello and ResumeHello, so an old responder takes them.
func TestOldPeer(t *testing.T) {
	ctx := context.Background()
	a, b := testNode(t, "old"), testNode(t, "new", gg, cc)
	a.AEADs = nil
	eph, err := NewEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	h, err := codec.Marshal(hello1{Version: 1, E: eph.e.PublicKey().Bytes(), EK: eph.dk.EncapsulationKey().Bytes(), Doc: a.Doc})
	if err != nil {
		t.Fatal(err)
	}
	old := &Initiator{cfg: a, e: eph.e, dk: eph.dk, hello: h} // no offer: the first version's
	rs, reply, err := Respond(ctx, b, h)
	if err != nil {
		t.Fatalf("new responder, old Hello: %v", err)
	}
	var r1 reply1
	if err := codec.Unmarshal(reply, MaxReply, &r1); err != nil {
		t.Fatalf("the Reply to an old Hello is not of the first version's form: %v", err)
	}
	fin, err := old.Reply(ctx, reply)
	if err != nil {
		t.Fatal(err)
	}
	ri, err := old.Result()
	if err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Finish(fin)
	if err != nil {
		t.Fatal(err)
	}
	if ri.AEAD != cc || rr.AEAD != cc {
		t.Fatalf("AEADs %s, %s; want chacha20poly1305", ri.AEAD, rr.AEAD)
	}
	sealsBothWays(t, ri, rr)

	// Offering ChaCha20-Poly1305 alone: the first version's forms.
	a.AEADs = []seal.AEAD{cc}
	_, h, err = Start(a)
	if err != nil {
		t.Fatal(err)
	}
	var h1 hello1
	if err := codec.Unmarshal(h, MaxHello, &h1); err != nil || h1.Version != 1 {
		t.Fatalf("a ChaCha-only Hello is not of the first version: %v, version %d", err, h1.Version)
	}
	_, rh, err := StartResume(rr.Next, nil, nil, a.AEADs)
	if err != nil {
		t.Fatal(err)
	}
	var rh1 resumeHello1
	if err := codec.Unmarshal(rh, MaxResume, &rh1); err != nil || rh1.Version != 1 {
		t.Fatalf("a ChaCha-only ResumeHello is not of the first version: %v, version %d", err, rh1.Version)
	}
	// The default offer is not: an old responder refuses it.
	a.AEADs = []seal.AEAD{gg, cc}
	_, h, _ = Start(a)
	if err := codec.Unmarshal(h, MaxHello, &h1); err == nil {
		t.Fatal("a Hello with a list of AEADs decodes as the first version's")
	}
}

// rewrite is the man-in-the-middle's forwarder: it decodes b as a T (at
// most max bytes), lets edit change it or make another message of it,
// and sends on what edit returns, encoded.
func rewrite[T any](t *testing.T, b []byte, max int, edit func(*T) any) []byte {
	var m T
	if err := codec.Unmarshal(b, max, &m); err != nil {
		t.Fatal(err)
	}
	out, err := codec.Marshal(edit(&m))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stripHello takes AES-256-GCM out of a Hello's offer, leaving
// ChaCha20-Poly1305 (a valid message).
func stripHello(t *testing.T, b []byte) []byte {
	return rewrite(t, b, MaxHello, func(h *hello) any { h.AEADs = []byte{byte(cc)}; return h })
}

// toVersion1 rewrites a Hello as the first version's, without a list:
// the responder must use ChaCha20-Poly1305.
func toVersion1(t *testing.T, b []byte) []byte {
	return rewrite(t, b, MaxHello, func(h *hello) any { return hello1{Version: Version1, E: h.E, EK: h.EK, Doc: h.Doc} })
}

// replyAsVersion2 makes a Version1 Reply (to the Hello toVersion1
// rewrote) look like a Version one choosing ChaCha20-Poly1305, as the
// initiator expects.
func replyAsVersion2(t *testing.T, b []byte) []byte {
	return rewrite(t, b, MaxReply, func(r1 *reply1) any {
		return reply{E: r1.E, CT: r1.CT, Doc: r1.Doc, Sig: r1.Sig, AEAD: uint(cc)}
	})
}

// chooseChaCha changes the Reply's choice.
func chooseChaCha(t *testing.T, b []byte) []byte {
	return rewrite(t, b, MaxReply, func(r *reply) any { r.AEAD = uint(cc); return r })
}

// stripResumeHello is stripHello for a ResumeHello.
func stripResumeHello(t *testing.T, b []byte) []byte {
	return rewrite(t, b, MaxResume, func(h *resumeHello) any { h.AEADs = []byte{byte(cc)}; return h })
}

// chooseChaChaResumed is chooseChaCha for a ResumeReply.
func chooseChaChaResumed(t *testing.T, b []byte) []byte {
	return rewrite(t, b, MaxResume, func(r *resumeReply) any { r.AEAD = uint(cc); return r })
}

// TestDowngradeAEAD: two sides with hardware AES (both offer AES-256-GCM
// first); a forwarder that strips AES-256-GCM from the offer (or drops
// the list, or changes the choice) would make them seal with
// ChaCha20-Poly1305; the offer and the choice are in what both sign (or
// MAC), so the handshake fails instead. Without that binding (checked
// once: the transcript and MACs computed over the messages without
// their AEAD fields), every case here ended in a ChaCha20-Poly1305 flow.
func TestDowngradeAEAD(t *testing.T) {
	both := []seal.AEAD{gg, cc}
	for _, tt := range []struct {
		name string
		m    mitm
	}{
		{"AES stripped from the Hello", mitm{hello: stripHello}},
		{"Hello rewritten as Version1", mitm{hello: toVersion1, reply: replyAsVersion2}},
		{"the Reply's choice changed", mitm{reply: chooseChaCha}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ri, _, err := fullExchange(t, testNode(t, "a", both...), testNode(t, "b", both...), tt.m)
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("got %v (AEAD %s), want ErrBadSignature", err, ri.AEAD)
			}
		})
	}
	a, b := testNode(t, "a", both...), testNode(t, "b", both...)
	for _, tt := range []struct {
		name string
		m    mitm
	}{
		{"AES stripped from the ResumeHello", mitm{hello: stripResumeHello}},
		{"the ResumeReply's choice changed", mitm{reply: chooseChaChaResumed}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pi, pr, err := fullExchange(t, a, b, mitm{})
			if err != nil || pi.AEAD != gg {
				t.Fatalf("untouched: %s, %v", pi.AEAD, err)
			}
			ri, _, err := resumption(t, pi.Next, pr.Next, both, both, tt.m)
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("got %v (AEAD %s), want ErrBadSignature", err, ri.AEAD)
			}
		})
	}
}
