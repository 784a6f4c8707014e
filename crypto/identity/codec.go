package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Version is the format version of every trust object of this package
// (the first field of each). A decoder refuses any other.
const Version = 1

// Limits on what a decoder accepts (and an encoder produces). They bound
// what a peer can make a node decode; docs/wire/identity.md lists them.
const (
	MaxNameLen      = 255  // a node, layer or board name, bytes
	MaxMeasurements = 64   // allowed measurements in a certificate
	MaxCRLEntries   = 1024 // revoked serials plus revoked keys in one list

	MaxDocumentSize = 1024      // an encoded document body
	MaxCertSize     = 4096      // an encoded certificate body
	MaxCRLSize      = 48 << 10  // an encoded revocation list body
	envelopeSlack   = 2 + 3 + 2 // array head, byte-string heads
)

// Codec is the CBOR of trust objects: deterministic encoding (RFC 8949
// section 4.2.1, "core deterministic"; an empty list or byte string is
// encoded empty, never as null), and a decoder with limits on
// nesting and container sizes that refuses indefinite lengths, duplicate
// map keys and trailing bytes. It is also the codec of crypto/admission.
type Codec struct {
	enc cbor.EncMode
	dec cbor.DecMode
}

// NewCodec returns the codec. It holds no state besides the modes.
func NewCodec() Codec {
	eo := cbor.CoreDetEncOptions()
	eo.NilContainers = cbor.NilContainerAsEmpty // one spelling of "none": [] and h'', never null
	enc, err := eo.EncMode()
	if err != nil {
		panic(err) // static options
	}
	dec, err := cbor.DecOptions{
		MaxNestedLevels:  4,
		MaxArrayElements: 2 * MaxCRLEntries,
		MaxMapPairs:      16,
		IndefLength:      cbor.IndefLengthForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		TagsMd:           cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return Codec{enc: enc, dec: dec}
}

// Marshal encodes v deterministically.
func (c Codec) Marshal(v any) ([]byte, error) { return c.enc.Marshal(v) }

// Unmarshal decodes data, at most max bytes, into v and checks that data
// is exactly v's deterministic encoding: one item, no trailing bytes, no
// other spelling of the same value (so a signed object has one encoding).
// Every failure wraps ErrMalformed.
func (c Codec) Unmarshal(data []byte, max int, v any) error {
	if len(data) > max {
		return fmt.Errorf("%d bytes, limit %d: %w", len(data), max, ErrMalformed)
	}
	if err := c.dec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	again, err := c.enc.Marshal(v)
	if err != nil || !bytes.Equal(again, data) {
		return fmt.Errorf("not in deterministic encoding: %w", ErrMalformed)
	}
	return nil
}

// envelope is a signed object: the deterministic encoding of the object
// and the signer's labelled signature over it.
type envelope struct {
	_    struct{} `cbor:",toarray"`
	Body []byte
	Sig  []byte
}

// signObject encodes v, signs the encoding under label and returns the
// encoded envelope.
func signObject(ctx context.Context, c Codec, s Signer, label string, v any, max int) ([]byte, error) {
	body, err := c.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if len(body) > max {
		return nil, fmt.Errorf("%d bytes, limit %d: %w", len(body), max, ErrMalformed)
	}
	sig, err := SignLabeled(ctx, s, label, body)
	if err != nil {
		return nil, err
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signer returned %d bytes: %w", len(sig), ErrBadSignature)
	}
	return c.Marshal(envelope{Body: body, Sig: sig})
}

// openEnvelope decodes an envelope whose body is at most max bytes and
// decodes the body into v. It does not verify the signature: the key
// depends on v (verifyEnvelope).
func openEnvelope(c Codec, b []byte, max int, v any) (envelope, error) {
	var e envelope
	if err := c.Unmarshal(b, max+ed25519.SignatureSize+envelopeSlack, &e); err != nil {
		return e, fmt.Errorf("envelope: %w", err)
	}
	if len(e.Sig) != ed25519.SignatureSize {
		return e, fmt.Errorf("signature of %d bytes: %w", len(e.Sig), ErrMalformed)
	}
	if err := c.Unmarshal(e.Body, max, v); err != nil {
		return e, err
	}
	return e, nil
}

// verify checks the envelope's signature by pub under label.
func (e envelope) verify(pub ed25519.PublicKey, label string) error {
	if !VerifyLabeled(pub, label, e.Body, e.Sig) {
		return ErrBadSignature
	}
	return nil
}

// checkKey checks that k is an ed25519 public key.
func checkKey(what string, k ed25519.PublicKey) error {
	if len(k) != ed25519.PublicKeySize {
		return fmt.Errorf("%s of %d bytes: %w", what, len(k), ErrMalformed)
	}
	return nil
}

// checkName checks a name's length (CBOR already checked it is UTF-8).
func checkName(what, s string, required bool) error {
	if required && s == "" {
		return fmt.Errorf("no %s: %w", what, ErrMalformed)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s of %d bytes, limit %d: %w", what, len(s), MaxNameLen, ErrMalformed)
	}
	return nil
}

func checkVersion(v uint) error {
	if v != Version {
		return fmt.Errorf("version %d, want %d: %w", v, Version, ErrMalformed)
	}
	return nil
}

// codec is immutable once made: the modes hold no state.
var codec = NewCodec()
