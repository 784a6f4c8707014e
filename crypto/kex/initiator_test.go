package kex

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/ouronet/ouro/crypto/identity"
)

// TestInitiatorDerivesAfterFinish: Reply returns the Finish without
// agreeing or decapsulating (the initiator still holds its ephemeral
// keys, the X25519 share and the ciphertext: the work that Result does
// after the Finish is sent), Result derives the keys the responder has
// and drops the ephemeral keys, and gives the same answer again.
// Result before any Reply, and after a Reply that failed, is ErrState,
// and a failed Reply drops the ephemeral keys at once.
func TestInitiatorDerivesAfterFinish(t *testing.T) {
	ctx := context.Background()
	a, b := testNode(t, "a"), testNode(t, "b")
	in, hello, err := Start(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Result(); !errors.Is(err, ErrState) {
		t.Fatalf("Result before the Reply: %v, want ErrState", err)
	}
	rs, reply, err := Respond(ctx, b, hello)
	if err != nil {
		t.Fatal(err)
	}
	fin, err := in.Reply(ctx, reply)
	if err != nil {
		t.Fatal(err)
	}
	if in.e == nil || in.dk == nil || in.eR == nil || in.ct == nil {
		t.Fatal("the initiator agreed or decapsulated before returning the Finish")
	}
	rr, err := rs.Finish(fin)
	if err != nil {
		t.Fatal(err)
	}
	ri, err := in.Result()
	if err != nil {
		t.Fatal(err)
	}
	if ri.Keys.Send != rr.Keys.Recv || ri.Keys.Recv != rr.Keys.Send || ri.Next.Secret != rr.Next.Secret || ri.Next.ID != rr.Next.ID {
		t.Fatal("the keys derived after the Finish differ from the responder's")
	}
	if ri.Peer.Name != "b" || !ri.Peer.Key.Equal(b.Signer.Public()) || ri.AEAD != rr.AEAD {
		t.Fatalf("peer %+v, AEAD %s (responder's %s)", ri.Peer, ri.AEAD, rr.AEAD)
	}
	if in.e != nil || in.dk != nil {
		t.Fatal("the initiator's ephemeral keys are still held after Result")
	}
	if again, err := in.Result(); err != nil || again.Keys != ri.Keys {
		t.Fatalf("Result again: %v, same keys %v", err, again.Keys == ri.Keys)
	}

	// A Reply that fails: no Result, the keys dropped.
	in, hello, _ = Start(a)
	_, reply, err = Respond(ctx, b, hello)
	if err != nil {
		t.Fatal(err)
	}
	reply[len(reply)-3] ^= 1 // a bit of the signature (or the AEAD after it)
	if _, err := in.Reply(ctx, reply); err == nil {
		t.Fatal("a damaged Reply was taken")
	}
	if in.e != nil || in.dk != nil {
		t.Fatal("the ephemeral keys are still held after a failed Reply")
	}
	if _, err := in.Result(); !errors.Is(err, ErrState) {
		t.Fatalf("Result after a failed Reply: %v, want ErrState", err)
	}
}

// countSigner counts the signatures asked of it; with fail set it
// makes none.
type countSigner struct {
	identity.Signer
	fail  bool
	calls atomic.Int32
}

func (s *countSigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	s.calls.Add(1)
	if s.fail {
		return nil, errors.New("signer component gone")
	}
	return s.Signer.Sign(ctx, msg)
}

// TestReplySigner: a signer that fails fails the Reply (no Finish), and
// the Finish is signed only once the responder's signature checks: an
// impostor's Reply (b's document, another key) asks no signature.
func TestReplySigner(t *testing.T) {
	ctx := context.Background()
	a, b := testNode(t, "a"), testNode(t, "b")
	fs := &countSigner{Signer: a.Signer, fail: true}
	in, hello, err := Start(a)
	if err != nil {
		t.Fatal(err)
	}
	in.cfg.Signer = fs // the Hello is made; only the Finish needs a signature
	_, reply, err := Respond(ctx, b, hello)
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := in.Reply(ctx, reply); err == nil || fin != nil || fs.calls.Load() != 1 {
		t.Fatalf("Reply with a failing signer: Finish %x, %v, %d signatures asked", fin, err, fs.calls.Load())
	}
	x := testNode(t, "x")
	x.Doc = b.Doc
	cs := &countSigner{Signer: a.Signer}
	in, hello, _ = Start(a)
	in.cfg.Signer = cs
	_, reply, err = Respond(ctx, x, hello)
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := in.Reply(ctx, reply); !errors.Is(err, ErrBadSignature) || fin != nil || cs.calls.Load() != 0 {
		t.Fatalf("an impostor's Reply: Finish %x, %v, %d signatures asked; want no Finish, a bad signature, none asked", fin, err, cs.calls.Load())
	}
}

// TestResultLowOrder: a responder that signs a Reply with an X25519
// share of low order (an all-zero agreement) gets its Finish (its
// signature checks, and the agreement now comes after the Finish) but
// the initiator's Result refuses the keys: ErrMalformed, and the
// ephemeral keys are dropped.
func TestResultLowOrder(t *testing.T) {
	ctx := context.Background()
	a, b := testNode(t, "a"), testNode(t, "b")
	in, hello, err := Start(a)
	if err != nil {
		t.Fatal(err)
	}
	_, reply, err := Respond(ctx, b, hello)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeReply(reply, true)
	if err != nil {
		t.Fatal(err)
	}
	r.E = make([]byte, 32) // the all-zero point: of low order
	unsigned, err := r.unsigned(true)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transcript{Context: b.Context, Hello: hello, Reply: unsigned}.bytes("responder")
	if err != nil {
		t.Fatal(err)
	}
	if r.Sig, err = identity.SignLabeled(ctx, b.Signer, identity.LabelKex, digest(tr)); err != nil {
		t.Fatal(err)
	}
	bad, err := r.encode(true)
	if err != nil {
		t.Fatal(err)
	}
	fin, err := in.Reply(ctx, bad)
	if err != nil || len(fin) == 0 {
		t.Fatalf("a signed Reply with a low-order share: %v (its signature checks: a Finish is due)", err)
	}
	if _, err := in.Result(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Result of a low-order share: %v, want ErrMalformed", err)
	}
	if in.e != nil || in.dk != nil {
		t.Fatal("the ephemeral keys are still held after a failed Result")
	}
}
