package connmgr

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// Adjacency authentication (docs/security.md): the Open of a management
// flow carries the dialer's key, signed identity document, certificate
// and a fresh challenge; the acceptor checks them (Config.Check), answers
// with its own and its signature of the transcript; the dialer checks
// those and sends its signature as the first frame (MsgAuth). Only then
// does the acceptor pair a data-transfer flow with the management flow,
// so that nobody can take over an address's adjacency without its key.

// ChallengeLen is the length of each side's challenge.
const ChallengeLen = 32

// Limits of the identity material in an Open or OpenResp.
const (
	MaxDoc  = identity.MaxDocumentSize + 256
	MaxCert = identity.MaxCertSize + 256
)

// MsgAuth is the dialer's signature of the transcript, the first frame
// on a management flow it opened.
const MsgAuth uint8 = 3

// Credentials are what the manager proves its IPCP's identity with.
type Credentials struct {
	Signer identity.Signer // required
	Doc    []byte          // the node's signed identity document; required
	Cert   []byte          // membership certificate, if the layer wants one
}

// CheckFunc decides whether the member at addr, with the verified
// identity document doc and certificate cert, may be a neighbour: the
// layer's admission policy and address binding (the IPCP's). nil
// accepts everyone who proved its key.
type CheckFunc func(addr layer.Addr, doc identity.Document, cert []byte) error

// adjTranscript is what both ends of an adjacency sign
// (identity.LabelAdj).
type adjTranscript struct {
	_           struct{} `cbor:",toarray"`
	Role        string   // "dialer" or "acceptor"
	Layer       string
	DialerAddr  layer.Addr
	DialerKey   []byte
	DialerNonce []byte
	AccAddr     layer.Addr
	AccKey      []byte
	AccNonce    []byte
	Pairing     uint64 // the Open's Nonce: the data-transfer flow's pairing
}

func (t adjTranscript) sign(ctx context.Context, s identity.Signer, role string) ([]byte, error) {
	t.Role = role
	b, err := codec.Marshal(t)
	if err != nil {
		return nil, err
	}
	return identity.SignLabeled(ctx, s, identity.LabelAdj, b)
}

func (t adjTranscript) verify(pub ed25519.PublicKey, role string, sig []byte) bool {
	t.Role = role
	b, err := codec.Marshal(t)
	return err == nil && identity.VerifyLabeled(pub, identity.LabelAdj, b, sig)
}

func challenge() ([]byte, error) {
	b := make([]byte, ChallengeLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("connmgr: challenge: %w", err)
	}
	return b, nil
}

// peerDoc verifies a peer's identity document for key and runs check.
func (m *Manager) peerDoc(a layer.Addr, key, docb, cert []byte) (identity.Document, error) {
	doc, err := identity.VerifyDocument(docb)
	if err == nil && !doc.Key.Equal(ed25519.PublicKey(key)) {
		err = fmt.Errorf("document of %s for key %s: %w", doc.ID, identity.NameOf(key), identity.ErrUnknownKey)
	}
	if err == nil && m.cfg.Check != nil {
		err = m.cfg.Check(a, doc, cert)
	}
	if err != nil {
		m.c.authRefused.Add(1)
		return identity.Document{}, fmt.Errorf("connmgr: member at %d: %w: %w", a, flow.ErrRefused, err)
	}
	return doc, nil
}

// signCtx bounds a call to the signer.
func (m *Manager) signCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(m.ctx, 2*time.Second)
}
