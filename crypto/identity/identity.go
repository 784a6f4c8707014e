// Package identity is a node's long-term identity and the signed objects
// built on it: an ed25519 key pair, derived from a board's hardware-unique
// key or kept in a file on hosted nodes; the short node name printed from
// its public key; domain-separated signatures; the measurement of the
// image a node runs; identity documents, membership certificates and
// revocation lists (deterministic CBOR, see docs/wire/identity.md). It
// decides no admission (crypto/admission does) and exchanges no keys.
package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Errors of this package, wrapped with context. Test with errors.Is.
var (
	ErrInvalid   = errors.New("identity: invalid key")                 // not a usable ed25519 key or seed
	ErrNotExist  = errors.New("identity: no key file")                 // Load of a missing file
	ErrExposed   = errors.New("identity: key file readable by others") // mode allows group or other access
	ErrShortHUK  = errors.New("identity: hardware-unique key too short")
	errNotPEMKey = errors.New("identity: no PEM PRIVATE KEY block")
)

// Info is the HKDF info label under which an identity is derived from a
// hardware-unique key. Changing it changes every board's identity: a new
// label gets a new version number.
const Info = "ouro identity v1"

// MinHUKLen is the least number of bytes a hardware-unique key must have
// (the i.MX6UL's DCP-derived key and the Raspberry Pi's OTP-based key are
// 32 bytes; 16 is the floor for 128-bit security).
const MinHUKLen = 16

// NameLen is the length of a node name: base32 of 10 bytes, 16 characters.
const NameLen = 16

// nameEncoding is RFC 4648 base32, lower case, no padding (10 bytes need none).
var nameEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Identity is an ed25519 key pair. The zero value is not usable; it is
// created by FromHUK, FromSeed, Load or LoadOrCreate. Safe for concurrent
// use (it is immutable).
type Identity struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	name string
}

// FromSeed returns the identity whose private key is the RFC 8032 seed.
func FromSeed(seed []byte) (*Identity, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("seed of %d bytes, want %d: %w", len(seed), ed25519.SeedSize, ErrInvalid)
	}
	return fromPriv(ed25519.NewKeyFromSeed(seed)), nil
}

func fromPriv(priv ed25519.PrivateKey) *Identity {
	pub := priv.Public().(ed25519.PublicKey)
	return &Identity{priv: priv, pub: pub, name: NameOf(pub)}
}

// FromHUK derives the identity of a board from its hardware-unique key:
// the ed25519 seed is HKDF-SHA256 (RFC 5869) with the key as input keying
// material, no salt, and Info as the info label. The same key always
// yields the same identity; the key itself cannot be recovered from it.
func FromHUK(huk []byte) (*Identity, error) {
	if len(huk) < MinHUKLen {
		return nil, fmt.Errorf("%d bytes, want at least %d: %w", len(huk), MinHUKLen, ErrShortHUK)
	}
	seed, err := hkdf.Key(sha256.New, huk, nil, Info, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("identity: derive: %w", err)
	}
	return FromSeed(seed)
}

// Generate returns a fresh identity drawn from r (crypto/rand if nil).
func Generate(r io.Reader) (*Identity, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("identity: generate: %w", err)
	}
	return FromSeed(seed)
}

// Public returns the public key. The caller must not modify it.
func (id *Identity) Public() ed25519.PublicKey { return id.pub }

// Name returns the node name: NameOf(id.Public()).
func (id *Identity) Name() string { return id.name }

// Sign signs msg (pure ed25519, RFC 8032 section 5.1.6) and never fails
// or blocks: it implements Signer for the component that holds the key.
// Deterministic: the same message always has the same signature. Use
// SignLabeled for anything sent: a bare signature has no domain.
func (id *Identity) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return ed25519.Sign(id.priv, msg), nil
}

// Verify reports whether sig is id's signature of msg.
func (id *Identity) Verify(msg, sig []byte) bool { return Verify(id.pub, msg, sig) }

// Verify reports whether sig is a valid signature of msg by pub. A public
// key of the wrong length is a failed verification, not a panic.
func Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, msg, sig)
}

// NameOf returns the stable short name of a public key: the first 10
// bytes of its SHA-256, in lower-case RFC 4648 base32 without padding (16
// characters, 80 bits: collisions need ~2^40 keys).
func NameOf(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return nameEncoding.EncodeToString(sum[:10])
}

// IsName reports whether s has the form of a NameOf: 16 letters and
// digits of the lower-case base32 alphabet.
func IsName(s string) bool {
	b, err := nameEncoding.DecodeString(s)
	return err == nil && len(b) == 10
}

