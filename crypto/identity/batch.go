package identity

import (
	"crypto/ed25519"
	"crypto/rand"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Batch checks many labelled signatures at once, faster than one by one:
// Add each (key, label, message, signature), then Verify. It is the
// randomised batch equation of Ed25519 (cofactored: [8](−Σzᵢsᵢ·B + Σzᵢ·Rᵢ +
// Σzᵢhᵢ·Aᵢ) = 0 with random 128-bit zᵢ), so a batch passes only if, with
// overwhelming probability, every signature would pass the cofactored
// check; when it fails, Verify checks each signature alone (cofactored
// too) to tell which.
//
// The arithmetic is github.com/oasisprotocol/curve25519-voi's (multi-scalar
// multiplication with precomputed tables for small batches, Pippenger's
// method for large ones; docs/benchmarks.md compares it with the
// filippo.io/edwards25519 version this replaced), used with its default
// rules: a small-order or non-canonical key fails, a small-order R does
// not. So a signature with small-order components, which only its own
// signer could have made, may pass here and fail crypto/ed25519's
// cofactorless check; no forgery follows from that.
//
// The cost per signature falls with the batch's size: about 1.6x one
// crypto/ed25519.Verify for a batch of 1, 0.3x for 64, 0.2x from a few
// hundred on (docs/benchmarks.md).
type Batch struct {
	items []batchItem
}

type batchItem struct {
	pub ed25519.PublicKey
	msg []byte // labelled; nil: malformed
	sig []byte
}

// Add queues one signature; a key or signature of the wrong size or a bad
// label makes it fail (Verify reports it).
func (b *Batch) Add(pub ed25519.PublicKey, label string, msg, sig []byte) {
	it := batchItem{pub: pub, sig: sig}
	if validLabel(label) && len(pub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize {
		it.msg = Labeled(label, msg)
	}
	b.items = append(b.items, it)
}

// Len is the number of signatures queued.
func (b *Batch) Len() int { return len(b.items) }

// Verify reports, for each signature in the order added, whether it is
// valid, and resets the batch.
func (b *Batch) Verify() []bool {
	items := b.items
	b.items = nil
	ok := make([]bool, len(items))
	var idx []int // positions of the well-formed items
	for i, it := range items {
		if it.msg != nil {
			idx = append(idx, i)
		}
	}
	switch len(idx) {
	case 0:
		return ok
	case 1:
		it := items[idx[0]]
		ok[idx[0]] = voi.Verify(voi.PublicKey(it.pub), it.msg, it.sig)
		return ok
	}
	v := voi.NewBatchVerifierWithCapacity(len(idx))
	for _, i := range idx {
		it := items[i]
		v.Add(voi.PublicKey(it.pub), it.msg, it.sig)
	}
	_, valid := v.Verify(rand.Reader)
	for k, i := range idx {
		ok[i] = valid[k]
	}
	return ok
}
