// Package admission decides who may be a member of a layer: the layer's
// admission policy (open, an allow-list of node keys, or certificates of
// a layer authority, each optionally "measured": restricted to given
// image measurements) applied to a peer's verified identity document. It
// does not run enrollment nor verify documents (crypto/identity does).
package admission

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
)

// Errors of Admit, wrapped with context. The identity sentinels are the
// same values as in crypto/identity, so errors.Is works with either.
var (
	ErrUnknownKey   = identity.ErrUnknownKey   // key not allowed, no certificate, certificate of an unknown authority or for another key
	ErrBadSignature = identity.ErrBadSignature // a certificate whose signature does not verify
	ErrExpired      = identity.ErrExpired      // certificate expired
	ErrNotYetValid  = identity.ErrNotYetValid  // certificate not yet valid
	ErrRevoked      = identity.ErrRevoked      // certificate or key revoked by the authority's list
	ErrMeasurement  = identity.ErrMeasurement  // image measurement not allowed by the policy or the certificate
	ErrMalformed    = identity.ErrMalformed    // a certificate that does not decode
	ErrReplay       = identity.ErrReplay       // for layers: an old message again

	ErrNoPolicy = errors.New("admission: no policy (choose open, allow or authority)") // the zero Policy refuses everyone
	ErrScope    = errors.New("admission: certificate not for this layer or name")      // the certificate admits to another layer, or names another node
	ErrInvalid  = errors.New("admission: invalid policy")                              // Parse or decode of a policy failed
)

// Mode is a policy's kind. The zero Mode is no policy, which refuses.
type Mode uint8

// The modes. Open admits anyone (today's behaviour: a layer must choose
// it); Allow admits the keys listed; Authority admits holders of a valid
// certificate of one of the layer's authorities.
const (
	ModeNone Mode = iota
	ModeOpen
	ModeAllow
	ModeAuthority
	numModes
)

var modeNames = [numModes]string{"none", "open", "allow", "authority"}

// String returns the mode's name as Parse takes it.
func (m Mode) String() string {
	if m < numModes {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", m)
}

// Limits of a policy (a decoder refuses more).
const (
	MaxKeys         = 1024 // allow-listed keys
	MaxAuthorities  = 16   // layer authorities
	MaxMeasurements = identity.MaxMeasurements
	MaxPolicySize   = 48 << 10 // encoded
)

// Policy is a layer's admission policy. It is set by the member that
// bootstraps the layer and carried to every member in the layer's
// configuration (CBOR: MarshalCBOR; text: String and Parse). The zero
// Policy refuses everyone with ErrNoPolicy: open must be chosen.
type Policy struct {
	Mode Mode
	// Layer is the layer the policy is for: a certificate for another
	// layer is refused (ErrScope). The layer fills it in.
	Layer string
	// Keys are the node keys an allow policy admits.
	Keys []ed25519.PublicKey
	// Authorities are the keys whose certificates an authority policy
	// accepts.
	Authorities []ed25519.PublicKey
	// Measured, if not empty, makes the policy "measured": whatever its
	// mode, a node must run an image with one of these measurements.
	Measured []identity.Measurement
}

// Admit decides whether the node of doc may be a member: nil, or an error
// wrapping one of the sentinels. doc must come from identity.VerifyDocument
// (Admit does not check signatures on it); cert is the node's signed
// membership certificate (authority policies only); crl is the newest
// verified revocation list of the certificate's authority, or nil; now is
// the time certificates are checked at. Under open, doc is not looked at
// unless the policy is measured.
func (p Policy) Admit(doc identity.Document, cert []byte, crl *identity.CRL, now time.Time) error {
	if err := p.admit(doc, cert, crl, now); err != nil {
		return fmt.Errorf("admission: %s: %w", who(doc), err)
	}
	return nil
}

func who(doc identity.Document) string {
	if len(doc.Key) != ed25519.PublicKeySize {
		return "node without key"
	}
	if doc.Name != "" {
		return fmt.Sprintf("node %s (%s)", doc.ID, doc.Name)
	}
	return "node " + doc.ID
}

func (p Policy) admit(doc identity.Document, cert []byte, crl *identity.CRL, now time.Time) error {
	if p.Mode != ModeOpen || len(p.Measured) > 0 {
		if len(doc.Key) != ed25519.PublicKeySize || doc.ID != identity.NameOf(doc.Key) {
			return fmt.Errorf("no verified identity document: %w", ErrUnknownKey)
		}
	}
	switch p.Mode {
	case ModeNone:
		return ErrNoPolicy
	case ModeOpen:
	case ModeAllow:
		if !containsKey(p.Keys, doc.Key) {
			return fmt.Errorf("key %x not in the allow-list: %w", []byte(doc.Key), ErrUnknownKey)
		}
	case ModeAuthority:
		if err := p.admitCert(doc, cert, crl, now); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%v: %w", p.Mode, ErrNoPolicy)
	}
	if len(p.Measured) > 0 && (doc.Measurement.IsZero() || !slices.Contains(p.Measured, doc.Measurement)) {
		return fmt.Errorf("image %s not among the layer's %d measurements: %w", doc.Measurement, len(p.Measured), ErrMeasurement)
	}
	return nil
}

func (p Policy) admitCert(doc identity.Document, cert []byte, crl *identity.CRL, now time.Time) error {
	if len(cert) == 0 {
		return fmt.Errorf("no membership certificate: %w", ErrUnknownKey)
	}
	c, err := identity.DecodeCert(cert) // signature by c.Issuer checked
	if err != nil {
		return err
	}
	if !containsKey(p.Authorities, c.Issuer) {
		return fmt.Errorf("certificate %d issued by %s, not an authority of the layer: %w", c.Serial, identity.NameOf(c.Issuer), ErrUnknownKey)
	}
	if err := c.ValidAt(now); err != nil {
		return err
	}
	if !c.Subject.Equal(doc.Key) {
		return fmt.Errorf("certificate %d is for %s: %w", c.Serial, identity.NameOf(c.Subject), ErrUnknownKey)
	}
	if crl.Revoked(c) {
		return fmt.Errorf("certificate %d: %w", c.Serial, ErrRevoked)
	}
	if !c.AllowsLayer(p.Layer) {
		return fmt.Errorf("certificate %d is for layer %q: %w", c.Serial, c.Layer, ErrScope)
	}
	if c.Name != doc.Name {
		return fmt.Errorf("certificate %d names %q, the document %q: %w", c.Serial, c.Name, doc.Name, ErrScope)
	}
	if !c.AllowsMeasurement(doc.Measurement) {
		return fmt.Errorf("certificate %d does not allow image %s: %w", c.Serial, doc.Measurement, ErrMeasurement)
	}
	return nil
}

func containsKey(keys []ed25519.PublicKey, k ed25519.PublicKey) bool {
	return slices.ContainsFunc(keys, func(x ed25519.PublicKey) bool { return x.Equal(k) })
}

// check checks a policy's structure: a known mode, keys of the right size
// within the limits, keys only in allow and authorities only in authority
// policies, and at least one of them there. The zero Policy passes (it
// decodes, and refuses at Admit).
func (p *Policy) check() error {
	if p.Mode >= numModes {
		return fmt.Errorf("unknown mode %d", p.Mode)
	}
	if len(p.Layer) > identity.MaxNameLen || strings.ContainsAny(p.Layer, " \t\n,") {
		return fmt.Errorf("layer name %q (at most %d bytes, no white space or comma)", p.Layer, identity.MaxNameLen)
	}
	if len(p.Keys) > MaxKeys || len(p.Authorities) > MaxAuthorities || len(p.Measured) > MaxMeasurements {
		return fmt.Errorf("%d keys, %d authorities, %d measurements: limits %d, %d, %d",
			len(p.Keys), len(p.Authorities), len(p.Measured), MaxKeys, MaxAuthorities, MaxMeasurements)
	}
	for _, k := range append(slices.Clip(p.Keys), p.Authorities...) {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("a key of %d bytes", len(k))
		}
	}
	switch {
	case p.Mode == ModeAllow && len(p.Keys) == 0:
		return errors.New("allow without keys")
	case p.Mode != ModeAllow && len(p.Keys) > 0:
		return fmt.Errorf("keys with mode %v (only allow takes keys)", p.Mode)
	case p.Mode == ModeAuthority && len(p.Authorities) == 0:
		return errors.New("authority without an authority key")
	case p.Mode != ModeAuthority && len(p.Authorities) > 0:
		return fmt.Errorf("authorities with mode %v (only authority takes them)", p.Mode)
	case p.Mode == ModeNone && len(p.Measured) > 0:
		return errors.New("measurements without a mode")
	}
	return nil
}

