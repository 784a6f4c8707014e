package kex

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
)

// Resumption: a finished handshake leaves both sides a Ticket (a shared
// secret, the peer's verified identity and an identifier). The next
// handshake between the same two nodes can use it instead of signatures
// and ML-KEM: two small messages, each authenticated with an HMAC keyed
// from the ticket's secret, and a fresh X25519 exchange for forward
// secrecy (the shape of TLS 1.3's psk_dhe_ke resumption).
//
//	initiator                                   responder
//	  ResumeHello [version, ticket id, x25519 eI,
//	               mac(transcript: context, ResumeHello)]  ──▶
//	  ◀── ResumeReply [x25519 eR, mac(transcript: context,
//	                   ResumeHello, ResumeReply)]
//
// A ticket is used once: the responder forgets it when it takes it, so a
// replayed ResumeHello finds no ticket (the caller refuses it). The
// initiator's MAC proves, at once, that it holds the secret only the two
// ends share: the responder knows who asks, and that the question is
// fresh, before it answers, so a resumed allocation takes one round trip
// where the full handshake takes two. Each resumption gives both sides
// the next ticket (Result.Next); its identifier, derived from the
// secret, cannot be linked by an observer to the one before.
//
// The ResumeHello offers AEADs and the ResumeReply names the one chosen
// as in the full exchange (aead.go), inside what the MACs cover: a
// resumption negotiates again (either side's configuration may have
// changed since its ticket), and a forwarder that changes the offer or
// the choice fails the MACs. An offer of ChaCha20-Poly1305 alone is a
// Version1 ResumeHello (no list), answered by a Version1 ResumeReply.
//
// Keys: HKDF-SHA-256(secret = ticket secret || X25519(eI, eR), salt =
// SHA-256(the responder's transcript)). The secret of a ticket comes from
// the hybrid exchange it descends from, so a recorded resumed flow stays
// out of reach of an attacker who later breaks X25519 alone.

// TicketIDSize is the length of a ticket's identifier.
const TicketIDSize = 16

// MaxResume bounds a ResumeHello or ResumeReply, encoded.
const MaxResume = 256

// Ticket is what one side keeps of a finished handshake to resume from.
type Ticket struct {
	ID     [TicketIDSize]byte
	Secret [KeySize]byte
	// Peer is the other side's identity, verified by the handshake the
	// ticket descends from.
	Peer identity.Document
}

// resumeHello is a Version ResumeHello; resumeHello1 a Version1 one
// (no AEADs).
type resumeHello struct {
	_       struct{} `cbor:",toarray"`
	Version uint
	Ticket  []byte // TicketIDSize
	E       []byte // X25519 public key
	MAC     []byte // HMAC-SHA-256; empty in the transcript
	AEADs   []byte // offered, as in a Hello
}

type resumeHello1 struct {
	_       struct{} `cbor:",toarray"`
	Version uint
	Ticket  []byte
	E       []byte
	MAC     []byte
}

// encode is h as sent: of Version1 (without AEADs) if h.Version is.
func (h resumeHello) encode() ([]byte, error) {
	if h.Version == Version1 {
		return codec.Marshal(resumeHello1{Version: h.Version, Ticket: h.Ticket, E: h.E, MAC: h.MAC})
	}
	return codec.Marshal(h)
}

// resumeReply is a Version ResumeReply; resumeReply1 a Version1 one (no
// AEAD).
type resumeReply struct {
	_    struct{} `cbor:",toarray"`
	E    []byte
	MAC  []byte
	AEAD uint // chosen
}

type resumeReply1 struct {
	_   struct{} `cbor:",toarray"`
	E   []byte
	MAC []byte
}

// encode is r as sent: of Version if v2, else of Version1.
func (r resumeReply) encode(v2 bool) ([]byte, error) {
	if v2 {
		return codec.Marshal(r)
	}
	return codec.Marshal(resumeReply1{E: r.E, MAC: r.MAC})
}

// Roles of the transcripts a resumption MACs.
const (
	roleResumeI = "resume initiator"
	roleResumeR = "resume responder"
)

// ResumeKey is one fresh X25519 key pair, made ahead of time
// (NewResumeKey) to take its cost off an allocation's critical path: a
// resumption's, or a full exchange's responder's (Config.ResponderKey).
// Used once, like Ephemeral: a second use fails with ErrUsed.
type ResumeKey struct{ e *ecdh.PrivateKey }

// take hands out the key pair once.
func (k *ResumeKey) take() (*ecdh.PrivateKey, error) {
	if k.e == nil {
		return nil, ErrUsed
	}
	e := k.e
	k.e = nil
	return e, nil
}

// NewResumeKey makes a fresh key pair for one resumption.
func NewResumeKey() (*ResumeKey, error) {
	e, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	return &ResumeKey{e: e}, nil
}

// key returns k's pair, or a new one if k is nil.
func (k *ResumeKey) key() (*ecdh.PrivateKey, error) {
	if k != nil {
		return k.take()
	}
	nk, err := NewResumeKey()
	if err != nil {
		return nil, err
	}
	return nk.e, nil
}

