// Package kex is the key exchange of sealed flows: a three-message,
// mutually authenticated, hybrid post-quantum handshake between the two
// ends of a flow, which yields one ChaCha20-Poly1305 key per direction
// for crypto/seal. It moves no bytes itself: the flow allocator carries
// its messages (docs/wire/kex.md).
//
//	initiator                                   responder
//	  Hello [version, x25519 eI, ML-KEM-768 ekI, doc I]  ──▶
//	  ◀── Reply [x25519 eR, ML-KEM ciphertext to ekI, doc R,
//	             sig R(transcript: context, Hello, Reply without sig)]
//	  Finish [sig I(transcript: context, Hello, Reply)]  ──▶
//
// The shared secret is X25519(eI, eR) || ML-KEM-768(ekI); the keys are
// HKDF-SHA-256 of it, salted with the SHA-256 of the transcript, one per
// direction. The Hello offers the AEADs the initiator takes, in its
// order of preference; the responder chooses one (seal.Choose) and
// names it in the Reply (aead.go). Each side signs with its node key (identity.LabelKex) and
// checks the other's signed identity document, so each learns who is at
// the other end. Both sides sign the Context (what the flow is: names,
// QoS, the seal request), so that a forwarder that changes it (a
// downgrade) fails the handshake. The ephemeral keys are fresh for every
// handshake: forward secrecy, and a replayed Hello yields keys the
// replayer cannot know. A finished handshake leaves both sides a ticket
// from which the next one between them can resume in one round trip,
// without signatures or ML-KEM (resume.go).
package kex

import (
	"context"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
)

// Versions of the handshake's format: Version's Hello offers AEADs and
// its Reply names the one chosen; a Version1 Hello offers none (the
// first version, which sealed with ChaCha20-Poly1305 only), and is
// answered in Version1's form and sealed with ChaCha20-Poly1305.
const (
	Version  = 2
	Version1 = 1
)

// KeySize is the length of each direction's key (crypto/seal's).
const KeySize = 32

// Limits of the messages, encoded.
const (
	MaxHello  = 2048 + identity.MaxDocumentSize
	MaxReply  = 2048 + identity.MaxDocumentSize
	MaxFinish = 128
)

// Errors, wrapped with context; the identity sentinels are the same
// values as in crypto/identity.
var (
	ErrMalformed    = identity.ErrMalformed    // a message that does not decode or breaks a limit
	ErrBadSignature = identity.ErrBadSignature // the peer's transcript signature does not verify
	ErrRefused      = errors.New("kex: peer refused by policy")
	ErrState        = errors.New("kex: message out of order")
	ErrNoAEAD       = errors.New("kex: no AEAD both sides take")
	ErrUsed         = errors.New("kex: key pair made ahead of time used twice")
)

// Config is one side's part in a handshake.
type Config struct {
	// Signer signs the transcript with the node key; required.
	Signer identity.Signer
	// Doc is the node's signed identity document (for Signer's key);
	// required.
	Doc []byte
	// Context is what both sides must agree the flow is (the flow
	// allocator's encoding of names, QoS and the seal request): it is in
	// both signatures.
	Context []byte
	// Accept, if set, decides whether the peer (its verified document)
	// may be at the other end: an error refuses the handshake.
	Accept func(peer identity.Document) error
	// Verify, if set, replaces identity.VerifyDocument for the peer's
	// document (a cache of documents already verified): it must give
	// the same answer.
	Verify func(doc []byte) (identity.Document, error)
	// Ephemeral, if set, are this handshake's fresh keys, made ahead of
	// time (NewEphemeral) and used for this handshake only (a second
	// use fails with ErrUsed); nil makes them now.
	Ephemeral *Ephemeral
	// ResponderKey, if set, is a responder's fresh X25519 key pair made
	// ahead of time (NewResumeKey's: a responder needs no ML-KEM pair,
	// so a pool of these does not make one it would throw away). Respond
	// takes it before Ephemeral; Start ignores it. Used once, like
	// Ephemeral.
	ResponderKey *ResumeKey
	// AEADs are the AEADs this side takes, in its order of preference
	// (nil: seal.Preferred()); one only forces it (a peer that does
	// not take it fails the handshake with ErrNoAEAD).
	AEADs []seal.AEAD
}

