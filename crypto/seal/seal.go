// Package seal protects the SDUs of one flow with an AEAD under a
// per-flow key, and rejects replayed or too old SDUs with a sliding
// window. It does not agree on keys nor on the AEAD (crypto/kex does).
//
// Two AEADs (aead.go): ChaCha20-Poly1305 (RFC 8439), fast everywhere in
// software, and AES-256-GCM, several times faster where the processor
// has AES and carry-less multiplication instructions (most x86-64 and
// arm64 hosts) and slow, not constant time, where it has none (ARMv7
// boards). Both take a 32-byte key and a 12-byte nonce and add a 16-byte
// tag, so a sealed SDU has the same form and size under either.
//
// A sealed SDU is an 8-byte big-endian field followed by the ciphertext
// and its 16-byte tag: the field's top byte is the key's epoch (mod
// 256), its low 56 bits the counter; the AEAD nonce is 4 zero bytes and
// the field (as in WireGuard), so a key must never seal under two
// counters that repeat: one Sealer per key and direction.
//
// Keys turn over: after RekeySDUs SDUs or RekeyAfter under one key,
// whichever comes first, the Sealer replaces its key with
// HKDF-SHA-256(key, info "ouro/seal/v1 next key") and the epoch goes up
// by one; the counter runs on. The Opener follows the epoch it sees (an
// SDU of the next epoch that authenticates moves it on) and keeps the
// previous key for SDUs reordered across the change. A key once replaced
// is forgotten: what it sealed stays safe if a later key leaks.
package seal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors of this package, wrapped with context. Test with errors.Is.
var (
	ErrKey       = errors.New("seal: key is not 32 bytes")
	ErrExhausted = errors.New("seal: counter exhausted, rekey")
	ErrShort     = errors.New("seal: sealed SDU too short")
	ErrAuth      = errors.New("seal: authentication failed")
	ErrReplay    = errors.New("seal: replayed or too old")
	ErrAEAD      = errors.New("seal: unknown AEAD")
)

// KeySize is the key length; Overhead is what sealing adds to an SDU.
const (
	KeySize   = 32
	CtrLen    = 8
	TagLen    = 16 // both AEADs'
	NonceLen  = 12 // both AEADs'
	Overhead  = CtrLen + TagLen
	WindowLen = 1024 // counters behind the newest that are still accepted once
)

// MaxCounter is the last counter a Sealer uses (56 bits); sealing more
// is ErrExhausted: the flow must be allocated again.
const MaxCounter = 1<<56 - 1

// The default key turnover: whichever comes first.
const (
	RekeySDUs  = 1 << 24
	RekeyAfter = 2 * time.Minute
)

const rekeyInfo = "ouro/seal/v1 next key"

// nextKey is the key that follows k.
func nextKey(k *[KeySize]byte) ([KeySize]byte, error) {
	var out [KeySize]byte
	b, err := hkdf.Expand(sha256.New, k[:], rekeyInfo, KeySize)
	if err != nil {
		return out, fmt.Errorf("seal: next key: %w", err)
	}
	copy(out[:], b)
	clear(b)
	return out, nil
}

// Option changes a Sealer's key turnover (tests, or a policy).
type Option func(*Sealer)

// WithRekey turns keys over after sdus SDUs or after d, whichever first
// (0: the default for either).
func WithRekey(sdus uint64, d time.Duration) Option {
	return func(s *Sealer) {
		if sdus > 0 {
			s.rekeySDUs = sdus
		}
		if d > 0 {
			s.rekeyAfter = d
		}
	}
}

// WithClock gives the Sealer its clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Sealer) { s.now = now } }

// Sealer seals one direction of a flow. Safe for concurrent use (calls
// are serialised: a flow's SDUs are sealed one at a time anyway).
type Sealer struct {
	kind  AEAD
	aead  cipher.AEAD
	mu    sync.Mutex
	ctr   uint64         // last counter used
	nonce [NonceLen]byte // kept here: a local would escape through the interface call

	key        [KeySize]byte
	epoch      uint8
	n          uint64    // SDUs sealed under key
	since      time.Time // when key was taken
	rekeySDUs  uint64
	rekeyAfter time.Duration
	now        func() time.Time // nil: time.Now, read through time.Since per SDU (the monotonic clock alone)
	rekeys     uint64
}

// NewSealer returns a Sealer for key under AEAD a.
func NewSealer(a AEAD, key []byte, opts ...Option) (*Sealer, error) {
	c, err := a.new(key)
	if err != nil {
		return nil, err
	}
	s := &Sealer{kind: a, aead: c, rekeySDUs: RekeySDUs, rekeyAfter: RekeyAfter}
	copy(s.key[:], key)
	for _, o := range opts {
		o(s)
	}
	s.since = s.clock()
	return s, nil
}

