package node

// The shims of intermittent links (docs/intermittent.md): diode, a
// one-way link, and carrier, storage carried between nodes. Their
// [ipcp.diode] and [ipcp.carrier] tables; how newIPCP builds them and
// what the configuration check says about them is in
// intermittent_hosted.go (boards refuse them: intermittent_board.go).

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/shim/impair"
)

// diodeConfig is the [ipcp.diode] table. Exactly one of Send and Receive
// says which end this is.
type diodeConfig struct {
	Send    string            `toml:"send"`     // sending end: host:port the shards go to (the socket is never read)
	Bind    string            `toml:"bind"`     // sending end: local host:port (default: any)
	Receive string            `toml:"receive"`  // receiving end: host:port to bind (the socket is never written)
	PeerKey string            `toml:"peer_key"` // receiving end: the sending node's public key, 64 hex digits (ouro id)
	Flows   map[string]uint32 `toml:"flows"`    // name = flow id, the same at both ends
	K       int               `toml:"k"`        // data shards per block (default 16)
	Loss    float64           `toml:"loss"`     // the link's expected loss, %: sizes the parity
	Parity  int               `toml:"parity"`   // parity shards per block (0: sized from loss)
	MTU     int               `toml:"mtu"`      // largest shard (default 1472)
	Rate    int64             `toml:"rate"`     // sending end: pacing, bytes/s (default 12500000; negative: unpaced)
	Linger  duration          `toml:"linger"`   // a block waits this long for more SDUs (default 5ms)
	Window  int               `toml:"window"`   // receiving end: incomplete blocks kept per flow (default 16)
	Impair  impair.Config     `toml:"impair"`   // transmit-side impairment (tests)
}

// carrierConfig is the [ipcp.carrier] table.
type carrierConfig struct {
	Out        string   `toml:"out"`         // directory bundles are written to (carried away)
	In         string   `toml:"in"`          // directory bundles arrive in
	State      string   `toml:"state"`       // a directory of this node's where the seen-set is kept across restarts ("": memory only)
	Ack        bool     `toml:"ack"`         // write signed acknowledgements of bundles taken into out (the return path)
	Resend     duration `toml:"resend"`      // keep bundles in state until acknowledged; write again one gone from out unacknowledged this long (needs state)
	PeerKeys   []string `toml:"peer_keys"`   // nodes whose bundles are accepted, 64 hex digits each (ouro id)
	Recipient  string   `toml:"recipient"`   // the node sealed flows' bundles are sealed to (default: the only peer)
	Names      []string `toml:"names"`       // names reachable at the other side
	Expiry     duration `toml:"expiry"`      // a bundle's lifetime (default 24h)
	MinTimeout duration `toml:"min_timeout"` // flows whose QoS times out sooner are refused (default 1h)
	Poll       duration `toml:"poll"`        // how often in is scanned (default 1s)
	Linger     duration `toml:"linger"`      // a bundle waits this long for more SDUs (default 100ms)
	MaxBundle  int      `toml:"max_bundle"`  // SDU bytes per bundle (default 262144)
	MaxBytes   int64    `toml:"max_bytes"`   // out's budget in bytes (default 64 MiB)
	MaxFiles   int      `toml:"max_files"`   // out's budget in files (default 4096)
	MaxSeen    int      `toml:"max_seen"`    // bundles remembered against replays (default 65536)
	MaxFlows   int      `toml:"max_flows"`   // incoming flows at once (default 256)
}

// peerKey decodes a public key written as hex.
func peerKey(s string) (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q: want %d hex digits (ouro id prints it): %w", short(s), 2*ed25519.PublicKeySize, flow.ErrInvalid)
	}
	return ed25519.PublicKey(b), nil
}
