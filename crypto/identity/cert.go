package identity

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"
)

// Cert is a membership certificate: a layer authority's statement that
// the holder of Subject may be a member of Layer under Name, running one
// of Measurements, between NotBefore and NotAfter.
type Cert struct {
	_            struct{}          `cbor:",toarray"`
	Version      uint              // Version
	Serial       uint64            // chosen by the authority, non-zero, unique per authority (revocation names it)
	Subject      ed25519.PublicKey // the member's identity key
	Name         string            // the member's name (a document must carry the same)
	Layer        string            // the layer it admits to; "" = any layer of this authority
	Measurements []Measurement     // images the member may run; empty = any
	NotBefore    int64             // valid from, Unix seconds (inclusive)
	NotAfter     int64             // valid until, Unix seconds (exclusive)
	Issuer       ed25519.PublicKey // the authority's key
}

func (c *Cert) check() error {
	if err := checkVersion(c.Version); err != nil {
		return err
	}
	if c.Serial == 0 {
		return fmt.Errorf("serial 0: %w", ErrMalformed)
	}
	if err := checkKey("subject", c.Subject); err != nil {
		return err
	}
	if err := checkKey("issuer", c.Issuer); err != nil {
		return err
	}
	if err := checkName("name", c.Name, true); err != nil {
		return err
	}
	if err := checkName("layer", c.Layer, false); err != nil {
		return err
	}
	if len(c.Measurements) > MaxMeasurements {
		return fmt.Errorf("%d measurements, limit %d: %w", len(c.Measurements), MaxMeasurements, ErrMalformed)
	}
	if c.NotAfter <= c.NotBefore {
		return fmt.Errorf("validity %d to %d is empty: %w", c.NotBefore, c.NotAfter, ErrMalformed)
	}
	return nil
}

// AllowsLayer reports whether c admits to layer.
func (c *Cert) AllowsLayer(layer string) bool { return c.Layer == "" || c.Layer == layer }

// AllowsMeasurement reports whether c allows an image with measurement m.
func (c *Cert) AllowsMeasurement(m Measurement) bool {
	return len(c.Measurements) == 0 || slices.Contains(c.Measurements, m)
}

// ValidAt checks c's validity period at now: ErrNotYetValid, ErrExpired
// or nil.
func (c *Cert) ValidAt(now time.Time) error {
	t := now.Unix()
	switch {
	case t < c.NotBefore:
		return fmt.Errorf("certificate %d valid from %s: %w", c.Serial, time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339), ErrNotYetValid)
	case t >= c.NotAfter:
		return fmt.Errorf("certificate %d expired at %s: %w", c.Serial, time.Unix(c.NotAfter, 0).UTC().Format(time.RFC3339), ErrExpired)
	}
	return nil
}

// IssueCert signs c with the authority's key under LabelCert and returns
// the signed certificate. Version and Issuer are filled in when zero;
// Issuer must be the authority's key.
func IssueCert(ctx context.Context, c Cert, authority Signer) ([]byte, error) {
	if c.Version == 0 {
		c.Version = Version
	}
	if c.Issuer == nil {
		c.Issuer = authority.Public()
	}
	if !c.Issuer.Equal(authority.Public()) {
		return nil, fmt.Errorf("identity: issue certificate: issuer is not the signer: %w", ErrUnknownKey)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("identity: issue certificate: %w", err)
	}
	b, err := signObject(ctx, codec, authority, LabelCert, c, MaxCertSize)
	if err != nil {
		return nil, fmt.Errorf("identity: issue certificate: %w", err)
	}
	return b, nil
}

// DecodeCert decodes a signed certificate (within the limits, in
// deterministic encoding) and checks that its Issuer signed it. It does
// not say whether the issuer is trusted nor whether the certificate is
// valid now: VerifyCert does.
func DecodeCert(b []byte) (Cert, error) {
	var c Cert
	e, err := openEnvelope(codec, b, MaxCertSize, &c)
	if err == nil {
		err = c.check()
	}
	if err == nil {
		err = e.verify(c.Issuer, LabelCert)
	}
	if err != nil {
		return Cert{}, fmt.Errorf("identity: certificate: %w", err)
	}
	return c, nil
}

// VerifyCert decodes a signed certificate and checks it against the
// layer authority's key at now. Errors, in the order checked:
// ErrMalformed; ErrUnknownKey (issued by another key); ErrBadSignature;
// ErrNotYetValid or ErrExpired. It does not check revocation (CRL) nor
// what the certificate allows (layer, measurements): the caller does, or
// crypto/admission.
func VerifyCert(b []byte, authority ed25519.PublicKey, now time.Time) (Cert, error) {
	var c Cert
	e, err := openEnvelope(codec, b, MaxCertSize, &c)
	if err == nil {
		err = c.check()
	}
	if err == nil && !c.Issuer.Equal(authority) {
		err = fmt.Errorf("issued by %s, not by the authority %s: %w", NameOf(c.Issuer), NameOf(authority), ErrUnknownKey)
	}
	if err == nil {
		err = e.verify(authority, LabelCert)
	}
	if err == nil {
		err = c.ValidAt(now)
	}
	if err != nil {
		return Cert{}, fmt.Errorf("identity: certificate: %w", err)
	}
	return c, nil
}
