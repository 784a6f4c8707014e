//go:build tamago && arm

package raspberrypi

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// KeyKind says where a unique key comes from and what it is worth.
type KeyKind int

const (
	// KeyUnavailable: no key source (the zero value).
	KeyUnavailable KeyKind = iota
	// KeySerial: derived from the board serial number the firmware
	// reports (OTP). Unique per board and stable, but NOT SECRET: the
	// serial is readable by any software on the board and printed by
	// Linux in /proc/cpuinfo, and the BCM2835/6 have no key that software
	// cannot read.
	KeySerial
	// KeyQEMUTest: under QEMU; a FIXED, published test key. NOT SECRET and
	// identical on every emulated node except for the caller's diversifier.
	KeyQEMUTest
)

// String names the kind for banners and logs.
func (k KeyKind) String() string {
	switch k {
	case KeySerial:
		return "board serial, NOT secret"
	case KeyQEMUTest:
		return "QEMU FIXED TEST KEY (not secret)"
	default:
		return "unavailable"
	}
}

// Secret reports whether a key of this kind is secret to the device: on
// these SoCs never.
func (k KeyKind) Secret() bool {
	return false
}

// UniqueKeySize is the size of keys returned by UniqueKey.
const UniqueKeySize = 32

// qemuTestKey is the fixed key used under emulation, published on purpose.
var qemuTestKey = sha256.Sum256([]byte("ouro raspberrypi QEMU FIXED TEST KEY v1 - NOT SECRET"))

// ErrNoUniqueKey is returned when the firmware reports no serial.
var ErrNoUniqueKey = errors.New("raspberrypi: no board serial for a unique key")

// UniqueKeyKind reports which kind of key UniqueKey returns; valid after
// Init.
func (b *Board) UniqueKeyKind() KeyKind {
	switch {
	case emulated:
		return KeyQEMUTest
	case b.serial != 0:
		return KeySerial
	default:
		return KeyUnavailable
	}
}

// UniqueKey derives a 32-byte key bound to this board and to diversifier
// (a purpose label, plus the node's name if several emulated nodes need
// distinct keys). The same board and diversifier always give the same key.
//
// Real board: SHA-256("ouro-unique-key-v1\0raspberrypi\0" || serial (8
// bytes, big-endian) || diversifier). QEMU: SHA-256(qemuTestKey ||
// diversifier). Neither is secret; see KeyKind.
func (b *Board) UniqueKey(diversifier []byte) (key [UniqueKeySize]byte, kind KeyKind, err error) {
	kind = b.UniqueKeyKind()
	h := sha256.New()
	switch kind {
	case KeyQEMUTest:
		h.Write(qemuTestKey[:])
	case KeySerial:
		h.Write([]byte("ouro-unique-key-v1\x00raspberrypi\x00"))
		h.Write(binary.BigEndian.AppendUint64(nil, b.serial))
	default:
		return key, kind, ErrNoUniqueKey
	}
	h.Write(diversifier)
	copy(key[:], h.Sum(nil))
	return key, kind, nil
}
