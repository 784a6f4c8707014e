package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"

	"filippo.io/edwards25519"
)

// Batch checks many labelled signatures at once, faster than one by one:
// Add each (key, label, message, signature), then Verify. It is the
// randomised batch equation of Ed25519 (cofactored: [8](−Σzᵢsᵢ·B + Σzᵢ·Rᵢ +
// Σzᵢhᵢ·Aᵢ) = 0 with random 128-bit zᵢ), so a batch passes only if, with
// overwhelming probability, every signature would pass the cofactored
// check; when it fails, Verify checks each signature alone to tell which.
// A signature that only its own signer could have made differently
// (small-order components) may pass here and fail crypto/ed25519's
// cofactorless check: no forgery follows from that.
type Batch struct {
	items []batchItem
}

type batchItem struct {
	pub ed25519.PublicKey
	msg []byte // labelled
	sig []byte
}

// Add queues one signature; a key or signature of the wrong size or a bad
// label makes it fail (Verify reports it).
func (b *Batch) Add(pub ed25519.PublicKey, label string, msg, sig []byte) {
	it := batchItem{pub: pub, sig: sig}
	if validLabel(label) {
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
	if len(items) == 0 {
		return ok
	}
	if len(items) >= 2 && batchOK(items) {
		for i := range ok {
			ok[i] = true
		}
		return ok
	}
	for i, it := range items {
		ok[i] = it.msg != nil && len(it.pub) == ed25519.PublicKeySize && len(it.sig) == ed25519.SignatureSize &&
			ed25519.Verify(it.pub, it.msg, it.sig)
	}
	return ok
}

// batchOK checks the batch equation; false if any item is malformed.
func batchOK(items []batchItem) bool {
	n := len(items)
	scalars := make([]*edwards25519.Scalar, 0, 2*n+1)
	points := make([]*edwards25519.Point, 0, 2*n+1)
	sumS := edwards25519.NewScalar()
	var zb [64]byte
	for _, it := range items {
		if it.msg == nil || len(it.pub) != ed25519.PublicKeySize || len(it.sig) != ed25519.SignatureSize {
			return false
		}
		A, err := new(edwards25519.Point).SetBytes(it.pub)
		if err != nil {
			return false
		}
		R, err := new(edwards25519.Point).SetBytes(it.sig[:32])
		if err != nil {
			return false
		}
		s, err := edwards25519.NewScalar().SetCanonicalBytes(it.sig[32:])
		if err != nil {
			return false
		}
		h := sha512.New()
		h.Write(it.sig[:32])
		h.Write(it.pub)
		h.Write(it.msg)
		var digest [64]byte
		k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
		if err != nil {
			return false
		}
		clear(zb[:])
		if _, err := rand.Read(zb[:16]); err != nil {
			return false
		}
		z, err := edwards25519.NewScalar().SetUniformBytes(zb[:])
		if err != nil {
			return false
		}
		sumS.MultiplyAdd(z, s, sumS)
		scalars = append(scalars, z, edwards25519.NewScalar().Multiply(z, k))
		points = append(points, R, A)
	}
	scalars = append(scalars, edwards25519.NewScalar().Negate(sumS))
	points = append(points, edwards25519.NewGeneratorPoint())
	check := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return check.MultByCofactor(check).Equal(edwards25519.NewIdentityPoint()) == 1
}