// Resumer is the initiator's side of a resumption.
type Resumer struct {
	t       Ticket
	context []byte
	e       *ecdh.PrivateKey
	hello   []byte      // without its MAC
	offer   []seal.AEAD // nil: a Version1 ResumeHello
	done    bool
}

// StartResume begins a resumption from t (the initiator's, taken once)
// for a flow described by context, with key (nil: one made now),
// offering aeads (as Config.AEADs; nil: seal.Preferred()); it returns
// the ResumeHello to send.
func StartResume(t Ticket, context []byte, key *ResumeKey, aeads []seal.AEAD) (*Resumer, []byte, error) {
	if err := checkAEADs(aeads); err != nil {
		return nil, nil, err
	}
	if aeads == nil {
		aeads = seal.Preferred()
	}
	e, err := key.key()
	if err != nil {
		return nil, nil, err
	}
	offer := offerOf(aeads)
	h := resumeHello{Version: Version1, Ticket: t.ID[:], E: e.PublicKey().Bytes()}
	if offer != nil {
		h.Version, h.AEADs = Version, aeadBytes(offer)
	}
	unsigned, err := h.encode()
	if err != nil {
		return nil, nil, fmt.Errorf("kex: resume: %w", err)
	}
	if h.MAC, err = resumeMAC(t.Secret, roleResumeI, context, unsigned, nil); err != nil {
		return nil, nil, err
	}
	out, err := h.encode()
	if err != nil {
		return nil, nil, fmt.Errorf("kex: resume: %w", err)
	}
	return &Resumer{t: t, context: context, e: e, hello: unsigned, offer: offer}, out, nil
}

// ResumeTicketID returns the ticket a ResumeHello names, for the
// responder to look it up (and take it) before RespondResume.
func ResumeTicketID(b []byte) ([TicketIDSize]byte, error) {
	var id [TicketIDSize]byte
	h, err := decodeResumeHello(b)
	if err != nil {
		return id, err
	}
	copy(id[:], h.Ticket)
	return id, nil
}

// decodeResumeHello decodes a ResumeHello of either version.
func decodeResumeHello(b []byte) (resumeHello, error) {
	var h resumeHello
	if err := codec.Unmarshal(b, MaxResume, &h); err != nil {
		var h1 resumeHello1
		if codec.Unmarshal(b, MaxResume, &h1) != nil {
			return h, fmt.Errorf("kex: resume hello: %w", err)
		}
		if h1.Version != Version1 {
			return h, fmt.Errorf("kex: resume hello: version %d without a list of AEADs: %w", h1.Version, ErrMalformed)
		}
		h = resumeHello{Version: h1.Version, Ticket: h1.Ticket, E: h1.E, MAC: h1.MAC}
	} else if h.Version != Version {
		return h, fmt.Errorf("kex: resume hello: version %d with a list of AEADs: %w", h.Version, ErrMalformed)
	}
	if len(h.Ticket) != TicketIDSize || len(h.E) != 32 || len(h.MAC) != sha256.Size {
		return h, fmt.Errorf("kex: resume hello: sizes: %w", ErrMalformed)
	}
	return h, nil
}

// RespondResume answers a ResumeHello with t, the responder's ticket of
// the identifier it names (taken once: the caller forgets it first).
// It checks the initiator's MAC and returns the keys, the next ticket and
// the ResumeReply to send. accept, if set, runs on the ticket's peer as
// Config.Accept does (a policy may have changed since); key is this
// side's fresh key pair (nil: one made now); aeads are the AEADs this
// side takes (as Config.AEADs; nil: seal.Preferred()).
func RespondResume(t Ticket, context, b []byte, accept func(identity.Document) error, key *ResumeKey, aeads []seal.AEAD) (Result, []byte, error) {
	if err := checkAEADs(aeads); err != nil {
		return Result{}, nil, err
	}
	if aeads == nil {
		aeads = seal.Preferred()
	}
	h, err := decodeResumeHello(b)
	if err != nil {
		return Result{}, nil, err
	}
	if !hmac.Equal(h.Ticket, t.ID[:]) {
		return Result{}, nil, fmt.Errorf("kex: resume hello: another ticket: %w", ErrState)
	}
	mac := h.MAC
	h.MAC = nil
	unsigned, err := h.encode()
	if err != nil {
		return Result{}, nil, fmt.Errorf("kex: resume: %w", err)
	}
	want, err := resumeMAC(t.Secret, roleResumeI, context, unsigned, nil)
	if err != nil {
		return Result{}, nil, err
	}
	if !hmac.Equal(mac, want) {
		return Result{}, nil, fmt.Errorf("kex: resume: initiator %s: %w", t.Peer.ID, ErrBadSignature)
	}
	aead, err := choose(h.Version, h.AEADs, aeads)
	if err != nil {
		return Result{}, nil, err
	}
	v2 := h.Version == Version
	if accept != nil {
		if err := accept(t.Peer); err != nil {
			return Result{}, nil, fmt.Errorf("kex: peer %s: %w: %w", t.Peer.ID, ErrRefused, err)
		}
	}
	eI, err := ecdh.X25519().NewPublicKey(h.E)
	if err != nil {
		return Result{}, nil, fmt.Errorf("kex: resume hello: %w: %w", ErrMalformed, err)
	}
	e, err := key.key()
	if err != nil {
		return Result{}, nil, err
	}
	dh, err := e.ECDH(eI)
	if err != nil {
		return Result{}, nil, fmt.Errorf("kex: %w: %w", ErrMalformed, err)
	}
	r := resumeReply{E: e.PublicKey().Bytes(), AEAD: uint(aead)}
	ur, err := r.encode(v2)
	if err != nil {
		return Result{}, nil, fmt.Errorf("kex: resume: %w", err)
	}
	if r.MAC, err = resumeMAC(t.Secret, roleResumeR, context, unsigned, ur); err != nil {
		return Result{}, nil, err
	}
	out, err := r.encode(v2)
	if err != nil {
		return Result{}, nil, fmt.Errorf("kex: resume: %w", err)
	}
	k, err := deriveResumed(t, dh, context, unsigned, ur)
	if err != nil {
		return Result{}, nil, err
	}
	return Result{Keys: Keys{Send: k.r2i, Recv: k.i2r}, AEAD: aead, Peer: t.Peer, Next: k.next}, out, nil
}

