// Package seal protects the SDUs of one flow with an AEAD
// (ChaCha20-Poly1305, RFC 8439) under a per-flow key, and rejects
// replayed or too old SDUs with a sliding window. It does not agree on
// keys (crypto/kex does) nor rekey.
//
// A sealed SDU is an 8-byte big-endian counter followed by the
// ciphertext and its 16-byte tag; the AEAD nonce is 4 zero bytes and the
// counter (as in WireGuard), so a key must never seal under two counters
// that repeat: one Sealer per key and direction.
package seal

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// Errors of this package, wrapped with context. Test with errors.Is.
var (
	ErrKey       = errors.New("seal: key is not 32 bytes")
	ErrExhausted = errors.New("seal: counter exhausted, rekey")
	ErrShort     = errors.New("seal: sealed SDU too short")
	ErrAuth      = errors.New("seal: authentication failed")
	ErrReplay    = errors.New("seal: replayed or too old")
)

// KeySize is the key length; Overhead is what sealing adds to an SDU.
const (
	KeySize   = chacha20poly1305.KeySize
	CtrLen    = 8
	Overhead  = CtrLen + chacha20poly1305.Overhead
	WindowLen = 1024 // counters behind the newest that are still accepted once
)

// MaxCounter is the last counter a Sealer uses; sealing more is
// ErrExhausted (RFC 8439 allows 2^64 messages per key; stopping well
// short leaves room for the rekey to happen).
const MaxCounter = 1<<63 - 1

// Sealer seals one direction of a flow. Safe for concurrent use (calls
// are serialised: a flow's SDUs are sealed one at a time anyway).
type Sealer struct {
	aead  cipher.AEAD
	mu    sync.Mutex
	ctr   uint64                           // last counter used
	nonce [chacha20poly1305.NonceSize]byte // kept here: a local would escape through the interface call
}

// NewSealer returns a Sealer for key.
func NewSealer(key []byte) (*Sealer, error) {
	a, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: a}, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%d bytes: %w", len(key), ErrKey)
	}
	return chacha20poly1305.New(key)
}

// Seal appends the sealed form of sdu to dst and returns it; ad is
// authenticated, not sent (e.g. the flow's ids). With cap(dst)-len(dst)
// >= len(sdu)+Overhead it allocates nothing. dst and sdu must not overlap
// unless dst[len(dst):] starts CtrLen bytes before sdu (sealing in place
// behind a reserved counter).
func (s *Sealer) Seal(dst, sdu, ad []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctr >= MaxCounter {
		return dst, ErrExhausted
	}
	s.ctr++
	binary.BigEndian.PutUint64(s.nonce[4:], s.ctr)
	dst = binary.BigEndian.AppendUint64(dst, s.ctr)
	return s.aead.Seal(dst, s.nonce[:], sdu, ad), nil
}

// Opener opens one direction of a flow. Safe for concurrent use (calls
// are serialised).
type Opener struct {
	aead  cipher.AEAD
	mu    sync.Mutex
	top   uint64 // newest counter accepted (0: none yet)
	bits  [WindowLen / 64]uint64
	nonce [chacha20poly1305.NonceSize]byte
}

// NewOpener returns an Opener for key.
func NewOpener(key []byte) (*Opener, error) {
	a, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Opener{aead: a}, nil
}

// Open authenticates pkt (from Seal, with the same ad), appends the SDU
// to dst and returns it. A counter seen before or more than WindowLen
// behind the newest is ErrReplay; a forged or damaged pkt is ErrAuth.
// The window moves only for authentic SDUs. With enough room in dst it
// allocates nothing.
func (o *Opener) Open(dst, pkt, ad []byte) ([]byte, error) {
	if len(pkt) < Overhead {
		return dst, ErrShort
	}
	c := binary.BigEndian.Uint64(pkt)
	if c == 0 || c > MaxCounter {
		return dst, ErrAuth
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.fresh(c) {
		return dst, ErrReplay
	}
	binary.BigEndian.PutUint64(o.nonce[4:], c)
	out, err := o.aead.Open(dst, o.nonce[:], pkt[CtrLen:], ad)
	if err != nil {
		return dst, ErrAuth
	}
	o.mark(c)
	return out, nil
}

// fresh reports whether c is not known to have been accepted.
func (o *Opener) fresh(c uint64) bool {
	if c > o.top {
		return true
	}
	off := o.top - c
	return off < WindowLen && o.bits[off/64]&(1<<(off%64)) == 0
}

// mark records c (fresh) as accepted.
func (o *Opener) mark(c uint64) {
	if c > o.top {
		o.shift(c - o.top)
		o.top = c
	}
	off := o.top - c
	o.bits[off/64] |= 1 << (off % 64)
}

func (o *Opener) shift(s uint64) {
	if s >= WindowLen {
		o.bits = [WindowLen / 64]uint64{}
		return
	}
	ws, bs := int(s/64), s%64
	for i := len(o.bits) - 1; i >= 0; i-- {
		var v uint64
		if j := i - ws; j >= 0 {
			v = o.bits[j] << bs
			if bs > 0 && j > 0 {
				v |= o.bits[j-1] >> (64 - bs)
			}
		}
		o.bits[i] = v
	}
}
