package identity

import (
	"context"
	"crypto/ed25519"
	"fmt"
)

// Signer signs for a node without handing out its key: in a node it is a
// capability to the signer component; *Identity implements it too.
type Signer interface {
	// Public returns the signer's public key. The caller must not modify it.
	Public() ed25519.PublicKey
	// Sign returns the ed25519 signature of msg. It may block (a call to
	// another component) until ctx ends. Safe for concurrent use.
	Sign(ctx context.Context, msg []byte) ([]byte, error)
}

var _ Signer = (*Identity)(nil)

// Labels of the signed message types: every type has its own, so that a
// signature made for one can never be taken for another. A label names a
// version: a changed format gets a new label.
const (
	LabelDoc    = "ouro/doc/v1"    // identity documents
	LabelCert   = "ouro/cert/v1"   // membership certificates
	LabelCRL    = "ouro/crl/v1"    // certificate revocation lists
	LabelEnroll = "ouro/enroll/v1" // enrollment transcripts
	LabelLSU    = "ouro/lsu/v1"    // link-state updates
	LabelDir    = "ouro/dir/v1"    // directory records
	LabelFA     = "ouro/fa/v1"     // flow-allocation messages
	LabelKex    = "ouro/kex/v1"    // key-exchange transcripts of sealed flows
	LabelAdj    = "ouro/adj/v1"    // adjacency (N-1 flow) authentication between members
)

// Labeled returns the bytes a labelled signature covers:
// label || 0x00 || msg. A label holds no 0x00 byte.
func Labeled(label string, msg []byte) []byte {
	b := make([]byte, 0, len(label)+1+len(msg))
	b = append(b, label...)
	b = append(b, 0)
	return append(b, msg...)
}

// SignLabeled signs label || 0x00 || msg with s (domain separation: each
// message type has its own label, see the Label constants).
func SignLabeled(ctx context.Context, s Signer, label string, msg []byte) ([]byte, error) {
	if !validLabel(label) {
		return nil, fmt.Errorf("identity: sign: bad label %q", label)
	}
	sig, err := s.Sign(ctx, Labeled(label, msg))
	if err != nil {
		return nil, fmt.Errorf("identity: sign %s: %w", label, err)
	}
	return sig, nil
}

// VerifyLabeled reports whether sig is pub's signature of
// label || 0x00 || msg. A key or signature of the wrong size is false.
func VerifyLabeled(pub ed25519.PublicKey, label string, msg, sig []byte) bool {
	if !validLabel(label) || len(sig) != ed25519.SignatureSize {
		return false
	}
	return Verify(pub, Labeled(label, msg), sig)
}

// validLabel reports whether label can be a signature label: not empty,
// no 0x00 byte (the separator), at most MaxLabelLen bytes.
func validLabel(label string) bool {
	if label == "" || len(label) > MaxLabelLen {
		return false
	}
	for i := 0; i < len(label); i++ {
		if label[i] == 0 {
			return false
		}
	}
	return true
}

// MaxLabelLen bounds a signature label.
const MaxLabelLen = 64

// LabelOf returns the label of a message built by Labeled, and whether it
// has one (a non-empty prefix of at most MaxLabelLen bytes ending at the
// first 0x00). The signer component uses it to decide which labels a
// client may have signed.
func LabelOf(labeled []byte) (string, bool) {
	for i := 0; i < len(labeled) && i <= MaxLabelLen; i++ {
		if labeled[i] == 0 {
			if i == 0 {
				return "", false
			}
			return string(labeled[:i]), true
		}
	}
	return "", false
}
