package identity

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"testing"
)

// TestAgree: two identities agree on one secret through each other's
// X25519 form of their Ed25519 keys; the X25519 public key of a key is
// the one its secret scalar gives; an ephemeral key agrees with an
// identity as a sealed bundle's sender does.
func TestAgree(t *testing.T) {
	a, b := gen(t), gen(t)
	ax, err := X25519Public(a.Public())
	if err != nil {
		t.Fatal(err)
	}
	bx, err := X25519Public(b.Public())
	if err != nil {
		t.Fatal(err)
	}
	s1, err := a.Agree(context.Background(), bx)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Agree(context.Background(), ax)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1, s2) || len(s1) != 32 {
		t.Fatalf("secrets differ: %x / %x", s1, s2)
	}
	h := sha512.Sum512(a.priv.Seed())
	priv, _ := ecdh.X25519().NewPrivateKey(h[:32])
	if !bytes.Equal(priv.PublicKey().Bytes(), ax) {
		t.Fatalf("X25519Public %x, the scalar's public key %x", ax, priv.PublicKey().Bytes())
	}
	eph, _ := ecdh.X25519().GenerateKey(rand.Reader)
	bpub, _ := ecdh.X25519().NewPublicKey(bx)
	s3, _ := eph.ECDH(bpub)
	s4, err := b.Agree(context.Background(), eph.PublicKey().Bytes())
	if err != nil || !bytes.Equal(s3, s4) {
		t.Fatalf("ephemeral agreement: %x / %x, %v", s3, s4, err)
	}
}

// TestX25519PublicRefuses: a key of the wrong size, not on the curve, or
// of small order (the identity point, here) has no X25519 form; a peer
// key of small order gives no secret.
func TestX25519PublicRefuses(t *testing.T) {
	identityPoint := make([]byte, 32)
	identityPoint[0] = 1
	notOnCurve := bytes.Repeat([]byte{0xff}, 32)
	notOnCurve[31] = 0x7f
	notOnCurve[0] = 0xed // y = p, not canonical
	for name, k := range map[string][]byte{"short": make([]byte, 31), "small order": identityPoint, "not a point": notOnCurve} {
		if _, err := X25519Public(ed25519.PublicKey(k)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	a := gen(t)
	if _, err := a.Agree(context.Background(), make([]byte, 32)); err == nil {
		t.Error("agreement with the zero point gave a secret")
	}
}

func gen(t *testing.T) *Identity {
	t.Helper()
	id, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
