// Package addr assigns a unicast IPCP its flat layer address (Ouroboros'
// addr-auth): derived from the member's key (so that a restarted member
// comes back at the same address), at random from injected entropy, or
// from configuration, never colliding with known members. It does not
// learn the members (enrollment does) nor defend the address afterwards.
package addr

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// Kind selects an assignment policy.
type Kind uint8

// The assignment policies.
const (
	// Random draws non-zero addresses from the entropy source until one
	// is not taken.
	Random Kind = iota
	// Static takes the configured address, failing if it is taken.
	Static
	// Keyed takes the address the member's key and name derive
	// (FromKeyName; FromKey without a name) and, only if another member
	// has it, draws at random like Random: a member that restarts with
	// the same key asks for the same address again, so its names and
	// routes stay valid.
	Keyed
)

func (k Kind) String() string {
	switch k {
	case Random:
		return "random"
	case Static:
		return "static"
	case Keyed:
		return "keyed"
	}
	return fmt.Sprintf("addr.Kind(%d)", uint8(k))
}

// Errors returned (wrapped) by Assign.
var (
	ErrCollision = errors.New("address already in use")
	ErrExhausted = errors.New("no free address found")
)

// MaxTries is how many random draws Assign makes before ErrExhausted.
const MaxTries = 64

// Members answers whether an address is in use in the layer; enrollment
// gives what it learned from the member it enrolled with. Has must be
// safe to call from the goroutine calling Assign.
type Members interface {
	Has(layer.Addr) bool
}

// Set is a Members backed by a map. The zero value (nil) has no members.
type Set map[layer.Addr]struct{}

// Has reports whether a is in the set.
func (s Set) Has(a layer.Addr) bool { _, ok := s[a]; return ok }

var _ Members = Set(nil)

// Config configures an Assigner.
type Config struct {
	Kind Kind
	// Width is the address width in bytes, 4 or 8 (0 means 8): random
	// addresses stay below 2^(8*Width) so a layer can keep them short.
	Width int
	// Entropy is read for Random addresses (crypto/rand.Reader, or the
	// board's source); required for Random.
	Entropy io.Reader
	// Addr is the Static address; required for Static.
	Addr layer.Addr
	// Layer, Key and Name are the layer's name, the member's public key
	// and its IPCP name, from which the Keyed policy derives its first
	// address (FromKeyName, or FromKey if Name is empty); Key is required
	// for Keyed, which also needs Entropy.
	Layer string
	Key   []byte
	Name  string
}

// policy draws the next candidate address.
type policy interface {
	draw() (layer.Addr, error)
	// retry reports whether drawing again can give another address.
	retry() bool
}

type random struct {
	r    io.Reader
	mask uint64
	buf  [8]byte
}

func (p *random) draw() (layer.Addr, error) {
	if _, err := io.ReadFull(p.r, p.buf[:]); err != nil {
		return 0, fmt.Errorf("addr: reading entropy: %w", err)
	}
	return layer.Addr(binary.BigEndian.Uint64(p.buf[:]) & p.mask), nil
}
func (p *random) retry() bool { return true }

// keyed draws the key's address first, then at random.
type keyed struct {
	first layer.Addr
	drawn bool
	rnd   *random
}

func (p *keyed) draw() (layer.Addr, error) {
	if !p.drawn {
		p.drawn = true
		return p.first, nil
	}
	return p.rnd.draw()
}
func (p *keyed) retry() bool { return true }

type static struct{ a layer.Addr }

func (p static) draw() (layer.Addr, error) { return p.a, nil }
func (p static) retry() bool               { return false }

// Assigner picks addresses by one policy. It is not safe for concurrent
// use (an IPCP assigns once, while enrolling); it has nothing running.
type Assigner struct {
	kind Kind
	pol  policy
}

