package enroll

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
)

// NonceLen is the length of each side's challenge.
const NonceLen = 32

// Limits of the identity material in enrollment messages: a signed
// document or certificate is its body and a signature envelope.
const (
	MaxDoc  = identity.MaxDocumentSize + 256
	MaxCert = identity.MaxCertSize + 256
)

// Credentials are what one side of an enrollment proves itself with.
type Credentials struct {
	// Signer signs the transcript: in a node, the IPCP's capability to
	// the signer component. Required.
	Signer identity.Signer
	// Doc is the node's signed identity document, for Signer's key.
	Doc []byte
	// Cert is the node's membership certificate for the layer (authority
	// policies), or empty.
	Cert []byte
	// Clock is this side's time (nil: time.Now); a member sends it in
	// its Challenge if it looks set (ClockSet).
	Clock func() time.Time
}

// Now returns the Credentials' time.
func (c *Credentials) Now() time.Time {
	if c.Clock != nil {
		return c.Clock()
	}
	return time.Now()
}

func (c *Credentials) check() error {
	if c.Signer == nil || len(c.Doc) == 0 {
		return fmt.Errorf("enroll: no signer or identity document: %w", flow.ErrInvalid)
	}
	return nil
}

// transcript is what both sides sign (identity.LabelEnroll): both names,
// keys and nonces and the layer, with the signer's role, so that one
// side's signature cannot stand for the other's and no signature can be
// used in another exchange or layer.
type transcript struct {
	_           struct{} `cbor:",toarray"`
	Role        string   // "member" or "new"
	Layer       string
	NewName     string
	NewKey      []byte
	NewNonce    []byte
	MemberName  string
	MemberKey   []byte
	MemberNonce []byte
	MemberTime  int64 // the member's clock in its Challenge
}

// Roles in the transcript.
const (
	roleMember = "member"
	roleNew    = "new"
)

func (t transcript) as(role string) ([]byte, error) {
	t.Role = role
	return codec.Marshal(t)
}

func (t transcript) sign(ctx context.Context, s identity.Signer, role string) ([]byte, error) {
	b, err := t.as(role)
	if err != nil {
		return nil, err
	}
	return identity.SignLabeled(ctx, s, identity.LabelEnroll, b)
}

func (t transcript) verify(pub ed25519.PublicKey, role string, sig []byte) bool {
	b, err := t.as(role)
	return err == nil && identity.VerifyLabeled(pub, identity.LabelEnroll, b, sig)
}

func nonce() ([]byte, error) {
	b := make([]byte, NonceLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("enroll: nonce: %w", err)
	}
	return b, nil
}

// UnmarshalChallenge decodes and checks a Challenge.
func UnmarshalChallenge(b []byte) (Challenge, error) {
	var c Challenge
	if err := codec.Unmarshal(b, &c); err != nil {
		return Challenge{}, fmt.Errorf("enroll: challenge: %w", err)
	}
	if c.Result == OK && (len(c.Nonce) != NonceLen || len(c.Doc) == 0 || len(c.Doc) > MaxDoc ||
		len(c.Cert) > MaxCert || len(c.Sig) != ed25519.SignatureSize) {
		return Challenge{}, fmt.Errorf("enroll: challenge from %q: %w", c.Name, flow.ErrInvalid)
	}
	return c, nil
}

// UnmarshalProof decodes and checks a Proof.
func UnmarshalProof(b []byte) (Proof, error) {
	var p Proof
	if err := codec.Unmarshal(b, &p); err != nil {
		return Proof{}, fmt.Errorf("enroll: proof: %w", err)
	}
	if len(p.Sig) != ed25519.SignatureSize {
		return Proof{}, fmt.Errorf("enroll: proof with a %d-byte signature: %w", len(p.Sig), flow.ErrInvalid)
	}
	return p, nil
}