// Rekeys returns how many times the key turned over.
func (s *Sealer) Rekeys() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rekeys
}

// rekey moves to the next key. Called with mu held.
func (s *Sealer) rekey(now time.Time) error {
	k, err := nextKey(&s.key)
	if err != nil {
		return err
	}
	a, err := s.kind.new(k[:])
	if err != nil {
		return err
	}
	s.aead, s.key = a, k
	clear(k[:])
	s.epoch++
	s.n, s.since = 0, now
	s.rekeys++
	return nil
}

// clock is the time now: WithClock's, or time.Now.
func (s *Sealer) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// age is how long the current key has sealed. With the default clock it
// reads the monotonic clock only (time.Since: half of time.Now's cost,
// once per SDU).
func (s *Sealer) age() time.Duration {
	if s.now != nil {
		return s.now().Sub(s.since)
	}
	return time.Since(s.since)
}

// AEAD returns the AEAD s seals with.
func (s *Sealer) AEAD() AEAD { return s.kind }

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
	if s.n >= s.rekeySDUs || s.age() >= s.rekeyAfter {
		if err := s.rekey(s.clock()); err != nil {
			return dst, err
		}
	}
	s.ctr++
	s.n++
	field := uint64(s.epoch)<<56 | s.ctr
	binary.BigEndian.PutUint64(s.nonce[4:], field)
	dst = binary.BigEndian.AppendUint64(dst, field)
	return s.aead.Seal(dst, s.nonce[:], sdu, ad), nil
}

// Opener opens one direction of a flow. Safe for concurrent use (calls
// are serialised).
type Opener struct {
	kind  AEAD
	aead  cipher.AEAD
	mu    sync.Mutex
	win   replayWindow
	nonce [NonceLen]byte

	key   [KeySize]byte // the current epoch's
	epoch uint8
	ahead [MaxSkip]ahead // the next epochs' keys, derived when an SDU first claims one
	prev  cipher.AEAD    // the previous epoch's: SDUs reordered across a change
}

// MaxSkip is how many epochs ahead of its own an Opener follows: the
// sender may have turned its key over that many times while every SDU
// of the epochs between was lost.
const MaxSkip = 4

type ahead struct {
	aead cipher.AEAD
	key  [KeySize]byte
}

// NewOpener returns an Opener for key under AEAD a.
func NewOpener(a AEAD, key []byte) (*Opener, error) {
	c, err := a.new(key)
	if err != nil {
		return nil, err
	}
	o := &Opener{kind: a, aead: c}
	copy(o.key[:], key)
	return o, nil
}

// AEAD returns the AEAD o opens with.
func (o *Opener) AEAD() AEAD { return o.kind }

// aeadFor returns the key of epoch e, or nil: the current one, one of
// the MaxSkip next (derived when first asked for, then kept) or the
// previous.
func (o *Opener) aeadFor(e uint8) cipher.AEAD {
	switch d := e - o.epoch; {
	case d == 0:
		return o.aead
	case d == 255:
		return o.prev
	case int(d) <= MaxSkip:
		for i := range int(d) {
			if o.ahead[i].aead != nil {
				continue
			}
			from := &o.key
			if i > 0 {
				from = &o.ahead[i-1].key
			}
			k, err := nextKey(from)
			if err != nil {
				return nil
			}
			if o.ahead[i].aead, err = o.kind.new(k[:]); err != nil {
				return nil
			}
			o.ahead[i].key = k
		}
		return o.ahead[d-1].aead
	}
	return nil
}

// advance makes epoch o.epoch+d (d ≥ 1, its key in ahead[d-1]) the
// current one.
func (o *Opener) advance(d uint8) {
	if d == 1 {
		o.prev = o.aead
	} else {
		o.prev = o.ahead[d-2].aead
	}
	o.aead, o.key = o.ahead[d-1].aead, o.ahead[d-1].key
	rest := o.ahead[d:]
	var next [MaxSkip]ahead
	copy(next[:], rest)
	for i := range o.ahead {
		clear(o.ahead[i].key[:])
	}
	o.ahead = next
	o.epoch += d
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
	field := binary.BigEndian.Uint64(pkt)
	e, c := uint8(field>>56), field&MaxCounter
	if c == 0 {
		return dst, ErrAuth
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.win.fresh(c) {
		return dst, ErrReplay
	}
	a := o.aeadFor(e)
	if a == nil {
		return dst, ErrAuth
	}
	binary.BigEndian.PutUint64(o.nonce[4:], field)
	out, err := a.Open(dst, o.nonce[:], pkt[CtrLen:], ad)
	if err != nil {
		return dst, ErrAuth
	}
	if d := e - o.epoch; d != 0 && d != 255 { // the sender turned its key over
		o.advance(d)
	}
	o.win.mark(c)
	return out, nil
}
