package identity

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
)

// CRL is a certificate revocation list: the certificates (by serial) and
// the keys an authority no longer vouches for. Lists are numbered: one
// with a higher Seq replaces every older one of the same issuer, so a
// list is complete, never a delta.
type CRL struct {
	_       struct{}            `cbor:",toarray"`
	Version uint                // Version
	Issuer  ed25519.PublicKey   // the authority's key
	Seq     uint64              // sequence number, higher is newer
	Issued  int64               // when it was signed, Unix seconds
	Serials []uint64            // revoked certificate serials
	Keys    []ed25519.PublicKey // revoked subject keys (every certificate for them)
}

func (l *CRL) check() error {
	if err := checkVersion(l.Version); err != nil {
		return err
	}
	if err := checkKey("issuer", l.Issuer); err != nil {
		return err
	}
	if n := len(l.Serials) + len(l.Keys); n > MaxCRLEntries {
		return fmt.Errorf("%d entries, limit %d: %w", n, MaxCRLEntries, ErrMalformed)
	}
	for _, k := range l.Keys {
		if err := checkKey("revoked key", k); err != nil {
			return err
		}
	}
	return nil
}

// Revoked reports whether l, a list of c's issuer, revokes c: by its
// serial or by its subject key. A nil list and a list of another issuer
// revoke nothing.
func (l *CRL) Revoked(c Cert) bool {
	if l == nil || !l.Issuer.Equal(c.Issuer) {
		return false
	}
	if slices.Contains(l.Serials, c.Serial) {
		return true
	}
	return slices.ContainsFunc(l.Keys, func(k ed25519.PublicKey) bool { return k.Equal(c.Subject) })
}

// Replaces reports whether l supersedes old: same issuer and a higher
// sequence number (any list replaces nil). A list that does not replace
// the current one is stale: a layer refuses it as ErrReplay.
func (l *CRL) Replaces(old *CRL) bool {
	if old == nil {
		return true
	}
	return l.Issuer.Equal(old.Issuer) && l.Seq > old.Seq
}

// IssueCRL signs l with the authority's key under LabelCRL. Version and
// Issuer are filled in when zero; Issuer must be the authority's key.
func IssueCRL(ctx context.Context, l CRL, authority Signer) ([]byte, error) {
	if l.Version == 0 {
		l.Version = Version
	}
	if l.Issuer == nil {
		l.Issuer = authority.Public()
	}
	if !l.Issuer.Equal(authority.Public()) {
		return nil, fmt.Errorf("identity: issue revocation list: issuer is not the signer: %w", ErrUnknownKey)
	}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("identity: issue revocation list: %w", err)
	}
	b, err := signObject(ctx, codec, authority, LabelCRL, l, MaxCRLSize)
	if err != nil {
		return nil, fmt.Errorf("identity: issue revocation list: %w", err)
	}
	return b, nil
}

// DecodeCRL decodes a signed revocation list and checks that its Issuer
// signed it, without saying whether the issuer is trusted.
func DecodeCRL(b []byte) (*CRL, error) {
	var l CRL
	e, err := openEnvelope(codec, b, MaxCRLSize, &l)
	if err == nil {
		err = l.check()
	}
	if err == nil {
		err = e.verify(l.Issuer, LabelCRL)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: revocation list: %w", err)
	}
	return &l, nil
}

// VerifyCRL decodes a signed revocation list and checks that the
// authority issued it: ErrMalformed, ErrUnknownKey (another issuer) or
// ErrBadSignature. Whether it is newer than the list in use is
// Replaces's question.
func VerifyCRL(b []byte, authority ed25519.PublicKey) (*CRL, error) {
	var l CRL
	e, err := openEnvelope(codec, b, MaxCRLSize, &l)
	if err == nil {
		err = l.check()
	}
	if err == nil && !l.Issuer.Equal(authority) {
		err = fmt.Errorf("issued by %s, not by the authority %s: %w", NameOf(l.Issuer), NameOf(authority), ErrUnknownKey)
	}
	if err == nil {
		err = e.verify(authority, LabelCRL)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: revocation list: %w", err)
	}
	return &l, nil
}
