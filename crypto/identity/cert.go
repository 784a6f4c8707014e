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
// of Measurements, between NotBefore and NotAfter, and may register the
// application names in Names.
//
// Two encodings exist. Version 1 (CertVersion1) is the array of nine
// fields every certificate had before names; version 2 (CertVersion2) is
// the same array with Names appended. A certificate lists names if and
// only if it is version 2 (IssueCert chooses), so a certificate without
// names is encoded, signed and read exactly as before, and both decoders
// take both shapes.
type Cert struct {
	Version      uint              // CertVersion1 (no names) or CertVersion2 (names)
	Serial       uint64            // chosen by the authority, non-zero, unique per authority (revocation names it)
	Subject      ed25519.PublicKey // the member's identity key
	Name         string            // the member's name (a document must carry the same)
	Layer        string            // the layer it admits to; "" = any layer of this authority
	Measurements []Measurement     // images the member may run; empty = any
	NotBefore    int64             // valid from, Unix seconds (inclusive)
	NotAfter     int64             // valid until, Unix seconds (exclusive)
	Issuer       ed25519.PublicKey // the authority's key
	// Names are the application names the subject may register in the
	// layer's directory, exact strings (no patterns), at most
	// MaxCertNames, each 1 to MaxNameLen bytes, no duplicates. Empty: the
	// certificate says nothing about names (version 1).
	Names []string
}

// Certificate versions: see Cert.
const (
	CertVersion1 = 1 // nine fields, no names
	CertVersion2 = 2 // ten fields, the last the names (at least one)
)

// MaxCertNames bounds the names one certificate lists.
const MaxCertNames = 64

// certV1 and certV2 are the two wire shapes of a Cert.
type certV1 struct {
	_            struct{} `cbor:",toarray"`
	Version      uint
	Serial       uint64
	Subject      ed25519.PublicKey
	Name         string
	Layer        string
	Measurements []Measurement
	NotBefore    int64
	NotAfter     int64
	Issuer       ed25519.PublicKey
}

type certV2 struct {
	_            struct{} `cbor:",toarray"`
	Version      uint
	Serial       uint64
	Subject      ed25519.PublicKey
	Name         string
	Layer        string
	Measurements []Measurement
	NotBefore    int64
	NotAfter     int64
	Issuer       ed25519.PublicKey
	Names        []string
}

// wire returns the shape c is encoded in.
func (c *Cert) wire() any {
	v1 := certV1{Version: c.Version, Serial: c.Serial, Subject: c.Subject, Name: c.Name, Layer: c.Layer,
		Measurements: c.Measurements, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Issuer: c.Issuer}
	if c.Version != CertVersion2 {
		return v1
	}
	return certV2{Version: v1.Version, Serial: v1.Serial, Subject: v1.Subject, Name: v1.Name, Layer: v1.Layer,
		Measurements: v1.Measurements, NotBefore: v1.NotBefore, NotAfter: v1.NotAfter, Issuer: v1.Issuer, Names: c.Names}
}

// MarshalCBOR encodes c in the shape of its version (version 1 for any
// version but 2, which check refuses anyway).
func (c Cert) MarshalCBOR() ([]byte, error) { return codec.enc.Marshal(c.wire()) }

// UnmarshalCBOR decodes either shape. The version must match the shape:
// check refuses a version 2 without names and a version 1 with names, and
// the deterministic re-encoding (Codec.Unmarshal) refuses a version 1 in
// the shape of version 2.
func (c *Cert) UnmarshalCBOR(data []byte) error {
	var v2 certV2
	err2 := codec.dec.Unmarshal(data, &v2)
	if err2 == nil {
		*c = certV1{Version: v2.Version, Serial: v2.Serial, Subject: v2.Subject, Name: v2.Name, Layer: v2.Layer,
			Measurements: v2.Measurements, NotBefore: v2.NotBefore, NotAfter: v2.NotAfter, Issuer: v2.Issuer}.cert()
		c.Names = v2.Names
		return nil
	}
	var v1 certV1
	if err := codec.dec.Unmarshal(data, &v1); err != nil {
		return err2 // neither shape: report the newer one's error
	}
	*c = v1.cert()
	return nil
}

func (v certV1) cert() Cert {
	return Cert{Version: v.Version, Serial: v.Serial, Subject: v.Subject, Name: v.Name, Layer: v.Layer,
		Measurements: v.Measurements, NotBefore: v.NotBefore, NotAfter: v.NotAfter, Issuer: v.Issuer}
}

func (c *Cert) check() error {
	switch {
	case c.Version == CertVersion1 && len(c.Names) != 0:
		return fmt.Errorf("version 1 with names: %w", ErrMalformed)
	case c.Version == CertVersion2 && len(c.Names) == 0:
		return fmt.Errorf("version 2 without names: %w", ErrMalformed)
	case c.Version != CertVersion1 && c.Version != CertVersion2:
		return fmt.Errorf("version %d, want %d or %d: %w", c.Version, CertVersion1, CertVersion2, ErrMalformed)
	}
	if len(c.Names) > MaxCertNames {
		return fmt.Errorf("%d names, limit %d: %w", len(c.Names), MaxCertNames, ErrMalformed)
	}
	for i, n := range c.Names {
		if err := checkName("application name", n, true); err != nil {
			return err
		}
		if slices.Contains(c.Names[:i], n) {
			return fmt.Errorf("application name %q listed twice: %w", n, ErrMalformed)
		}
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

// AllowsName reports whether c lists the application name name.
func (c *Cert) AllowsName(name string) bool { return slices.Contains(c.Names, name) }

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
// Issuer must be the authority's key. A zero Version becomes
// CertVersion2 if c lists names, CertVersion1 otherwise.
func IssueCert(ctx context.Context, c Cert, authority Signer) ([]byte, error) {
	if c.Version == 0 {
		c.Version = CertVersion1
		if len(c.Names) != 0 {
			c.Version = CertVersion2
		}
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
