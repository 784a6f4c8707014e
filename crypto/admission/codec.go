package admission

import (
	"crypto/ed25519"
	"fmt"

	"github.com/ouronet/ouro/crypto/identity"
)

// policyWire is a policy on the wire (docs/wire/identity.md): a
// versioned array.
type policyWire struct {
	_           struct{} `cbor:",toarray"`
	Version     uint
	Mode        Mode
	Layer       string
	Keys        []ed25519.PublicKey
	Authorities []ed25519.PublicKey
	Measured    []identity.Measurement
}

// codec is immutable once made.
var codec = identity.NewCodec()

// MarshalCBOR encodes p deterministically (so a policy inside a signed
// layer configuration has one encoding).
func (p Policy) MarshalCBOR() ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return codec.Marshal(policyWire{Version: identity.Version, Mode: p.Mode, Layer: p.Layer,
		Keys: p.Keys, Authorities: p.Authorities, Measured: p.Measured})
}

// UnmarshalCBOR decodes a policy within the limits and in deterministic
// encoding and checks its structure; whatever CBOR decoder reads a layer
// configuration, these checks apply. The zero policy decodes (and refuses
// at Admit).
func (p *Policy) UnmarshalCBOR(b []byte) error {
	var w policyWire
	if err := codec.Unmarshal(b, MaxPolicySize, &w); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if w.Version != identity.Version {
		return fmt.Errorf("%w: version %d, want %d", ErrInvalid, w.Version, identity.Version)
	}
	v := Policy{Mode: w.Mode, Layer: w.Layer, Keys: w.Keys, Authorities: w.Authorities, Measured: w.Measured}
	if err := v.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	*p = v
	return nil
}
