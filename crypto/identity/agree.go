package identity

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha512"
	"fmt"

	"github.com/oasisprotocol/curve25519-voi/curve"
)

// Key agreement with a node's identity key, for messages sealed to a node
// without a round trip (the carrier shim's sealed bundles): the X25519
// key pair of an Ed25519 key is the same secret scalar and the same point
// in Montgomery form (RFC 7748 §4.1's birational map), as age's
// ssh-ed25519 recipients and libsodium's crypto_sign_ed25519_pk_to_curve25519
// convert them. Using one key for both signatures and Diffie-Hellman is
// shown secure for Ed25519 and X25519 (Thormarker, "On using the same key
// pair for Ed25519 and an X25519 based KEM", 2021); the signer component
// keeps the key and answers agreement requests only for the components
// granted them.

// X25519Public returns the X25519 public key of an Ed25519 public key. A
// key that is not a point on the curve, or of small order, is refused.
func X25519Public(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("identity: x25519 of a key of %d bytes: %w", len(pub), ErrMalformed)
	}
	var c curve.CompressedEdwardsY
	if _, err := c.SetBytes(pub); err != nil {
		return nil, fmt.Errorf("identity: x25519: %w: %w", ErrMalformed, err)
	}
	var p curve.EdwardsPoint
	if _, err := p.SetCompressedY(&c); err != nil {
		return nil, fmt.Errorf("identity: x25519: not a point: %w", ErrMalformed)
	}
	if p.IsSmallOrder() {
		return nil, fmt.Errorf("identity: x25519: a key of small order: %w", ErrMalformed)
	}
	var m curve.MontgomeryPoint
	m.SetEdwards(&p)
	return m[:], nil
}

// Agree returns the X25519 shared secret of this identity's key and the
// X25519 public key peer. An all-zero result (peer of small order) is an
// error.
func (id *Identity) Agree(_ context.Context, peer []byte) ([]byte, error) {
	h := sha512.Sum512(id.priv.Seed())
	priv, err := ecdh.X25519().NewPrivateKey(h[:32]) // clamped by X25519 itself
	if err != nil {
		return nil, fmt.Errorf("identity: agree: %w", err)
	}
	pk, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("identity: agree: %w: %w", ErrMalformed, err)
	}
	s, err := priv.ECDH(pk)
	if err != nil {
		return nil, fmt.Errorf("identity: agree: %w: %w", ErrMalformed, err)
	}
	return s, nil
}
