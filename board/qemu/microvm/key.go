//go:build tamago && amd64

package microvm

import (
	"crypto/sha256"
)

// KeyKind says where a unique key comes from and what it is worth. It has
// the same shape as board/usbarmory's, so images treat both alike.
type KeyKind int

const (
	// KeyUnavailable: no key source (the zero value).
	KeyUnavailable KeyKind = iota
	// KeyQEMUTest: a FIXED, published test key. NOT SECRET and identical
	// on every microvm except for the caller's diversifier.
	KeyQEMUTest
)

// String names the kind for banners and logs.
func (k KeyKind) String() string {
	switch k {
	case KeyQEMUTest:
		return "QEMU FIXED TEST KEY (not secret)"
	default:
		return "unavailable"
	}
}

// Secret reports whether a key of this kind is secret to the device:
// never, on this board.
func (k KeyKind) Secret() bool {
	return false
}

// UniqueKeySize is the size of keys returned by UniqueKey.
const UniqueKeySize = 32

// testKey is the fixed key of every microvm. It is published here on
// purpose: nothing keyed by it is secret. A virtual machine has no
// hardware key; a real deployment would provision one (for example through
// fw_cfg or a virtio device backed by the host's key store).
var testKey = sha256.Sum256([]byte("ouro qemu microvm FIXED TEST KEY v1 - NOT SECRET"))

// UniqueKeyKind reports KeyQEMUTest.
func (b *Board) UniqueKeyKind() KeyKind {
	return KeyQEMUTest
}

// UniqueKey returns SHA-256(testKey || diversifier): deterministic, and
// distinct per diversifier (give each VM a different one, e.g. its node
// name, to get distinct identities). The error is always nil.
func (b *Board) UniqueKey(diversifier []byte) (key [UniqueKeySize]byte, kind KeyKind, err error) {
	h := sha256.New()
	h.Write(testKey[:])
	h.Write(diversifier)
	copy(key[:], h.Sum(nil))
	return key, KeyQEMUTest, nil
}