// Ephemeral are one handshake's fresh key pairs: X25519 and ML-KEM-768
// (the initiator's; a responder uses only the X25519 pair). Make them
// ahead of time to take their cost off an allocation's critical path.
// A handshake takes them out (a second use fails with ErrUsed) and drops
// them once its keys are derived, so that nothing keeps the private keys
// reachable: forward secrecy is that of keys made at the handshake. Not
// for concurrent use.
type Ephemeral struct {
	e  *ecdh.PrivateKey
	dk *mlkem.DecapsulationKey768
}

// take hands out the key pairs once.
func (k *Ephemeral) take() (*ecdh.PrivateKey, *mlkem.DecapsulationKey768, error) {
	if k.e == nil {
		return nil, nil, ErrUsed
	}
	e, dk := k.e, k.dk
	k.e, k.dk = nil, nil
	return e, dk, nil
}

// NewEphemeral makes fresh key pairs for one handshake.
func NewEphemeral() (*Ephemeral, error) {
	e, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	return &Ephemeral{e: e, dk: dk}, nil
}

// Keys are a finished handshake's: Send seals what this side sends,
// Recv opens what it receives.
type Keys struct {
	Send, Recv [KeySize]byte
}

// Result is a finished handshake: the keys and the peer's verified
// identity document, and the ticket to resume from next time (resume.go;
// both sides derive the same one).
type Result struct {
	Keys Keys
	AEAD seal.AEAD // what the flow is sealed with
	Peer identity.Document
	Next Ticket
}

// hello is a Version Hello; a Version1 Hello is the same without AEADs
// (hello1).
type hello struct {
	_       struct{} `cbor:",toarray"`
	Version uint
	E       []byte // X25519 public key
	EK      []byte // ML-KEM-768 encapsulation key
	Doc     []byte
	AEADs   []byte // the AEADs offered, one byte each, in order of preference
}

type hello1 struct {
	_       struct{} `cbor:",toarray"`
	Version uint
	E       []byte
	EK      []byte
	Doc     []byte
}

// reply is a Version Reply; a Version1 Reply is the same without AEAD
// (reply1).
type reply struct {
	_    struct{} `cbor:",toarray"`
	E    []byte   // X25519 public key
	CT   []byte   // ML-KEM-768 ciphertext
	Doc  []byte
	Sig  []byte
	AEAD uint // the AEAD chosen
}

type reply1 struct {
	_   struct{} `cbor:",toarray"`
	E   []byte
	CT  []byte
	Doc []byte
	Sig []byte
}

type finish struct {
	_   struct{} `cbor:",toarray"`
	Sig []byte
}

// transcript is what the signatures cover and the key derivation is
// salted with.
type transcript struct {
	_       struct{} `cbor:",toarray"`
	Role    string
	Context []byte
	Hello   []byte
	Reply   []byte // the Reply without its signature
}

var codec = identity.NewCodec()

func (t transcript) bytes(role string) ([]byte, error) {
	t.Role = role
	return codec.Marshal(t)
}

// Initiator is the side that sends Hello.
type Initiator struct {
	cfg   Config
	e     *ecdh.PrivateKey
	dk    *mlkem.DecapsulationKey768
	hello []byte
	offer []seal.AEAD // nil: a Version1 Hello
	done  bool

	// Set by Reply, for Result: what the keys are derived from (dropped
	// once they are) and the checked Reply's peer and AEAD.
	eR   []byte // the responder's X25519 public key
	ct   []byte // the ML-KEM-768 ciphertext
	tr   []byte // the transcript as the responder signed it: the salt
	peer identity.Document
	aead seal.AEAD
	once sync.Once
	res  Result
	rerr error
}

// Start begins a handshake and returns the Hello to send.
func Start(cfg Config) (*Initiator, []byte, error) {
	if err := cfg.check(); err != nil {
		return nil, nil, err
	}
	eph := cfg.Ephemeral
	if eph == nil {
		var err error
		if eph, err = NewEphemeral(); err != nil {
			return nil, nil, err
		}
	}
	e, dk, err := eph.take()
	if err != nil {
		return nil, nil, err
	}
	offer := offerOf(cfg.aeads())
	var b []byte
	if offer == nil {
		b, err = codec.Marshal(hello1{Version: Version1, E: e.PublicKey().Bytes(), EK: dk.EncapsulationKey().Bytes(), Doc: cfg.Doc})
	} else {
		b, err = codec.Marshal(hello{Version: Version, E: e.PublicKey().Bytes(), EK: dk.EncapsulationKey().Bytes(), Doc: cfg.Doc, AEADs: aeadBytes(offer)})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kex: hello: %w", err)
	}
	return &Initiator{cfg: cfg, e: e, dk: dk, hello: b, offer: offer}, b, nil
}

