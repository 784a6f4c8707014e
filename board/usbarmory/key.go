//go:build tamago && arm

package usbarmory

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// KeyKind says where a unique key comes from and what it is worth.
type KeyKind int

const (
	// KeyUnavailable: no key source (the zero value).
	KeyUnavailable KeyKind = iota
	// KeyOTPMK: derived by the SoC (DCP on i.MX6ULL/ULZ, CAAM on i.MX6UL)
	// from the fused OTPMK, with secure boot closed and SNVS trusted or
	// secure. Unique per device and never visible to software.
	KeyOTPMK
	// KeyNVTK: derived by the SoC while SNVS is not trusted (an open,
	// non-secure-booted board): the hardware then uses the Non-volatile
	// Test Key, identical on every SoC, so the result is made unique by
	// mixing in the SoC unique ID but it is NOT SECRET.
	KeyNVTK
	// KeyQEMUTest: under QEMU; a FIXED, published test key. NOT SECRET and
	// identical on every emulated node except for the caller's diversifier.
	KeyQEMUTest
)

// String names the kind for banners and logs.
func (k KeyKind) String() string {
	switch k {
	case KeyOTPMK:
		return "hardware-unique (OTPMK)"
	case KeyNVTK:
		return "device-unique, NOT secret (NVTK: secure boot not enabled)"
	case KeyQEMUTest:
		return "QEMU FIXED TEST KEY (not secret)"
	default:
		return "unavailable"
	}
}

// Secret reports whether a key of this kind is secret to the device.
func (k KeyKind) Secret() bool {
	return k == KeyOTPMK
}

// UniqueKeySize is the size of keys returned by UniqueKey.
const UniqueKeySize = 32

// qemuTestKey is the fixed key used under emulation. It is published here
// on purpose: nothing keyed by it is secret.
var qemuTestKey = sha256.Sum256([]byte("ouro usbarmory QEMU FIXED TEST KEY v1 - NOT SECRET"))

// keyIV is the fixed CBC IV of the DCP derivation; the derivation must be
// deterministic, uniqueness comes from the hardware key and the diversifier.
var keyIV = []byte("ouro-dcp-kdf-iv1")

// ErrNoUniqueKey is returned when the board has no key derivation hardware.
var ErrNoUniqueKey = errors.New("usbarmory: no hardware key derivation available")

// UniqueKeyKind reports which kind of key UniqueKey returns on this board,
// without deriving one.
func (b *Board) UniqueKeyKind() KeyKind {
	switch {
	case !imx6ul.Native:
		return KeyQEMUTest
	case imx6ul.DCP == nil && imx6ul.CAAM == nil:
		return KeyUnavailable
	case imx6ul.ARM.NonSecure():
		// SNVS is not initialised (nor readable) from the normal world:
		// assume the worst
		return KeyNVTK
	case imx6ul.SNVS.Available():
		return KeyOTPMK
	default:
		return KeyNVTK
	}
}

// UniqueKey derives a 32-byte key bound to this device and to diversifier
// (a purpose label such as "ouro identity v1", plus the node's name if
// several emulated nodes need distinct keys). The same board and
// diversifier always give the same key. The returned kind says what the key
// is worth; callers that need a secret must check kind.Secret().
//
// Real board: the diversifier is hashed together with the SoC unique ID to
// 32 bytes and encrypted by the SoC with its hardware key (DCP on the
// i.MX6ULL/ULZ: AES-128-CBC with the OTP UNIQUE_KEY, as tamago's
// dcp.DeriveKey; CAAM on the i.MX6UL: AES-256-CMAC with the BKEK, NXP AN10922
// diversification, as tamago's caam.DeriveKey), then hashed with SHA-256 so
// the output is uniform. QEMU: SHA-256(qemuTestKey || diversifier).
func (b *Board) UniqueKey(diversifier []byte) (key [UniqueKeySize]byte, kind KeyKind, err error) {
	kind = b.UniqueKeyKind()

	uid := imx6ul.UniqueID()
	div := sha256.New()
	div.Write([]byte("ouro-unique-key-v1\x00"))
	div.Write(uid[:])
	div.Write(diversifier)
	d := div.Sum(nil)

	var raw []byte

	switch {
	case kind == KeyQEMUTest:
		h := sha256.New()
		h.Write(qemuTestKey[:])
		h.Write(diversifier)
		copy(key[:], h.Sum(nil))
		return key, kind, nil
	case kind == KeyUnavailable:
		return key, kind, ErrNoUniqueKey
	case imx6ul.DCP != nil:
		b.dcpOnce.Do(imx6ul.DCP.Init)
		// DeriveKey pads and appends to its argument: hand it a copy
		raw, err = imx6ul.DCP.DeriveKey(append([]byte(nil), d...), keyIV, -1)
	default:
		raw = make([]byte, sha256.Size)
		err = imx6ul.CAAM.DeriveKey(d, raw)
	}

	if err != nil {
		return key, KeyUnavailable, fmt.Errorf("usbarmory: unique key: %w", err)
	}

	h := sha256.New()
	h.Write([]byte("ouro-unique-key-v1-out\x00"))
	h.Write(raw)
	copy(key[:], h.Sum(nil))

	return key, kind, nil
}
