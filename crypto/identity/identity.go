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
	"crypto/x509"
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
	der, err := x509.MarshalPKCS8PrivateKey(id.priv)
	if err != nil {
		panic(err) // an ed25519 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

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
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("identity: %w: %w", ErrInvalid, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("identity: a %T, not ed25519: %w", k, ErrInvalid)
	}
	return fromPriv(priv), nil
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
