package carrier

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
)

// Sealed bundles. There is no round trip to make a key exchange on, so a
// sealed flow's bundles are sealed to the receiving node's identity key,
// as a file is encrypted to a recipient: the sender makes a fresh X25519
// key per bundle, agrees with the X25519 form of the receiver's Ed25519
// key (identity.X25519Public), derives a ChaCha20-Poly1305 key with HKDF
// and seals the bundle's SDUs, bound to its header (sender, sequence,
// expiry, flow, names, end, recipient). The receiver makes the same
// agreement with its node key through its signer (Agreer). The bundle is
// signed as any other, over the sealed bytes: who sent it is checked
// before anything is opened.
//
// What it gives: only the recipient reads the SDUs; the sender's
// ephemeral key gives forward secrecy against a later theft of the
// sender's key, not of the recipient's (whoever takes the recipient's key
// opens every bundle sealed to it that they kept), which is the price of
// no round trip. No post-quantum part: the sender cannot learn the
// receiver's ML-KEM key without one.

// Agreer makes X25519 agreements with the node's identity key without
// handing it out (the node's signer component; *identity.Identity).
type Agreer interface {
	Agree(ctx context.Context, peer []byte) ([]byte, error)
}

const (
	// sealInfo is the HKDF info of a sealed bundle's key.
	sealInfo = "ouro/carrier/seal/v1"
	// sealedOverhead is what sealing adds to the SDUs' encoding: the
	// ephemeral key and the AEAD tag.
	sealedOverhead = 32 + chacha20poly1305.Overhead
)

// ErrUnopened is a sealed bundle this node cannot open: sealed to
// another node, or made wrongly by its (genuine) sender.
var ErrUnopened = errors.New("carrier: sealed bundle cannot be opened")

// sealSDUs seals b's SDUs to b.To: b.Sealed is set and b.SDUs emptied.
func sealSDUs(c identity.Codec, b *Bundle) error {
	recipient, err := identity.X25519Public(ed25519.PublicKey(b.To))
	if err != nil {
		return fmt.Errorf("carrier: seal to %s: %w", identity.NameOf(b.To), err)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pub, err := ecdh.X25519().NewPublicKey(recipient)
	if err != nil {
		return err
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return fmt.Errorf("carrier: seal: %w", err)
	}
	plain, err := c.Marshal(b.SDUs)
	if err != nil {
		return err
	}
	sdus := b.SDUs
	b.SDUs = nil
	aad, err := c.Marshal(b)
	if err != nil {
		b.SDUs = sdus
		return err
	}
	aead, err := sealKey(shared, eph.PublicKey().Bytes(), recipient)
	if err != nil {
		b.SDUs = sdus
		return err
	}
	out := append(make([]byte, 0, sealedOverhead+len(plain)), eph.PublicKey().Bytes()...)
	b.Sealed = aead.Seal(out, make([]byte, chacha20poly1305.NonceSize), plain, aad)
	return nil
}

// openSDUs opens a sealed bundle addressed to self with a: b.SDUs is set
// (within the bundle limits) and b.Sealed emptied.
func openSDUs(ctx context.Context, c identity.Codec, a Agreer, self ed25519.PublicKey, b *Bundle) error {
	if !self.Equal(ed25519.PublicKey(b.To)) {
		return fmt.Errorf("%w: sealed to %s", ErrUnopened, identity.NameOf(b.To))
	}
	if a == nil {
		return fmt.Errorf("%w: this node cannot open sealed bundles (no agreement capability)", ErrUnopened)
	}
	if len(b.Sealed) < sealedOverhead {
		return fmt.Errorf("%w: %d sealed bytes", ErrUnopened, len(b.Sealed))
	}
	ephPub := b.Sealed[:32]
	shared, err := a.Agree(ctx, ephPub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnopened, err)
	}
	recipient, err := identity.X25519Public(self)
	if err != nil {
		return err
	}
	sealed := b.Sealed
	b.Sealed = nil
	aad, err := c.Marshal(b)
	if err != nil {
		return err
	}
	aead, err := sealKey(shared, ephPub, recipient)
	if err != nil {
		return err
	}
	plain, err := aead.Open(nil, make([]byte, chacha20poly1305.NonceSize), sealed[32:], aad)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnopened, err)
	}
	var sdus [][]byte
	if err := c.Unmarshal(plain, MaxBodySize, &sdus); err != nil {
		return fmt.Errorf("%w: sealed SDUs: %w", ErrMalformed, err)
	}
	if len(sdus) > MaxSDUs {
		return fmt.Errorf("%w: %d sealed SDUs, limit %d", ErrMalformed, len(sdus), MaxSDUs)
	}
	for _, s := range sdus {
		if len(s) > flow.MaxSDU {
			return fmt.Errorf("%w: sealed SDU of %d bytes", ErrMalformed, len(s))
		}
	}
	b.SDUs = sdus
	return nil
}

// sealKey is the AEAD of one sealed bundle: HKDF-SHA-256 of the shared
// secret, salted with the ephemeral and the recipient's X25519 keys.
func sealKey(shared, ephPub, recipient []byte) (interface {
	Seal(dst, nonce, plaintext, aad []byte) []byte
	Open(dst, nonce, ciphertext, aad []byte) ([]byte, error)
}, error) {
	salt := append(append([]byte{}, ephPub...), recipient...)
	k, err := hkdf.Key(sha256.New, shared, salt, sealInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.New(k)
}