// New returns an Assigner.
func New(cfg Config) (*Assigner, error) {
	width := cfg.Width
	if width == 0 {
		width = 8
	}
	if width != 4 && width != 8 {
		return nil, fmt.Errorf("addr: width %d, want 4 or 8: %w", width, flow.ErrInvalid)
	}
	a := &Assigner{kind: cfg.Kind}
	switch cfg.Kind {
	case Random:
		if cfg.Entropy == nil {
			return nil, fmt.Errorf("addr: random policy needs an entropy source: %w", flow.ErrInvalid)
		}
		a.pol = &random{r: cfg.Entropy, mask: ^uint64(0) >> (64 - 8*width)}
	case Keyed:
		if cfg.Entropy == nil || len(cfg.Key) == 0 {
			return nil, fmt.Errorf("addr: keyed policy needs a key and an entropy source: %w", flow.ErrInvalid)
		}
		first := FromKey(cfg.Layer, width, cfg.Key)
		if cfg.Name != "" {
			first = FromKeyName(cfg.Layer, width, cfg.Key, cfg.Name)
		}
		a.pol = &keyed{first: first, rnd: &random{r: cfg.Entropy, mask: ^uint64(0) >> (64 - 8*width)}}
	case Static:
		if cfg.Addr == 0 || (width == 4 && cfg.Addr>>32 != 0) {
			return nil, fmt.Errorf("addr: static address %#x does not fit %d bytes or is 0: %w", uint64(cfg.Addr), width, flow.ErrInvalid)
		}
		a.pol = static{cfg.Addr}
	default:
		return nil, fmt.Errorf("addr: unknown policy %v: %w", cfg.Kind, flow.ErrInvalid)
	}
	return a, nil
}

// Kind returns the Assigner's policy.
func (a *Assigner) Kind() Kind { return a.kind }

// Assign returns a non-zero address that members does not have (members
// may be nil: none known).
func (a *Assigner) Assign(members Members) (layer.Addr, error) {
	for range MaxTries {
		c, err := a.pol.draw()
		if err != nil {
			return 0, err
		}
		if c != 0 && (members == nil || !members.Has(c)) {
			return c, nil
		}
		if !a.pol.retry() {
			return 0, fmt.Errorf("addr: %#x: %w", uint64(c), ErrCollision)
		}
	}
	return 0, fmt.Errorf("addr: %d draws: %w", MaxTries, ErrExhausted)
}

// FromKey derives a member's address from its public key: the first bytes
// of SHA-256("ouro/addr/v1" || 0x00 || layerName || 0x00 || pub), masked
// to width bytes (4 or 8; 0 means 8), never zero. An address derived this
// way is self-certifying: whoever signs with the key behind an address
// proves it owns the address, without a table.
func FromKey(layerName string, width int, pub []byte) layer.Addr {
	h := sha256.New()
	h.Write([]byte("ouro/addr/v1\x00"))
	h.Write([]byte(layerName))
	h.Write([]byte{0})
	h.Write(pub)
	return fromDigest(h, width)
}

// FromKeyName derives the address of the IPCP called name whose node key
// is pub in an open layer: the first bytes of SHA-256("ouro/addr/name/v1"
// || 0x00 || layerName || 0x00 || pub || name), masked like FromKey. Two
// IPCPs of one node in one layer (one key) get different addresses, and
// an IPCP restarted with its name and key gets its address again. It
// proves nothing (protected layers use FromKey: one address per key).
func FromKeyName(layerName string, width int, pub []byte, name string) layer.Addr {
	h := sha256.New()
	h.Write([]byte("ouro/addr/name/v1\x00"))
	h.Write([]byte(layerName))
	h.Write([]byte{0})
	h.Write(pub)
	h.Write([]byte(name))
	return fromDigest(h, width)
}

func fromDigest(h hash.Hash, width int) layer.Addr {
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	mask := ^uint64(0)
	if width == 4 {
		mask = 1<<32 - 1
	}
	for i := 0; i+8 <= len(sum); i += 8 {
		if a := binary.BigEndian.Uint64(sum[i:]) & mask; a != 0 {
			return layer.Addr(a)
		}
	}
	return 1 // all-zero digest prefixes: not in this universe
}
