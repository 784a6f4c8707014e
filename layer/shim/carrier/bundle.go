package carrier

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
)

// Bundle is what one file on the carried storage holds: SDUs of one flow,
// signed by the sending node. Wire format (deterministic CBOR, arrays):
// docs/wire/carrier.md.
type Bundle struct {
	_       struct{} `cbor:",toarray"`
	Version uint     // BundleVersion
	Sender  []byte   // the sending node's ed25519 public key
	Seq     uint64   // per sender, increasing (a restarted sender starts above its last run)
	Expires int64    // Unix seconds after which the bundle is refused
	Flow    uint64   // the sender's flow id
	Dst     string   // the name the flow is allocated to
	Src     string   // the allocating name (may be empty)
	SDUs    [][]byte // in the order written; empty when sealed
	End     bool     // the flow ended after these SDUs
	// To is the node a sealed bundle is sealed to (its ed25519 key);
	// empty when not sealed.
	To []byte
	// Sealed is the SDUs sealed to To (seal.go): the sender's ephemeral
	// X25519 key, then the ChaCha20-Poly1305 ciphertext of their encoding
	// bound to the rest of the bundle; empty when not sealed.
	Sealed []byte
}

// envelope is a signed bundle: its body's encoding and the signature.
type envelope struct {
	_    struct{} `cbor:",toarray"`
	Body []byte
	Sig  []byte
}

// Limits of the format: what a decoder accepts.
const (
	BundleVersion = 2       // 2: To and Sealed
	MaxBodySize   = 1 << 20 // an encoded bundle body
	MaxSDUs       = 1024    // SDUs in one bundle
	MaxNameLen    = 255
	// MaxFileSize is the largest bundle file: a body, its signature and
	// the envelope's heads.
	MaxFileSize = MaxBodySize + ed25519.SignatureSize + 16
	// Label is the domain of bundle signatures (crypto/identity
	// SignLabeled). v2: what is signed is the body's SHA-256 digest, not
	// the body (a node's signer component signs at most 2 KB).
	Label = "ouro/carrier/v2"
)

// Errors of Open, wrapped with context.
var (
	ErrMalformed  = errors.New("carrier: malformed bundle")
	ErrTampered   = errors.New("carrier: bad bundle signature")
	ErrUnknownKey = errors.New("carrier: bundle from a node not configured as a peer")
)

// Seal encodes b and signs it with s: the bytes of a bundle file.
func Seal(ctx context.Context, c identity.Codec, s identity.Signer, b *Bundle) ([]byte, error) {
	body, err := c.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("carrier: encode: %w", err)
	}
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("carrier: bundle of %d bytes, limit %d: %w", len(body), MaxBodySize, flow.ErrTooBig)
	}
	sig, err := identity.SignLabeled(ctx, s, Label, digest(body))
	if err != nil {
		return nil, err
	}
	return c.Marshal(envelope{Body: body, Sig: sig})
}

// digest is what a bundle's or an acknowledgement's signature covers:
// the SHA-256 of its body. A node's signer component signs messages of
// at most a kernel message (2 KB), and a bundle's body is up to 1 MiB.
func digest(body []byte) []byte {
	d := sha256.Sum256(body)
	return d[:]
}

// Open decodes a bundle file, checks its limits, that its sender is one
// of peers and its signature. It does not judge expiry or replays (the
// receiver's seen-set does).
func Open(c identity.Codec, file []byte, peers []ed25519.PublicKey) (Bundle, error) {
	var e envelope
	var b Bundle
	if err := c.Unmarshal(file, MaxFileSize, &e); err != nil {
		return b, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	if len(e.Sig) != ed25519.SignatureSize {
		return b, fmt.Errorf("%w: signature of %d bytes", ErrMalformed, len(e.Sig))
	}
	if err := c.Unmarshal(e.Body, MaxBodySize, &b); err != nil {
		return b, fmt.Errorf("%w: body: %w", ErrMalformed, err)
	}
	if err := b.check(); err != nil {
		return b, err
	}
	known := false
	for _, p := range peers {
		if p.Equal(ed25519.PublicKey(b.Sender)) {
			known = true
			break
		}
	}
	if !known {
		return b, fmt.Errorf("%w: %s", ErrUnknownKey, identity.NameOf(b.Sender))
	}
	if !identity.VerifyLabeled(b.Sender, Label, digest(e.Body), e.Sig) {
		return b, fmt.Errorf("%w: from %s", ErrTampered, identity.NameOf(b.Sender))
	}
	return b, nil
}

// check applies the limits a decoder cannot express.
func (b *Bundle) check() error {
	switch {
	case b.Version != BundleVersion:
		return fmt.Errorf("%w: version %d", ErrMalformed, b.Version)
	case len(b.Sender) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: sender key of %d bytes", ErrMalformed, len(b.Sender))
	case b.Dst == "" || len(b.Dst) > MaxNameLen || len(b.Src) > MaxNameLen:
		return fmt.Errorf("%w: name empty or longer than %d", ErrMalformed, MaxNameLen)
	case len(b.SDUs) > MaxSDUs:
		return fmt.Errorf("%w: %d SDUs, limit %d", ErrMalformed, len(b.SDUs), MaxSDUs)
	case len(b.Sealed) > 0 && (len(b.To) != ed25519.PublicKeySize || len(b.SDUs) > 0 || len(b.Sealed) < sealedOverhead):
		return fmt.Errorf("%w: a sealed bundle with a recipient key of %d bytes, %d clear SDUs, %d sealed bytes", ErrMalformed, len(b.To), len(b.SDUs), len(b.Sealed))
	case len(b.Sealed) == 0 && len(b.To) > 0:
		return fmt.Errorf("%w: a recipient but nothing sealed", ErrMalformed)
	}
	for _, s := range b.SDUs {
		if len(s) > flow.MaxSDU {
			return fmt.Errorf("%w: SDU of %d bytes", ErrMalformed, len(s))
		}
	}
	return nil
}

// FileName is the name a bundle file has on the storage: the sender's
// node name and the sequence number, so that a directory listing sorts a
// sender's bundles in order.
func FileName(sender ed25519.PublicKey, seq uint64) string {
	return fmt.Sprintf("%s-%016x%s", identity.NameOf(sender), seq, Suffix)
}

// Suffix ends every bundle file's name; files without it (temporaries,
// which also start with a dot) are not bundles.
const Suffix = ".bundle"

// isBundleName reports whether a directory entry is a complete bundle.
func isBundleName(n string) bool {
	return strings.HasSuffix(n, Suffix) && !strings.HasPrefix(n, ".")
}