// Validate reports whether p is a usable policy: well formed and not the
// zero Policy.
func (p Policy) Validate() error {
	if err := p.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if p.Mode == ModeNone {
		return ErrNoPolicy
	}
	return nil
}

// Parse parses a policy's text form, as in a configuration file:
//
//	open
//	allow key=HEX [key=HEX ...]
//	authority authority=HEX [authority=HEX ...]
//
// each optionally followed by measurement=HEX (one or more: "measured")
// and layer=NAME; keys are 64 hex digits (what "ouro id" prints),
// measurements too. Fields are separated by white space or commas.
func Parse(s string) (Policy, error) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	if len(f) == 0 {
		return Policy{}, fmt.Errorf("empty policy: %w", ErrNoPolicy)
	}
	var p Policy
	switch f[0] {
	case "open":
		p.Mode = ModeOpen
	case "allow":
		p.Mode = ModeAllow
	case "authority":
		p.Mode = ModeAuthority
	default:
		return Policy{}, fmt.Errorf("%w: mode %q (want open, allow or authority)", ErrInvalid, f[0])
	}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Policy{}, fmt.Errorf("%w: %q is not key=value", ErrInvalid, kv)
		}
		switch k {
		case "key", "authority":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != ed25519.PublicKeySize {
				return Policy{}, fmt.Errorf("%w: %s=%q: want %d hex digits", ErrInvalid, k, v, 2*ed25519.PublicKeySize)
			}
			if k == "key" {
				p.Keys = append(p.Keys, b)
			} else {
				p.Authorities = append(p.Authorities, b)
			}
		case "measurement", "measured":
			m, err := identity.ParseMeasurement(v)
			if err != nil {
				return Policy{}, fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			p.Measured = append(p.Measured, m)
		case "layer":
			p.Layer = v
		default:
			return Policy{}, fmt.Errorf("%w: unknown field %q", ErrInvalid, k)
		}
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// String returns the text form Parse takes.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString(p.Mode.String())
	for _, k := range p.Keys {
		fmt.Fprintf(&b, " key=%x", []byte(k))
	}
	for _, k := range p.Authorities {
		fmt.Fprintf(&b, " authority=%x", []byte(k))
	}
	for _, m := range p.Measured {
		fmt.Fprintf(&b, " measurement=%s", m)
	}
	if p.Layer != "" {
		fmt.Fprintf(&b, " layer=%s", p.Layer)
	}
	return b.String()
}

// MarshalText returns String's form (for TOML and JSON).
func (p Policy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the text form with Parse.
func (p *Policy) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
