package kex

import (
	"crypto/ed25519"
	"crypto/mlkem"
	"fmt"

	"github.com/ouronet/ouro/crypto/seal"
)

// AEAD negotiation (docs/wire/kex.md, "AEAD negotiation"). The
// initiator's Hello (or ResumeHello) offers the AEADs it takes, in its
// order of preference, one byte each (seal.AEAD); the responder chooses
// with seal.Choose between that offer and its own list, and names its
// choice in the Reply (or ResumeReply). The offer and the choice are in
// the messages' bytes, so in the transcript both sides sign (or MAC): a
// forwarder that strips AES-256-GCM from the offer, or changes the
// choice, makes the initiator's check of the responder's signature (MAC)
// fail, and the handshake with it.
//
// An offer of ChaCha20-Poly1305 alone is sent as a Version1 Hello,
// which has no list, and a Version1 Hello is answered by a Version1
// Reply, which names nothing: both sides seal with ChaCha20-Poly1305.
// So a peer of the first version (which reads and sends only Version1)
// still makes sealed flows with this one: as responder always, as
// initiator when this side offers ChaCha20-Poly1305 alone
// (seal_aead = "chacha20poly1305").

// MaxAEADs bounds an offer.
const MaxAEADs = 8

// aeads is the side's list: Config.AEADs, or this host's preference.
func (c *Config) aeads() []seal.AEAD {
	if c.AEADs != nil {
		return c.AEADs
	}
	return seal.Preferred()
}

// checkAEADs refuses a list with an unknown AEAD or a repeat, or an
// empty one that is not nil.
func checkAEADs(l []seal.AEAD) error {
	if l != nil && len(l) == 0 {
		return fmt.Errorf("kex: config: an empty list of AEADs: %w", seal.ErrAEAD)
	}
	if len(l) > MaxAEADs {
		return fmt.Errorf("kex: config: %d AEADs, at most %d: %w", len(l), MaxAEADs, seal.ErrAEAD)
	}
	for i, a := range l {
		if !a.Known() {
			return fmt.Errorf("kex: config: %s: %w", a, seal.ErrAEAD)
		}
		for _, b := range l[:i] {
			if a == b {
				return fmt.Errorf("kex: config: %s twice: %w", a, seal.ErrAEAD)
			}
		}
	}
	return nil
}

// offerOf is what a Hello offers for list l: nil (a Version1 Hello, no
// list) if l is ChaCha20-Poly1305 alone, else l.
func offerOf(l []seal.AEAD) []seal.AEAD {
	if len(l) == 1 && l[0] == seal.ChaCha20Poly1305 {
		return nil
	}
	return l
}

func aeadBytes(l []seal.AEAD) []byte {
	b := make([]byte, len(l))
	for i, a := range l {
		b[i] = byte(a)
	}
	return b
}

// offered is the offer of a Hello of version v carrying b.
func offered(v uint, b []byte) ([]seal.AEAD, error) {
	if v == Version1 {
		return []seal.AEAD{seal.ChaCha20Poly1305}, nil
	}
	if len(b) == 0 || len(b) > MaxAEADs {
		return nil, fmt.Errorf("kex: hello: %d AEADs offered (1 to %d): %w", len(b), MaxAEADs, ErrMalformed)
	}
	l := make([]seal.AEAD, len(b))
	for i, x := range b {
		l[i] = seal.AEAD(x)
	}
	return l, nil
}

// choose is the responder's choice for a Hello of version v offering b.
func choose(v uint, b []byte, mine []seal.AEAD) (seal.AEAD, error) {
	offer, err := offered(v, b)
	if err != nil {
		return 0, err
	}
	a, ok := seal.Choose(offer, mine)
	if !ok {
		return 0, fmt.Errorf("kex: the peer offers %v, this side takes %v: %w", offer, mine, ErrNoAEAD)
	}
	return a, nil
}

// decodeHello decodes a Hello of either version (a Version1 one with
// no AEADs).
func decodeHello(b []byte) (hello, error) {
	var h hello
	err := codec.Unmarshal(b, MaxHello, &h)
	if err == nil {
		if h.Version != Version {
			return h, fmt.Errorf("kex: hello: version %d with a list of AEADs: %w", h.Version, ErrMalformed)
		}
		return h, nil
	}
	var h1 hello1
	if codec.Unmarshal(b, MaxHello, &h1) != nil {
		return h, fmt.Errorf("kex: hello: %w", err)
	}
	if h1.Version != Version1 {
		return h, fmt.Errorf("kex: hello: version %d without a list of AEADs: %w", h1.Version, ErrMalformed)
	}
	return hello{Version: Version1, E: h1.E, EK: h1.EK, Doc: h1.Doc}, nil
}

// decodeReply decodes a Reply: of Version if v2, else of Version1.
func decodeReply(b []byte, v2 bool) (reply, error) {
	var r reply
	if v2 {
		if err := codec.Unmarshal(b, MaxReply, &r); err != nil {
			return r, fmt.Errorf("kex: reply: %w", err)
		}
	} else {
		var r1 reply1
		if err := codec.Unmarshal(b, MaxReply, &r1); err != nil {
			return r, fmt.Errorf("kex: reply: %w", err)
		}
		r = reply{E: r1.E, CT: r1.CT, Doc: r1.Doc, Sig: r1.Sig}
	}
	if len(r.E) != 32 || len(r.CT) != mlkem.CiphertextSize768 || len(r.Sig) != ed25519.SignatureSize {
		return r, fmt.Errorf("kex: reply: sizes: %w", ErrMalformed)
	}
	return r, nil
}

// encode is r as sent: of Version if v2, else of Version1.
func (r reply) encode(v2 bool) ([]byte, error) {
	if v2 {
		return codec.Marshal(r)
	}
	return codec.Marshal(reply1{E: r.E, CT: r.CT, Doc: r.Doc, Sig: r.Sig})
}

// unsigned is r as the transcript holds it: without its signature.
func (r reply) unsigned(v2 bool) ([]byte, error) {
	r.Sig = nil
	return r.encode(v2)
}
