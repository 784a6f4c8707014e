package kex

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
)

// TestDeriveIsHKDF: derive (one extract, four expansions) gives the bytes of
// HKDF-SHA-256 (hkdf.Key) for each of its four outputs, so that a peer
// running the earlier derivation gets the same keys and ticket.
func TestDeriveIsHKDF(t *testing.T) {
	for _, sizes := range [][2]int{{32, 32}, {32, 0}, {32, 32 + 1088}} {
		a, b, tr := make([]byte, sizes[0]), make([]byte, sizes[1]), make([]byte, 3000)
		rand.Read(a)
		rand.Read(b)
		rand.Read(tr)
		k, err := derive(a, b, tr)
		if err != nil {
			t.Fatal(err)
		}
		salt := sha256.Sum256(tr)
		secret := append(append([]byte(nil), a...), b...)
		for _, d := range []struct {
			info string
			got  []byte
		}{
			{"ouro/kex/v1 initiator to responder", k.i2r[:]},
			{"ouro/kex/v1 responder to initiator", k.r2i[:]},
			{"ouro/kex/v1 resumption secret", k.next.Secret[:]},
			{"ouro/kex/v1 resumption ticket", k.next.ID[:]},
		} {
			want, err := hkdf.Key(sha256.New, secret, salt[:], d.info, len(d.got))
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(d.got) {
				t.Fatalf("%d+%d-byte secret, %q: derive gives %x, HKDF %x", len(a), len(b), d.info, d.got, want)
			}
		}
	}
}

// TestDeriveLowOrder: an initiator's X25519 share of low order (an
// all-zero agreement) still fails the handshake now that the responder
// agrees after sending its Reply: Derive, and so Finish, refuse it.
func TestDeriveLowOrder(t *testing.T) {
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := identity.NewDocument(id, "a", "", identity.Measurement{}, time.Now()).Sign(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Signer: id, Doc: doc, Context: []byte("c")}
	eph, err := NewEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.Marshal(hello{Version: Version, E: make([]byte, 32), EK: eph.dk.EncapsulationKey().Bytes(), Doc: doc, AEADs: aeadBytes(seal.Preferred())})
	if err != nil {
		t.Fatal(err)
	}
	rs, _, err := Respond(context.Background(), cfg, b)
	if err != nil {
		t.Fatalf("respond: %v", err)
	}
	rs.Derive()
	if !errors.Is(rs.kerr, ErrMalformed) {
		t.Fatalf("a low-order share: %v, want ErrMalformed", rs.kerr)
	}
	if rs.e != nil || rs.ss != nil {
		t.Fatal("the responder's ephemeral key and secret are still held after Derive")
	}
}
