package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"runtime"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// AEAD names an AEAD a flow is sealed with. Its value is its identifier
// on the wire (docs/wire/kex.md, "AEAD negotiation"): one byte.
type AEAD uint8

// The AEADs. Zero is none (a flow that is not sealed).
const (
	// ChaCha20Poly1305 is RFC 8439's: fast in software, constant time
	// everywhere. Every version of ouro seals with it; a peer that
	// offers no list of AEADs gets it.
	ChaCha20Poly1305 AEAD = 1
	// AES256GCM is AES-256 in Galois/counter mode (NIST SP 800-38D)
	// with a 12-byte nonce: several times faster than ChaCha20-Poly1305
	// with AES and carry-less multiplication instructions (HardwareAES),
	// slow and not constant time without.
	AES256GCM AEAD = 2
)

// AEADs is every AEAD this package knows, by identifier.
var AEADs = []AEAD{ChaCha20Poly1305, AES256GCM}

// String is the AEAD's name, as configured (seal_aead) and shown.
func (a AEAD) String() string {
	switch a {
	case ChaCha20Poly1305:
		return "chacha20poly1305"
	case AES256GCM:
		return "aes256gcm"
	case 0:
		return "none"
	}
	return fmt.Sprintf("aead(%d)", uint8(a))
}

// Known reports whether a is one of AEADs.
func (a AEAD) Known() bool { return a == ChaCha20Poly1305 || a == AES256GCM }

// ParseAEAD returns the AEAD named s (String's names).
func ParseAEAD(s string) (AEAD, error) {
	for _, a := range AEADs {
		if a.String() == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%q (want chacha20poly1305 or aes256gcm): %w", s, ErrAEAD)
}

// new returns a's cipher for key.
func (a AEAD) new(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%d bytes: %w", len(key), ErrKey)
	}
	switch a {
	case ChaCha20Poly1305:
		return chacha20poly1305.New(key)
	case AES256GCM:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		return cipher.NewGCM(b) // 12-byte nonce, 16-byte tag: as ChaCha20-Poly1305
	}
	return nil, fmt.Errorf("%d: %w", uint8(a), ErrAEAD)
}

// HardwareAES reports whether this processor has the instructions Go's
// AES-GCM uses (AES and carry-less multiplication): x86-64 with AES-NI
// and PCLMULQDQ, arm64 with AES and PMULL, s390x with AES-GCM (KMA),
// POWER8 and later. ARMv7 (the USB armory, a Raspberry Pi 2) has none.
func HardwareAES() bool {
	switch runtime.GOARCH {
	case "amd64":
		return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		return cpu.S390X.HasAES && cpu.S390X.HasAESGCM
	case "ppc64", "ppc64le":
		return cpu.PPC64.IsPOWER8
	}
	return false
}

// Preferred is this host's AEADs in its order of preference: AES-256-GCM
// first with HardwareAES, else ChaCha20-Poly1305 first. Both are always
// offered, so that two hosts whose forced choices differ still agree.
func Preferred() []AEAD {
	if HardwareAES() {
		return []AEAD{AES256GCM, ChaCha20Poly1305}
	}
	return []AEAD{ChaCha20Poly1305, AES256GCM}
}

// Choose is the negotiation's rule (docs/wire/kex.md): among the AEADs
// both lists hold (each a side's AEADs in its order of preference), the
// one whose worse position in the two lists is best; on a tie, the
// smaller identifier (ChaCha20-Poly1305: fast and constant time on
// either side, where AES-GCM would be slow on the side without
// hardware). So AES-256-GCM is chosen when both sides put it first, or
// when one of them takes nothing else. It returns false if the lists
// share none. Unknown identifiers and repeats are left out before
// positions are counted; the result does not depend on which side's
// list is which.
func Choose(requester, responder []AEAD) (AEAD, bool) {
	rq, rs := known(requester), known(responder)
	best, bestRank := AEAD(0), -1
	for i, a := range rq {
		j := indexOf(rs, a)
		if j < 0 {
			continue
		}
		r := max(i, j)
		if bestRank < 0 || r < bestRank || r == bestRank && a < best {
			best, bestRank = a, r
		}
	}
	return best, bestRank >= 0
}

// known is l without unknown identifiers and repeats: the positions
// Choose compares.
func known(l []AEAD) []AEAD {
	out := make([]AEAD, 0, len(AEADs))
	for _, a := range l {
		if a.Known() && indexOf(out, a) < 0 {
			out = append(out, a)
		}
	}
	return out
}

func indexOf(l []AEAD, a AEAD) int {
	for i, b := range l {
		if b == a {
			return i
		}
	}
	return -1
}
