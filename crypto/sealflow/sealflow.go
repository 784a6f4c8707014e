// Package sealflow is the glue between a flow allocator and the sealed
// flows' key exchange (crypto/kex) that every allocator sealing flows
// shares: the unicast layer's (layer/unicast/fa) and the point-to-point
// shims' (layer/shim/internal/engine). It cuts key-exchange messages
// into pieces that fit a control message and gathers them again,
// remembers verified identity documents, makes a node's identity
// document, and shows a verified document as the flow API's peer.
package sealflow

import (
	"context"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
)

// MaxParts is the most pieces a key-exchange message is cut into.
const MaxParts = 5

// Split cuts a key-exchange message into pieces of at most chunk bytes
// (at least one piece, even for an empty message). The pieces share b's
// memory.
func Split(b []byte, chunk int) [][]byte {
	var out [][]byte
	for len(b) > chunk {
		out = append(out, b[:chunk])
		b = b[chunk:]
	}
	return append(out, b)
}

// Pieces gathers the pieces of one key-exchange message. The zero value
// is ready.
type Pieces struct {
	got  [MaxParts][]byte
	n    uint8 // how many there are (0: none seen yet)
	have uint8
}

// Add takes piece part of parts (the caller checked part < parts ≤
// MaxParts) and returns the whole message once every piece is in. A
// piece that disagrees on the count starts over; a piece seen before is
// ignored. b is copied.
func (p *Pieces) Add(part, parts uint8, b []byte) ([]byte, bool) {
	if p.n != parts {
		*p = Pieces{n: parts}
	}
	if p.got[part] == nil {
		p.got[part] = append([]byte(nil), b...)
		p.have++
	}
	if p.have < p.n {
		return nil, false
	}
	var out []byte
	for _, b := range p.got[:p.n] {
		out = append(out, b...)
	}
	return out, true
}

// DocCache remembers identity documents already verified, by their
// bytes' hash, so that a peer's second flow does not check its
// document's signature again; it remembers no failed document. Bounded
// (MaxDocs, identity.Memo). The zero value is ready; safe for concurrent
// use.
type DocCache struct {
	memo identity.Memo[identity.Document]
}

// MaxDocs bounds a DocCache.
const MaxDocs = 256

// Verify is identity.VerifyDocument, remembered (kex.Config.Verify).
func (c *DocCache) Verify(doc []byte) (identity.Document, error) {
	k := identity.MemoKey(doc)
	if d, ok := c.memo.Get(k); ok {
		return d, nil
	}
	d, err := identity.VerifyDocument(doc)
	if err != nil {
		return d, err
	}
	c.memo.Put(k, d, MaxDocs)
	return d, nil
}

// documenter is a signer that hands out the node's signed identity
// document (a node's signer component: measured, with its board).
type documenter interface {
	Document(ctx context.Context) ([]byte, error)
}

// Document returns s's signed identity document: the one s hands out if
// it does (a node's signer), else one signed now for name (no board, not
// measured).
func Document(ctx context.Context, s identity.Signer, name string) ([]byte, error) {
	if d, ok := s.(documenter); ok {
		return d.Document(ctx)
	}
	return identity.NewDocument(s, name, "", identity.Measurement{}, time.Now()).Sign(ctx, s)
}

// PeerSealed is PeerOf for a flow sealed with a: the peer shows the AEAD.
func PeerSealed(d identity.Document, a seal.AEAD) *flow.Peer {
	p := PeerOf(d)
	p.AEAD = a.String()
	return p
}

// PeerOf is a verified identity document as the flow API shows it.
func PeerOf(d identity.Document) *flow.Peer {
	p := &flow.Peer{Key: append([]byte(nil), d.Key...), ID: d.ID, Name: d.Name, Board: d.Board}
	if d.Measurement != (identity.Measurement{}) {
		p.Measurement = append([]byte(nil), d.Measurement[:]...)
	}
	return p
}

// RefillPause is how long KeepMade waits, once ch has been full, before
// it makes a value to replace one taken: the value was taken by an
// allocation whose key exchange is still running, and making its
// replacement at once would compete with that exchange for the CPU.
const RefillPause = 2 * time.Millisecond

// KeepMade keeps ch full of values made by mk (key pairs made ahead of
// time, so that making them is off an allocation's critical path) until
// done is closed; it returns mk's error if mk fails. Run it in a
// goroutine of its own; each value sent is taken once. It fills ch at
// once, then replaces each value taken RefillPause after it was taken.
func KeepMade[T any](ch chan<- T, done <-chan struct{}, mk func() (T, error)) error {
	var pause *time.Timer
	for {
		v, err := mk()
		if err != nil {
			return err
		}
		select {
		case ch <- v:
			continue // still filling
		default:
		}
		select {
		case ch <- v:
		case <-done:
			return nil
		}
		if pause == nil {
			pause = time.NewTimer(RefillPause)
		} else {
			pause.Reset(RefillPause)
		}
		select {
		case <-pause.C:
		case <-done:
			return nil
		}
	}
}