// Reply takes the responder's Reply: it checks the responder's document,
// Accept and signature, and returns the Finish to send. The keys are
// not derived yet: Result does it (the X25519 agreement, the ML-KEM-768
// decapsulation and HKDF), to be called once the Finish is sent, so that
// this work runs while the Finish travels and the responder checks it
// instead of before the Finish leaves. A Reply that fails drops the
// ephemeral keys at once.
func (in *Initiator) Reply(ctx context.Context, b []byte) ([]byte, error) {
	if in.done {
		return nil, ErrState
	}
	in.done = true
	fin, err := in.reply(ctx, b)
	if err != nil {
		in.drop()
	}
	return fin, err
}

func (in *Initiator) reply(ctx context.Context, b []byte) ([]byte, error) {
	r, err := decodeReply(b, in.offer != nil)
	if err != nil {
		return nil, err
	}
	aead := seal.ChaCha20Poly1305 // Version1
	if in.offer != nil {
		if aead = seal.AEAD(r.AEAD); r.AEAD > 255 || !aead.Known() || !slices.Contains(in.offer, aead) {
			return nil, fmt.Errorf("kex: reply: AEAD %d was not offered: %w", r.AEAD, ErrMalformed)
		}
	}
	unsigned, err := r.unsigned(in.offer != nil)
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	t := transcript{Context: in.cfg.Context, Hello: in.hello, Reply: unsigned}
	tr, err := t.bytes("responder")
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	ti, err := t.bytes("initiator")
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	peer, err := in.cfg.peer(r.Doc)
	if err == nil && !identity.VerifyLabeled(peer.Key, identity.LabelKex, digest(tr), r.Sig) {
		err = fmt.Errorf("kex: responder %s: %w", peer.ID, ErrBadSignature)
	}
	if err != nil {
		return nil, err
	}
	sig, err := identity.SignLabeled(ctx, in.cfg.Signer, identity.LabelKex, digest(ti))
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	fin, err := codec.Marshal(finish{Sig: sig})
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	in.eR, in.ct, in.tr, in.peer, in.aead = r.E, r.CT, tr, peer, aead
	return fin, nil
}

// Result derives the keys of a handshake whose Reply was taken (Reply
// returned a Finish): call it once the Finish is sent. It returns them
// with the responder's verified identity and the next ticket; the same
// answer each time. A Reply whose X25519 share is of low order (an
// all-zero agreement: a responder that signed a share it cannot have
// made) fails here, after the Finish, with ErrMalformed: the caller
// drops the flow. Not for concurrent use with Reply.
func (in *Initiator) Result() (Result, error) {
	if in.tr == nil { // no Reply taken
		return Result{}, ErrState
	}
	in.once.Do(func() { in.res, in.rerr = in.derive() })
	return in.res, in.rerr
}

func (in *Initiator) derive() (Result, error) {
	defer in.drop() // used: unreachable from here on
	eR, err := ecdh.X25519().NewPublicKey(in.eR)
	if err != nil {
		return Result{}, fmt.Errorf("kex: reply: %w: %w", ErrMalformed, err)
	}
	dh, err := in.e.ECDH(eR)
	if err != nil {
		return Result{}, fmt.Errorf("kex: %w: %w", ErrMalformed, err)
	}
	defer clear(dh)
	ss, err := in.dk.Decapsulate(in.ct)
	if err != nil {
		return Result{}, fmt.Errorf("kex: reply: %w: %w", ErrMalformed, err)
	}
	defer clear(ss)
	k, err := derive(dh, ss, in.tr)
	if err != nil {
		return Result{}, err
	}
	k.next.Peer = in.peer
	return Result{Keys: Keys{Send: k.i2r, Recv: k.r2i}, AEAD: in.aead, Peer: in.peer, Next: k.next}, nil
}

// drop makes the initiator's ephemeral keys unreachable: used, or the
// handshake failed.
func (in *Initiator) drop() {
	in.e, in.dk, in.eR, in.ct = nil, nil, nil, nil
}

