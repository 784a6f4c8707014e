// Package layer holds what every IPC process shares: name hashes, flat
// addresses and endpoint ids. It is not an IPCP itself.
package layer

import (
	"crypto/sha256"
	"crypto/sha3"
	"encoding/hex"
	"fmt"
)

// HashAlgo selects how a layer hashes names (Ouroboros' dir_hash_algo).
type HashAlgo uint8

// The supported name hash algorithms.
const (
	SHA3_256 HashAlgo = iota // Ouroboros' default
	SHA256
)

// HashLen is the length of a name hash in bytes (both algorithms: 32).
const HashLen = 32

// Hash is a name hash. The zero value hashes no name.
type Hash [HashLen]byte

// HashName hashes name with algo.
func HashName(algo HashAlgo, name string) Hash {
	switch algo {
	case SHA256:
		return sha256.Sum256([]byte(name))
	default:
		return sha3.Sum256([]byte(name))
	}
}

// String returns the first 8 bytes in hex, as Ouroboros prints hashes.
func (h Hash) String() string { return hex.EncodeToString(h[:8]) }

// ParseHashAlgo parses "sha3-256" or "sha256".
func ParseHashAlgo(s string) (HashAlgo, error) {
	switch s {
	case "", "sha3-256", "SHA3_256":
		return SHA3_256, nil
	case "sha256", "SHA256":
		return SHA256, nil
	}
	return 0, fmt.Errorf("layer: unknown hash algorithm %q (want sha3-256 or sha256)", s)
}

// Addr is a flat address in a unicast layer. The zero value is no address.
type Addr uint64

// EID identifies a flow endpoint inside an IPCP (Ouroboros' eid/fd). The
// zero value is no endpoint.
type EID uint64
