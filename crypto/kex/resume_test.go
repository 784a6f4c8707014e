package kex_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/kex"
	"github.com/ouronet/ouro/crypto/seal"
)

var resumeContext = []byte("flow a.app -> echo, sealed")

// resume runs a resumption from the initiator's ticket ti and the
// responder's tr.
func resume(t testing.TB, ti, tr kex.Ticket, ctxI, ctxR []byte) (kex.Result, kex.Result, error) {
	t.Helper()
	rm, hello, err := kex.StartResume(ti, ctxI, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := kex.ResumeTicketID(hello)
	if err != nil || id != ti.ID {
		t.Fatalf("ticket id %x, %v; want %x", id, err, ti.ID)
	}
	rr, reply, err := kex.RespondResume(tr, ctxR, hello, nil, nil, nil)
	if err != nil {
		return kex.Result{}, kex.Result{}, err
	}
	ri, err := rm.Reply(reply)
	return ri, rr, err
}

// TestResume: a full handshake leaves both sides the same ticket, each
// naming the other; resuming from it gives paired keys unlike the full
// handshake's, and the next ticket, from which the next resumption works
// in turn.
func TestResume(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	ra, rb, err := handshake(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	ti, tr := ra.Next, rb.Next
	if ti.ID != tr.ID || ti.Secret != tr.Secret || ti.ID == ([kex.TicketIDSize]byte{}) {
		t.Fatal("the two sides' tickets differ")
	}
	if ti.Peer.Name != "b" || tr.Peer.Name != "a" {
		t.Fatalf("ticket peers: a's names %q, b's %q", ti.Peer.Name, tr.Peer.Name)
	}
	seen := map[kex.Keys]bool{ra.Keys: true}
	for i := range 3 {
		ri, rr, err := resume(t, ti, tr, resumeContext, resumeContext)
		if err != nil {
			t.Fatalf("resumption %d: %v", i, err)
		}
		if ri.Keys.Send != rr.Keys.Recv || ri.Keys.Recv != rr.Keys.Send || ri.Keys.Send == ri.Keys.Recv {
			t.Fatalf("resumption %d: keys do not pair up", i)
		}
		if seen[ri.Keys] {
			t.Fatalf("resumption %d: keys seen before", i)
		}
		seen[ri.Keys] = true
		if ri.Peer.Name != "b" || rr.Peer.Name != "a" {
			t.Fatalf("resumption %d: peers %q, %q", i, ri.Peer.Name, rr.Peer.Name)
		}
		if ri.Next.ID != rr.Next.ID || ri.Next.Secret != rr.Next.Secret || ri.Next.ID == ti.ID || ri.Next.Secret == ti.Secret {
			t.Fatalf("resumption %d: next tickets differ between the sides or repeat the last", i)
		}
		ti, tr = ri.Next, rr.Next
	}
}

// TestResumeTampering: every change on the way, a ticket whose secret
// the sender does not know, and a downgrade of the context fail the
// resumption. With the two MAC checks switched off, the first four
// cases fail (checked once): the tampered resumptions went through.
func TestResumeTampering(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	ra, rb, err := handshake(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	ti, tr := ra.Next, rb.Next

	t.Run("hello bit flipped", func(t *testing.T) {
		_, hello, _ := kex.StartResume(ti, resumeContext, nil, nil)
		for i := range hello {
			h := bytes.Clone(hello)
			h[i] ^= 0x10
			if _, _, err := kex.RespondResume(tr, resumeContext, h, nil, nil, nil); err == nil {
				t.Fatalf("a hello with byte %d changed was taken", i)
			}
		}
	})
	t.Run("reply bit flipped", func(t *testing.T) {
		for i := 0; ; i++ {
			rm, hello, _ := kex.StartResume(ti, resumeContext, nil, nil)
			_, reply, err := kex.RespondResume(tr, resumeContext, hello, nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if i == len(reply) {
				break
			}
			reply[i] ^= 0x10
			if _, err := rm.Reply(reply); err == nil {
				t.Fatalf("a reply with byte %d changed was taken", i)
			}
		}
	})
	t.Run("secret unknown", func(t *testing.T) {
		forged := ti
		forged.Secret[0] ^= 1 // knows the identifier (it is sent in clear), not the secret
		if _, _, err := resume(t, forged, tr, resumeContext, resumeContext); !errors.Is(err, kex.ErrBadSignature) {
			t.Fatalf("resumption by one without the secret: %v, want ErrBadSignature", err)
		}
	})
	t.Run("context changed", func(t *testing.T) {
		if _, _, err := resume(t, ti, tr, resumeContext, []byte("flow a.app -> echo")); !errors.Is(err, kex.ErrBadSignature) {
			t.Fatalf("a resumption whose context was changed on the way: %v, want ErrBadSignature", err)
		}
	})
	t.Run("another ticket", func(t *testing.T) {
		other := tr
		other.ID[0] ^= 1
		if _, _, err := resume(t, ti, other, resumeContext, resumeContext); !errors.Is(err, kex.ErrState) {
			t.Fatalf("a hello answered with another ticket: %v, want ErrState", err)
		}
	})
	t.Run("reply used twice", func(t *testing.T) {
		rm, hello, _ := kex.StartResume(ti, resumeContext, nil, nil)
		_, reply, err := kex.RespondResume(tr, resumeContext, hello, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rm.Reply(reply); err != nil {
			t.Fatal(err)
		}
		if _, err := rm.Reply(reply); !errors.Is(err, kex.ErrState) {
			t.Fatalf("second reply: %v, want ErrState", err)
		}
	})
	t.Run("policy refuses", func(t *testing.T) {
		_, hello, _ := kex.StartResume(ti, resumeContext, nil, nil)
		no := func(identity.Document) error { return errors.New("not on the list") }
		if _, _, err := kex.RespondResume(tr, resumeContext, hello, no, nil, nil); !errors.Is(err, kex.ErrRefused) {
			t.Fatalf("resumption from a peer the policy refuses: %v, want ErrRefused", err)
		}
	})
}

func FuzzResumeHello(f *testing.F) {
	a, b := node(f, "a"), node(f, "b")
	ra, rb, err := handshake(f, a, b)
	if err != nil {
		f.Fatal(err)
	}
	_, hello, _ := kex.StartResume(ra.Next, resumeContext, nil, nil)
	f.Add(hello)
	_, hello1, _ := kex.StartResume(ra.Next, resumeContext, nil, []seal.AEAD{seal.ChaCha20Poly1305})
	f.Add(hello1) // Version1
	f.Fuzz(func(t *testing.T, m []byte) {
		if _, err := kex.ResumeTicketID(m); err != nil {
			return
		}
		if _, _, err := kex.RespondResume(rb.Next, resumeContext, m, nil, nil, nil); err == nil && !bytes.Equal(m, hello) && !bytes.Equal(m, hello1) {
			// Only a hello made with the secret passes: the fuzzer
			// cannot make one.
			t.Fatal("a made-up resume hello was taken")
		}
	})
}

func FuzzResumeReply(f *testing.F) {
	a, b := node(f, "a"), node(f, "b")
	ra, rb, err := handshake(f, a, b)
	if err != nil {
		f.Fatal(err)
	}
	_, hello, _ := kex.StartResume(ra.Next, resumeContext, nil, nil)
	_, reply, _ := kex.RespondResume(rb.Next, resumeContext, hello, nil, nil, nil)
	f.Add(reply)
	f.Fuzz(func(t *testing.T, m []byte) {
		rm, _, err := kex.StartResume(ra.Next, resumeContext, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rm.Reply(m); err == nil {
			t.Fatal("a reply to another resume hello was taken")
		}
	})
}

// BenchmarkResume times a whole resumption, both sides in one goroutine,
// beside BenchmarkHandshake.
func BenchmarkResume(b *testing.B) {
	x, y := node(b, "a"), node(b, "b")
	ra, rb, err := handshake(b, x, y)
	if err != nil {
		b.Fatal(err)
	}
	ti, tr := ra.Next, rb.Next
	for b.Loop() {
		ri, rr, err := resume(b, ti, tr, resumeContext, resumeContext)
		if err != nil {
			b.Fatal(err)
		}
		ti, tr = ri.Next, rr.Next
	}
}