// Responder is the side that answers a Hello.
type Responder struct {
	cfg  Config
	peer identity.Document
	tr   transcript
	aead seal.AEAD
	done bool

	// What the keys are derived from (Derive), dropped once they are.
	e    *ecdh.PrivateKey
	eI   *ecdh.PublicKey
	ss   []byte // ML-KEM-768 shared secret
	trb  []byte // the transcript as the responder signed it: the salt
	once sync.Once
	keys directional
	kerr error
}

// Respond takes a Hello: it checks the initiator's document and Accept,
// and returns the Reply to send. The keys are not derived yet: Derive
// does it (after the Reply is sent, while the initiator works: the
// X25519 agreement and HKDF off the allocation's path), or Finish if
// Derive was not called; they are not to be used until Finish proves
// the initiator holds its key.
func Respond(ctx context.Context, cfg Config, b []byte) (*Responder, []byte, error) {
	if err := cfg.check(); err != nil {
		return nil, nil, err
	}
	h, err := decodeHello(b)
	if err != nil {
		return nil, nil, err
	}
	if len(h.E) != 32 || len(h.EK) != mlkem.EncapsulationKeySize768 {
		return nil, nil, fmt.Errorf("kex: hello: sizes: %w", ErrMalformed)
	}
	aead, err := choose(h.Version, h.AEADs, cfg.aeads())
	if err != nil {
		return nil, nil, err
	}
	peer, err := cfg.peer(h.Doc)
	if err != nil {
		return nil, nil, err
	}
	eI, err := ecdh.X25519().NewPublicKey(h.E)
	if err != nil {
		return nil, nil, fmt.Errorf("kex: hello: %w: %w", ErrMalformed, err)
	}
	ek, err := mlkem.NewEncapsulationKey768(h.EK)
	if err != nil {
		return nil, nil, fmt.Errorf("kex: hello: %w: %w", ErrMalformed, err)
	}
	var e *ecdh.PrivateKey
	switch {
	case cfg.ResponderKey != nil:
		e, err = cfg.ResponderKey.take()
	case cfg.Ephemeral != nil:
		e, _, err = cfg.Ephemeral.take()
	default:
		e, err = ecdh.X25519().GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kex: %w", err)
	}
	ss, ct := ek.Encapsulate()
	v2 := h.Version == Version
	r := reply{E: e.PublicKey().Bytes(), CT: ct, Doc: cfg.Doc, AEAD: uint(aead)}
	unsigned, err := r.unsigned(v2)
	if err != nil {
		return nil, nil, fmt.Errorf("kex: %w", err)
	}
	t := transcript{Context: cfg.Context, Hello: b, Reply: unsigned}
	tr, err := t.bytes("responder")
	if err != nil {
		return nil, nil, fmt.Errorf("kex: %w", err)
	}
	if r.Sig, err = identity.SignLabeled(ctx, cfg.Signer, identity.LabelKex, digest(tr)); err != nil {
		return nil, nil, fmt.Errorf("kex: %w", err)
	}
	out, err := r.encode(v2)
	if err != nil {
		return nil, nil, fmt.Errorf("kex: %w", err)
	}
	return &Responder{cfg: cfg, peer: peer, tr: t, aead: aead, e: e, eI: eI, ss: ss, trb: tr}, out, nil
}

// Derive derives the handshake's keys now, ahead of Finish: call it
// once the Reply is sent, so that the X25519 agreement and the key
// derivation run while the initiator works instead of after its Finish
// arrives. Optional (Finish derives them if Derive did not); safe to
// call concurrently with Finish, and more than once.
func (rs *Responder) Derive() {
	rs.once.Do(func() {
		dh, err := rs.e.ECDH(rs.eI)
		if err != nil {
			rs.kerr = fmt.Errorf("kex: %w: %w", ErrMalformed, err)
		} else {
			rs.keys, rs.kerr = derive(dh, rs.ss, rs.trb)
			clear(dh)
		}
		clear(rs.ss)
		rs.e, rs.eI, rs.ss = nil, nil, nil // used: unreachable from here on
	})
}

