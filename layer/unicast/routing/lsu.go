package routing

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer"
)

// Wire limits of link-state messages (docs/layers.md, routing).
const (
	// Version is the link-state message format version (2: signed LSUs).
	Version = 2
	// MaxLinks is the most adjacencies one LSU carries: an IPCP with more
	// neighbours in one layer is refused by NeighbourUp. 64 links keep an
	// LSU (about 120 + 15 per link bytes, key and signature included)
	// inside one flow.MaxSDU message.
	MaxLinks = 64
	// MaxLSUs is the most LSUs one message carries.
	MaxLSUs = 512
	// MaxMsgLen is the longest message Unmarshal accepts.
	MaxMsgLen = 64 << 10
)

// ErrMalformed is returned (wrapped) for a message that does not decode or
// breaks a limit.
var ErrMalformed = errors.New("malformed link-state message")

// Link is one adjacency of an LSU's origin.
type Link struct {
	_         struct{} `cbor:",toarray"`
	Neighbour layer.Addr
	Metric    uint32 // cost of origin→neighbour, >= 1
}

// LSU is a link-state update: everything its origin says about its own
// adjacencies, stamped with a sequence number that grows with every new
// version. An LSU replaces every older LSU of the same origin; it has no
// age on the wire: each receiver ages it (Config.MaxAge) from when it
// installed it, and the origin refreshes it (Config.RefreshInterval).
//
// An LSU is signed by its origin (Sign): Key is the origin's node key,
// Sig its signature (identity.LabelLSU) of the layer's name and the other
// fields (signedLSU). Receivers check it before they install or flood it.
type LSU struct {
	_      struct{} `cbor:",toarray"`
	Origin layer.Addr
	Seq    uint64
	Links  []Link // sorted by Neighbour, no duplicates
	Name   string // the origin's IPCP name, for views (at most MaxName bytes)
	Key    []byte // the origin's ed25519 public key
	Sig    []byte // the origin's signature
}

// MaxName bounds an LSU's origin name.
const MaxName = 255

// signedLSU is what an LSU's signature covers: the layer's name (no
// replay into another layer) and every field but the signature.
type signedLSU struct {
	_      struct{} `cbor:",toarray"`
	Layer  string
	Origin layer.Addr
	Seq    uint64
	Links  []Link
	Name   string
	Key    []byte
}

func (l *LSU) signed(layerName string) ([]byte, error) {
	return encMode.Marshal(signedLSU{Layer: layerName, Origin: l.Origin, Seq: l.Seq, Links: l.Links, Name: l.Name, Key: l.Key})
}

// Sign signs l as its origin, whose key s holds, for layer layerName:
// it sets Key and Sig.
func Sign(ctx context.Context, s identity.Signer, layerName string, l *LSU) error {
	l.Key = s.Public()
	b, err := l.signed(layerName)
	if err != nil {
		return fmt.Errorf("routing: sign LSU: %w", err)
	}
	if l.Sig, err = identity.SignLabeled(ctx, s, identity.LabelLSU, b); err != nil {
		return fmt.Errorf("routing: sign LSU: %w", err)
	}
	return nil
}

// Verify reports whether l's signature is its Key's, for layer layerName.
func (l *LSU) Verify(layerName string) bool {
	b, err := l.signed(layerName)
	return err == nil && identity.VerifyLabeled(l.Key, identity.LabelLSU, b, l.Sig)
}

// Msg is one link-state message between neighbours: a batch of LSUs.
type Msg struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	LSUs    []LSU
}

// rawMsg is Msg with its LSUs left encoded, so a receiver can keep and
// re-flood each LSU's bytes without re-encoding.
type rawMsg struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	LSUs    []cbor.RawMessage
}

// The codec modes are built once and immutable.
var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			MaxNestedLevels:  8, // msg → lsus → lsu → links → link is 5
			MaxArrayElements: max(MaxLSUs, MaxLinks, 16),
			MaxMapPairs:      16, // no maps in these messages; the library minimum
			IndefLength:      cbor.IndefLengthForbidden,
			TagsMd:           cbor.TagsForbidden,
			DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// Marshal encodes m deterministically (CBOR core deterministic encoding).
func Marshal(m Msg) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return encMode.Marshal(m)
}

// Unmarshal decodes and checks a message.
func Unmarshal(b []byte) (Msg, error) {
	var m Msg
	if len(b) > MaxMsgLen {
		return m, fmt.Errorf("routing: %d-byte message: %w", len(b), ErrMalformed)
	}
	if err := decMode.Unmarshal(b, &m); err != nil {
		return Msg{}, fmt.Errorf("routing: %w: %v", ErrMalformed, err)
	}
	if err := m.check(); err != nil {
		return Msg{}, err
	}
	return m, nil
}