// Reply takes the responder's ResumeReply: it checks its MAC and returns
// the keys and the next ticket.
func (r *Resumer) Reply(b []byte) (Result, error) {
	if r.done {
		return Result{}, ErrState
	}
	r.done = true
	v2 := r.offer != nil
	var rp resumeReply
	if v2 {
		if err := codec.Unmarshal(b, MaxResume, &rp); err != nil {
			return Result{}, fmt.Errorf("kex: resume reply: %w", err)
		}
	} else {
		var rp1 resumeReply1
		if err := codec.Unmarshal(b, MaxResume, &rp1); err != nil {
			return Result{}, fmt.Errorf("kex: resume reply: %w", err)
		}
		rp = resumeReply{E: rp1.E, MAC: rp1.MAC}
	}
	if len(rp.E) != 32 || len(rp.MAC) != sha256.Size {
		return Result{}, fmt.Errorf("kex: resume reply: sizes: %w", ErrMalformed)
	}
	aead := seal.ChaCha20Poly1305 // Version1
	if v2 {
		if aead = seal.AEAD(rp.AEAD); rp.AEAD > 255 || !aead.Known() || !slices.Contains(r.offer, aead) {
			return Result{}, fmt.Errorf("kex: resume reply: AEAD %d was not offered: %w", rp.AEAD, ErrMalformed)
		}
	}
	ur, err := resumeReply{E: rp.E, AEAD: rp.AEAD}.encode(v2)
	if err != nil {
		return Result{}, fmt.Errorf("kex: resume: %w", err)
	}
	want, err := resumeMAC(r.t.Secret, roleResumeR, r.context, r.hello, ur)
	if err != nil {
		return Result{}, err
	}
	if !hmac.Equal(rp.MAC, want) {
		return Result{}, fmt.Errorf("kex: resume: responder %s: %w", r.t.Peer.ID, ErrBadSignature)
	}
	eR, err := ecdh.X25519().NewPublicKey(rp.E)
	if err != nil {
		return Result{}, fmt.Errorf("kex: resume reply: %w: %w", ErrMalformed, err)
	}
	dh, err := r.e.ECDH(eR)
	if err != nil {
		return Result{}, fmt.Errorf("kex: %w: %w", ErrMalformed, err)
	}
	k, err := deriveResumed(r.t, dh, r.context, r.hello, ur)
	if err != nil {
		return Result{}, err
	}
	return Result{Keys: Keys{Send: k.i2r, Recv: k.r2i}, AEAD: aead, Peer: r.t.Peer, Next: k.next}, nil
}

// resumeMAC is the HMAC-SHA-256, keyed from a ticket's secret, of a
// resumption's transcript as role sees it.
func resumeMAC(secret [KeySize]byte, role string, context, hello, reply []byte) ([]byte, error) {
	key, err := hkdf.Key(sha256.New, secret[:], nil, "ouro/kex/v1 resume mac", sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	tr, err := transcript{Context: context, Hello: hello, Reply: reply}.bytes(role)
	if err != nil {
		return nil, fmt.Errorf("kex: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write(tr)
	return m.Sum(nil), nil
}

// deriveResumed derives a resumption's keys and next ticket.
func deriveResumed(t Ticket, dh, context, hello, reply []byte) (directional, error) {
	tr, err := transcript{Context: context, Hello: hello, Reply: reply}.bytes(roleResumeR)
	if err != nil {
		return directional{}, fmt.Errorf("kex: %w", err)
	}
	k, err := derive(t.Secret[:], dh, tr)
	k.next.Peer = t.Peer
	return k, err
}