// Finish takes the initiator's Finish and returns the keys and the
// initiator's identity once its signature verifies.
func (rs *Responder) Finish(b []byte) (Result, error) {
	if rs.done {
		return Result{}, ErrState
	}
	rs.done = true
	var f finish
	if err := codec.Unmarshal(b, MaxFinish, &f); err != nil {
		return Result{}, fmt.Errorf("kex: finish: %w", err)
	}
	ti, err := rs.tr.bytes("initiator")
	if err != nil {
		return Result{}, fmt.Errorf("kex: %w", err)
	}
	if !identity.VerifyLabeled(rs.peer.Key, identity.LabelKex, digest(ti), f.Sig) {
		return Result{}, fmt.Errorf("kex: initiator %s: %w", rs.peer.ID, ErrBadSignature)
	}
	rs.Derive()
	if rs.kerr != nil {
		return Result{}, rs.kerr
	}
	next := rs.keys.next
	next.Peer = rs.peer
	return Result{Keys: Keys{Send: rs.keys.r2i, Recv: rs.keys.i2r}, AEAD: rs.aead, Peer: rs.peer, Next: next}, nil
}

func (c *Config) check() error {
	if c.Signer == nil || len(c.Doc) == 0 {
		return fmt.Errorf("kex: config needs a signer and an identity document: %w", ErrMalformed)
	}
	return checkAEADs(c.AEADs)
}

// peer verifies a peer's document and runs Accept.
func (c *Config) peer(doc []byte) (identity.Document, error) {
	verify := identity.VerifyDocument
	if c.Verify != nil {
		verify = c.Verify
	}
	d, err := verify(doc)
	if err != nil {
		return identity.Document{}, fmt.Errorf("kex: peer: %w", err)
	}
	if c.Accept != nil {
		if err := c.Accept(d); err != nil {
			return identity.Document{}, fmt.Errorf("kex: peer %s: %w: %w", d.ID, ErrRefused, err)
		}
	}
	return d, nil
}

// digest is what a side signs of a transcript: its SHA-256. A
// transcript holds both key shares and both documents (about 3 KB),
// more than a node's signer component takes in one message.
func digest(tr []byte) []byte {
	d := sha256.Sum256(tr)
	return d[:]
}

// directional are a handshake's keys, one per direction, and the next
// ticket's secret and identifier (its Peer is set by the caller).
type directional struct {
	i2r, r2i [KeySize]byte
	next     Ticket
}

// derive expands a handshake's secret (the hybrid one, or a ticket's and
// a fresh X25519 one) into the two directions' keys and the next ticket,
// salted with the transcript's hash: each is HKDF-SHA-256 (RFC 5869) of
// the secret with its own info, the pseudorandom key extracted once and
// expanded four times (the same bytes as four hkdf.Key calls,
// TestDeriveIsHKDF).
func derive(a, b, tr []byte) (directional, error) {
	salt := sha256.Sum256(tr)
	secret := make([]byte, 0, 64)
	secret = append(append(secret, a...), b...)
	prk, err := hkdf.Extract(sha256.New, secret, salt[:])
	clear(secret)
	if err != nil {
		return directional{}, fmt.Errorf("kex: %w", err)
	}
	defer clear(prk)
	var k directional
	for _, d := range [...]struct {
		info string
		out  []byte
	}{
		{"ouro/kex/v1 initiator to responder", k.i2r[:]},
		{"ouro/kex/v1 responder to initiator", k.r2i[:]},
		{"ouro/kex/v1 resumption secret", k.next.Secret[:]},
		{"ouro/kex/v1 resumption ticket", k.next.ID[:]},
	} {
		out, err := hkdf.Expand(sha256.New, prk, d.info, len(d.out))
		if err != nil {
			return directional{}, fmt.Errorf("kex: %w", err)
		}
		copy(d.out, out)
		clear(out)
	}
	return k, nil
}

// Warm runs each message of the exchange through the codec once. The
// codec builds a type's encoder and decoder by reflection at the type's
// first use in a process: left to a node's first sealed allocation, that
// cost it about 0.3 ms of decoding and encoding on the responder alone
// (the Hello's decoding 0.2 ms, the transcript 0.12 ms, measured between
// two router processes). An allocator that may seal calls it from Start,
// off the allocation path; after the first call in a process it costs
// a few µs.
func Warm() {
	warm(hello{})
	warm(hello1{})
	warm(reply{})
	warm(reply1{})
	warm(finish{})
	warm(transcript{})
	warm(resumeHello{})
	warm(resumeHello1{})
	warm(resumeReply{})
	warm(resumeReply1{})
}

// warm encodes v and decodes it back, errors ignored: only the codec's
// per-type state matters.
func warm[T any](v T) {
	b, err := codec.Marshal(v)
	if err != nil {
		return
	}
	var back T
	_ = codec.Unmarshal(b, len(b), &back)
}