// MarshalPEM returns the private key as a PEM "PRIVATE KEY" block holding
// PKCS #8 (RFC 8410), the form `openssl genpkey -algorithm ed25519` writes.
func (id *Identity) MarshalPEM() []byte {
	der := append([]byte(pkcs8Ed25519), id.priv.Seed()...)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// pkcs8Ed25519 is the DER of an ed25519 private key in PKCS #8 (RFC 5208,
// RFC 8410 section 7) up to its 32-byte seed: SEQUENCE { INTEGER 0,
// SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
// It is written and read here rather than with crypto/x509, whose RSA,
// ECDSA and ASN.1 code would otherwise be about 0.6 MB of every
// bare-metal image (docs/benchmarks.md, "Image").
const pkcs8Ed25519 = "\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x70\x04\x22\x04\x20"

// ParsePEM parses what MarshalPEM returns (or openssl writes). Anything
// other than one ed25519 PKCS #8 key is ErrInvalid.
func ParsePEM(data []byte) (*Identity, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: %w", errNotPEMKey, ErrInvalid)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("identity: data after the key: %w", ErrInvalid)
	}
	seed, err := parsePKCS8(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity: %w: %w", ErrInvalid, err)
	}
	return fromPriv(ed25519.NewKeyFromSeed(seed)), nil
}

// parsePKCS8 returns the seed of an ed25519 key in PKCS #8 DER: version
// 0 (RFC 5208) or 1 (RFC 5958, which may add the public key), the
// ed25519 algorithm without parameters, the seed as an OCTET STRING in
// the private key OCTET STRING; attributes and a public key after it are
// ignored, as crypto/x509 does. Every key it accepts, x509 accepts too,
// with the same seed (FuzzParsePKCS8).
func parsePKCS8(der []byte) ([]byte, error) {
	seq, rest, err := derTLV(der, 0x30)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("pkcs8: data after the key")
	}
	v, seq, err := derTLV(seq, 0x02)
	if err != nil {
		return nil, err
	}
	if len(v) != 1 || v[0] > 1 {
		return nil, errors.New("pkcs8: unknown version")
	}
	alg, seq, err := derTLV(seq, 0x30)
	if err != nil {
		return nil, err
	}
	if string(alg) != "\x06\x03\x2b\x65\x70" {
		return nil, errors.New("pkcs8: not an ed25519 key")
	}
	key, _, err := derTLV(seq, 0x04)
	if err != nil {
		return nil, err
	}
	seed, rest, err := derTLV(key, 0x04)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 || len(seed) != ed25519.SeedSize {
		return nil, errors.New("pkcs8: bad ed25519 private key")
	}
	return seed, nil
}

// derTLV reads one DER element of the given tag from b: its contents and
// what follows it. Lengths must be in DER's shortest form, at most 65535.
func derTLV(b []byte, tag byte) (contents, rest []byte, err error) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, fmt.Errorf("pkcs8: want tag %#x", tag)
	}
	n, hdr := int(b[1]), 2
	switch {
	case n < 0x80:
	case n == 0x81 && len(b) >= 3 && b[2] >= 0x80:
		n, hdr = int(b[2]), 3
	case n == 0x82 && len(b) >= 4 && b[2] != 0:
		n, hdr = int(b[2])<<8|int(b[3]), 4
	default:
		return nil, nil, errors.New("pkcs8: bad length")
	}
	if len(b)-hdr < n {
		return nil, nil, errors.New("pkcs8: truncated")
	}
	return b[hdr : hdr+n], b[hdr+n:], nil
}

// Load reads the identity kept in the PEM file at path. A file that group
// or others may access is ErrExposed (as ssh refuses such keys); a missing
// file is ErrNotExist.
func Load(path string) (*Identity, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity: %s: %w", path, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity: %s has mode %v, want 0600: %w", path, fi.Mode().Perm(), ErrExposed)
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	id, err := ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	return id, nil
}

// LoadOrCreate loads the identity at path or, if there is no file, creates
// one from r (crypto/rand if nil) and writes it with mode 0600. Creation
// does not overwrite a file that appears meanwhile (O_EXCL).
func LoadOrCreate(path string, r io.Reader) (*Identity, error) {
	id, err := Load(path)
	if !errors.Is(err, ErrNotExist) {
		return id, err
	}
	if id, err = Generate(r); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("identity: create: %w", err)
	}
	if _, err := f.Write(id.MarshalPEM()); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("identity: write %s: %w", path, err)
	}
	return id, nil
}
