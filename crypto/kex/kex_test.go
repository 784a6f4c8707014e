package kex_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/kex"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/crypto/sealflow"
)

func node(t testing.TB, name string) kex.Config {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := identity.NewDocument(id, name, "test", identity.MeasureBytes([]byte(name)), time.Now()).Sign(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return kex.Config{Signer: id, Doc: doc, Context: []byte("flow a.app -> echo, sealed")}
}

// handshake runs the three messages between i and r.
func handshake(t testing.TB, i, r kex.Config) (kex.Result, kex.Result, error) {
	t.Helper()
	ctx := context.Background()
	in, hello, err := kex.Start(i)
	if err != nil {
		t.Fatal(err)
	}
	rs, reply, err := kex.Respond(ctx, r, hello)
	if err != nil {
		return kex.Result{}, kex.Result{}, err
	}
	fin, err := in.Reply(ctx, reply)
	if err != nil {
		return kex.Result{}, kex.Result{}, err
	}
	// The requester derives its keys once the Finish is sent.
	rr, err := rs.Finish(fin)
	if err != nil {
		return kex.Result{}, kex.Result{}, err
	}
	ri, err := in.Result()
	return ri, rr, err
}

func TestHandshake(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	ra, rb, err := handshake(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Keys.Send != rb.Keys.Recv || ra.Keys.Recv != rb.Keys.Send || ra.Keys.Send == ra.Keys.Recv {
		t.Fatal("the two sides' keys do not pair up")
	}
	if ra.Peer.Name != "b" || rb.Peer.Name != "a" || !ra.Peer.Key.Equal(b.Signer.Public()) || ra.Peer.Measurement != identity.MeasureBytes([]byte("b")) {
		t.Fatalf("peers: a sees %+v, b sees %+v", ra.Peer, rb.Peer)
	}
	// The keys seal a flow both ways.
	if ra.AEAD != rb.AEAD || ra.AEAD != seal.Preferred()[0] {
		t.Fatalf("AEADs: a %s, b %s; want both this host's first, %s", ra.AEAD, rb.AEAD, seal.Preferred()[0])
	}
	sa, _ := seal.NewSealer(ra.AEAD, ra.Keys.Send[:])
	ob, _ := seal.NewOpener(rb.AEAD, rb.Keys.Recv[:])
	pkt, err := sa.Seal(nil, []byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ob.Open(nil, pkt, nil); err != nil || string(got) != "hello" {
		t.Fatalf("open: %q, %v", got, err)
	}
	// Another handshake between the same nodes: other keys.
	ra2, _, err := handshake(t, a, b)
	if err != nil || ra2.Keys == ra.Keys {
		t.Fatalf("second handshake: %v, same keys %v", err, ra2.Keys == ra.Keys)
	}
}

// A forwarder between the two ends changes what it carries: each change
// fails the handshake. Each case was run once without the check it
// exercises (the signature checks) and succeeded there.
func TestTampering(t *testing.T) {
	ctx := context.Background()
	a, b := node(t, "a"), node(t, "b")
	flip := func(m []byte, i int) []byte { m = bytes.Clone(m); m[i] ^= 1; return m }

	// A bit of the responder's ephemeral key flipped in the Reply.
	in, hello, _ := kex.Start(a)
	_, reply, err := kex.Respond(ctx, b, hello)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Reply(ctx, flip(reply, 6)); err == nil {
		t.Error("a tampered Reply was taken")
	}
	// A bit of the initiator's ephemeral key flipped in the Hello: the
	// responder answers, the initiator's check of the transcript fails.
	in, hello, _ = kex.Start(a)
	_, reply, err = kex.Respond(ctx, b, flip(hello, 8))
	if err == nil {
		if _, err := in.Reply(ctx, reply); !errors.Is(err, kex.ErrBadSignature) {
			t.Errorf("a tampered Hello: %v, want a bad signature", err)
		}
	}
	// Downgrade: the forwarder tells the responder the flow is not sealed
	// (another context).
	down := b
	down.Context = []byte("flow a.app -> echo")
	if _, _, err := handshake(t, a, down); !errors.Is(err, kex.ErrBadSignature) {
		t.Errorf("contexts differ: %v, want a bad signature", err)
	}
	// A Finish of another handshake.
	in1, h1, _ := kex.Start(a)
	rs1, r1, _ := kex.Respond(ctx, b, h1)
	in2, h2, _ := kex.Start(a)
	_, r2, _ := kex.Respond(ctx, b, h2)
	fin1, err := in1.Reply(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	fin2, _ := in2.Reply(ctx, r2)
	_ = fin1
	if _, err := rs1.Finish(fin2); !errors.Is(err, kex.ErrBadSignature) {
		t.Errorf("a Finish of another handshake: %v, want a bad signature", err)
	}
}

// impostor shows one node's document but signs with another key.
type impostor struct {
	pub ed25519.PublicKey
	*identity.Identity
}

func (i impostor) Public() ed25519.PublicKey { return i.pub }

func TestImpostor(t *testing.T) {
	a, b, x := node(t, "a"), node(t, "b"), node(t, "x")
	fake := x
	fake.Doc = b.Doc // b's document, x's key
	if _, _, err := handshake(t, a, fake); !errors.Is(err, kex.ErrBadSignature) {
		t.Errorf("responder with b's document and x's key: %v", err)
	}
	fake = x
	fake.Doc = a.Doc
	if _, _, err := handshake(t, fake, b); !errors.Is(err, kex.ErrBadSignature) {
		t.Errorf("initiator with a's document and x's key: %v", err)
	}
}

func TestAccept(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	b.Accept = func(p identity.Document) error {
		if p.Name != "friend" {
			return errors.New("not a friend")
		}
		return nil
	}
	if _, _, err := handshake(t, a, b); !errors.Is(err, kex.ErrRefused) {
		t.Fatalf("b refuses a: %v", err)
	}
}

func FuzzRespond(f *testing.F) {
	a := node(f, "a")
	_, hello, _ := kex.Start(a)
	f.Add(hello)
	a.AEADs = []seal.AEAD{seal.ChaCha20Poly1305} // a Version1 Hello
	_, hello, _ = kex.Start(a)
	f.Add(hello)
	b := node(f, "b")
	f.Fuzz(func(t *testing.T, m []byte) {
		kex.Respond(context.Background(), b, m)
	})
}

func FuzzReply(f *testing.F) {
	a, b := node(f, "a"), node(f, "b")
	_, hello, _ := kex.Start(a)
	_, reply, _ := kex.Respond(context.Background(), b, hello)
	f.Add(reply)
	f.Fuzz(func(t *testing.T, m []byte) {
		in, _, err := kex.Start(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.Reply(context.Background(), m); err == nil {
			t.Fatal("a Reply to another Hello was taken")
		}
	})
}

// FuzzFinish: no Finish but the initiator's own finishes a handshake.
func FuzzFinish(f *testing.F) {
	a, b := node(f, "a"), node(f, "b")
	in, hello, _ := kex.Start(a)
	_, reply, _ := kex.Respond(context.Background(), b, hello)
	fin, _ := in.Reply(context.Background(), reply)
	f.Add(fin)
	f.Fuzz(func(t *testing.T, m []byte) {
		_, hello, err := kex.Start(a)
		if err != nil {
			t.Fatal(err)
		}
		rs, _, err := kex.Respond(context.Background(), b, hello)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Finish(m); err == nil {
			t.Fatal("a Finish of another handshake was taken")
		}
	})
}

// BenchmarkHandshake times a whole handshake, both sides in one
// goroutine: what a sealed allocation would add in CPU, before the
// messages' travel.
func BenchmarkHandshake(b *testing.B) {
	x, y := node(b, "a"), node(b, "b")
	for b.Loop() {
		if _, _, err := handshake(b, x, y); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEphemeralAndVerify: keys made ahead of time serve a handshake, and
// the Verify hook checks both documents (a hook that refuses refuses the
// handshake).
func TestEphemeralAndVerify(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	var calls int
	verify := func(doc []byte) (identity.Document, error) {
		calls++
		return identity.VerifyDocument(doc)
	}
	for _, c := range []*kex.Config{&a, &b} {
		e, err := kex.NewEphemeral()
		if err != nil {
			t.Fatal(err)
		}
		c.Ephemeral, c.Verify = e, verify
	}
	if _, _, err := handshake(t, a, b); err != nil || calls != 2 {
		t.Fatalf("handshake: %v; Verify called %d times, want 2", err, calls)
	}
	b.Ephemeral, _ = kex.NewEphemeral()
	b.Verify = func([]byte) (identity.Document, error) { return identity.Document{}, identity.ErrBadSignature }
	a.Ephemeral = nil
	if _, _, err := handshake(t, a, b); !errors.Is(err, identity.ErrBadSignature) {
		t.Fatalf("a Verify that refuses: %v", err)
	}
}

// TestKeysUsedOnce: a key pair made ahead of time serves one handshake
// (or resumption) only; a second use fails with ErrUsed instead of
// reusing the ephemeral keys. A responder's X25519 pair made ahead
// (ResponderKey) serves a full handshake and is taken before Ephemeral.
func TestKeysUsedOnce(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	eph, err := kex.NewEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	rk, err := kex.NewResumeKey()
	if err != nil {
		t.Fatal(err)
	}
	a.Ephemeral, b.ResponderKey = eph, rk
	ri, rr, err := handshake(t, a, b)
	if err != nil || ri.Keys.Send != rr.Keys.Recv {
		t.Fatalf("handshake with keys made ahead: %v", err)
	}
	if _, _, err := kex.Start(a); !errors.Is(err, kex.ErrUsed) {
		t.Fatalf("an Ephemeral used twice by an initiator: %v, want ErrUsed", err)
	}
	_, hello, err := kex.Start(node(t, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kex.Respond(context.Background(), b, hello); !errors.Is(err, kex.ErrUsed) {
		t.Fatalf("a ResponderKey used twice: %v, want ErrUsed", err)
	}
	b.ResponderKey, b.Ephemeral = nil, eph
	if _, _, err := kex.Respond(context.Background(), b, hello); !errors.Is(err, kex.ErrUsed) {
		t.Fatalf("an Ephemeral used twice by a responder: %v, want ErrUsed", err)
	}
	if _, _, err := kex.StartResume(ri.Next, a.Context, rk, nil); !errors.Is(err, kex.ErrUsed) {
		t.Fatalf("a ResumeKey used twice by a resumption: %v, want ErrUsed", err)
	}
}

// BenchmarkHandshakeAhead is BenchmarkHandshake as the flow allocators
// run it: the key pairs made ahead of time (outside the timed part: a
// supervised goroutine makes them off the allocation's path) and the
// peers' identity documents already verified (sealflow.DocCache). What
// remains is the handshake's critical path in CPU.
func BenchmarkHandshakeAhead(b *testing.B) {
	x, y := node(b, "a"), node(b, "b")
	var docs sealflow.DocCache
	x.Verify, y.Verify = docs.Verify, docs.Verify
	for b.Loop() {
		b.StopTimer()
		keysAhead(b, &x, &y)
		b.StartTimer()
		if _, _, err := handshake(b, x, y); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDeriveBeforeFinish: a responder that derives its keys after
// sending the Reply (Derive, here beside Finish in another goroutine, as
// a flow allocator may race them) gets the initiator's keys.
func TestDeriveBeforeFinish(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	ctx := context.Background()
	in, hello, err := kex.Start(a)
	if err != nil {
		t.Fatal(err)
	}
	rs, reply, err := kex.Respond(ctx, b, hello)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { rs.Derive(); close(done) }()
	fin, err := in.Reply(ctx, reply)
	if err != nil {
		t.Fatal(err)
	}
	ri, err := in.Result()
	if err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Finish(fin)
	<-done
	rs.Derive() // again: no effect
	if err != nil || ri.Keys.Send != rr.Keys.Recv || ri.Keys.Recv != rr.Keys.Send || ri.Next.Secret != rr.Next.Secret {
		t.Fatalf("finish: %v; keys agree: %v", err, ri.Keys.Send == rr.Keys.Recv)
	}
}

// BenchmarkStretches times the full exchange's three stretches on an
// allocation's path, as the flow allocators run it (key pairs made
// ahead, documents cached), one after the other in one goroutine: the
// responder's answer to the Hello (resp-us), the requester's from the
// Reply to the Finish it sends (req-us), the responder's check of the
// Finish (fin-us); path-us is their sum. The work each side does after
// it sends (the responder's Derive, the requester's Result) is off the
// path: after-us.
func BenchmarkStretches(b *testing.B) {
	x, y := node(b, "a"), node(b, "b")
	var docs sealflow.DocCache
	x.Verify, y.Verify = docs.Verify, docs.Verify
	ctx := context.Background()
	var resp, req, fin, after time.Duration
	for b.Loop() {
		b.StopTimer()
		keysAhead(b, &x, &y)
		in, hello, err := kex.Start(x)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		rs, reply, err := kex.Respond(ctx, y, hello)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		rs.Derive()
		t2 := time.Now()
		f, err := in.Reply(ctx, reply)
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if _, err := rs.Finish(f); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		if _, err := in.Result(); err != nil {
			b.Fatal(err)
		}
		t5 := time.Now()
		resp += t1.Sub(t0)
		req += t3.Sub(t2)
		fin += t4.Sub(t3)
		after += t2.Sub(t1) + t5.Sub(t4)
	}
	n := float64(b.N) * 1e3
	b.ReportMetric(float64(resp)/n, "resp-us")
	b.ReportMetric(float64(req)/n, "req-us")
	b.ReportMetric(float64(fin)/n, "fin-us")
	b.ReportMetric(float64(resp+req+fin)/n, "path-us")
	b.ReportMetric(float64(after)/n, "after-us")
}

// keysAhead gives x and y the key pairs a flow allocator makes ahead of
// time: x's ephemeral pair and y's resumption key.
func keysAhead(b *testing.B, x, y *kex.Config) {
	eph, err := kex.NewEphemeral()
	if err != nil {
		b.Fatal(err)
	}
	rk, err := kex.NewResumeKey()
	if err != nil {
		b.Fatal(err)
	}
	x.Ephemeral, y.ResponderKey = eph, rk
}

// TestWarm: warming, once or again, changes nothing an exchange sees: it
// touches only the codec's per-type state.
func TestWarm(t *testing.T) {
	a, b := node(t, "a"), node(t, "b")
	kex.Warm()
	kex.Warm()
	ra, rb, err := handshake(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Keys.Send != rb.Keys.Recv || ra.Peer.Name != "b" || rb.Peer.Name != "a" {
		t.Fatalf("after Warm: keys paired %v, peers %q and %q", ra.Keys.Send == rb.Keys.Recv, ra.Peer.Name, rb.Peer.Name)
	}
}