// unmarshalRaw decodes a message's envelope, leaving each LSU encoded
// (aliasing b): the receiver decodes in full only the LSUs it needs
// (decodeLSU), the others it reads only as far as lsuHead.
func unmarshalRaw(b []byte) ([]cbor.RawMessage, error) {
	var m rawMsg
	if len(b) > MaxMsgLen {
		return nil, fmt.Errorf("routing: %d-byte message: %w", len(b), ErrMalformed)
	}
	if err := decMode.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("routing: %w: %v", ErrMalformed, err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("routing: version %d: %w", m.Version, ErrMalformed)
	}
	return m.LSUs, nil
}

// decodeLSU decodes and checks one LSU of a message.
func decodeLSU(raw []byte, l *LSU) error {
	if err := decMode.Unmarshal(raw, l); err != nil {
		return fmt.Errorf("routing: %w: %v", ErrMalformed, err)
	}
	return l.check()
}

// lsuHead reads an encoded LSU's origin and sequence number without
// decoding the rest: an LSU is an array of 6 whose first two elements
// are unsigned integers. ok is false if raw does not start so (the LSU
// is then decoded in full, which tells what is wrong).
func lsuHead(raw []byte) (origin layer.Addr, seq uint64, ok bool) {
	if len(raw) == 0 || raw[0] != 0x86 {
		return 0, 0, false
	}
	o, n := cborUint(raw[1:])
	if n == 0 || o == 0 {
		return 0, 0, false
	}
	s, m := cborUint(raw[1+n:])
	if m == 0 {
		return 0, 0, false
	}
	return layer.Addr(o), s, true
}

// cborUint reads a CBOR unsigned integer at the start of b and returns
// it and its length; length 0: b does not start with one.
func cborUint(b []byte) (uint64, int) {
	if len(b) == 0 || b[0]>>5 != 0 {
		return 0, 0
	}
	ai := int(b[0] & 31)
	if ai < 24 {
		return uint64(ai), 1
	}
	if ai > 27 {
		return 0, 0
	}
	n := 1 << (ai - 24) // 1, 2, 4 or 8 bytes follow
	if len(b) < 1+n {
		return 0, 0
	}
	var v uint64
	for _, c := range b[1 : 1+n] {
		v = v<<8 | uint64(c)
	}
	return v, 1 + n
}

func (m *Msg) check() error {
	if m.Version != Version {
		return fmt.Errorf("routing: version %d: %w", m.Version, ErrMalformed)
	}
	if len(m.LSUs) > MaxLSUs {
		return fmt.Errorf("routing: %d LSUs: %w", len(m.LSUs), ErrMalformed)
	}
	for i := range m.LSUs {
		if err := m.LSUs[i].check(); err != nil {
			return err
		}
	}
	return nil
}

func (l *LSU) check() error {
	if l.Origin == 0 {
		return fmt.Errorf("routing: LSU from address 0: %w", ErrMalformed)
	}
	if len(l.Name) > MaxName {
		return fmt.Errorf("routing: LSU from %d with a %d-byte name: %w", l.Origin, len(l.Name), ErrMalformed)
	}
	if len(l.Key) != ed25519.PublicKeySize || len(l.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("routing: LSU from %d with a %d-byte key and a %d-byte signature: %w", l.Origin, len(l.Key), len(l.Sig), ErrMalformed)
	}
	if len(l.Links) > MaxLinks {
		return fmt.Errorf("routing: LSU from %d has %d links: %w", l.Origin, len(l.Links), ErrMalformed)
	}
	for i, k := range l.Links {
		switch {
		case k.Neighbour == 0 || k.Neighbour == l.Origin:
			return fmt.Errorf("routing: LSU from %d links to %d: %w", l.Origin, k.Neighbour, ErrMalformed)
		case k.Metric == 0:
			return fmt.Errorf("routing: LSU from %d: zero metric: %w", l.Origin, ErrMalformed)
		case i > 0 && k.Neighbour <= l.Links[i-1].Neighbour:
			return fmt.Errorf("routing: LSU from %d: links not sorted: %w", l.Origin, ErrMalformed)
		}
	}
	return nil
}

// appendMsgHead appends the CBOR head of a Msg carrying n LSUs, so that
// already encoded LSUs can follow it: array(2), Version, array(n).
func appendMsgHead(b []byte, n int) []byte {
	b = append(b, 0x82, Version)
	return appendArrayHead(b, n)
}

func appendArrayHead(b []byte, n int) []byte {
	const major = 4 << 5
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n < 1<<8:
		return append(b, major|24, byte(n))
	default: // n < 1<<16: MaxLSUs
		return append(b, major|25, byte(n>>8), byte(n))
	}
}
