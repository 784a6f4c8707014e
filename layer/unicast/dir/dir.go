// Package dir is the contract between a unicast IPCP and its directory
// (Ouroboros' dir component): the map from name hashes to the addresses
// of the members that registered them. The IPCP consumes a Directory;
// the policies implement it in their own packages: the Kademlia DHT
// (dir/dht) and the flood directory (dir/flood), the fallback for tests
// and small layers. Neither the contract nor a policy imports the IPCP.
package dir

import (
	"context"
	"crypto/ed25519"
	"log/slog"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer"
)

// Life cycle, as the IPCP drives it:
//
//  1. The IPCP bootstraps or enrolls and so learns its address and the
//     layer's configuration, whose "dir" key names the directory policy
//     (the same for every member: the bootstrapper chose it).
//  2. It builds the directory with the Builder registered for that
//     policy in Config.Directories (or the built-in flood policy), passing
//     a Config whose Env is the IPCP's transport for directory messages.
//  3. It calls Start, then Register for every name registered with the
//     IPCP so far (the IRM may register names before enrollment), and
//     from then on Register, Unregister and Lookup as the IRM asks.
//  4. Directory messages that arrive for the reserved endpoint unicast.EIDDir are
//     passed to Handle; messages the directory sends go through Env.Send.
//  5. Stop, when the IPCP stops. The IPCP makes no call after Stop begins.

// MaxMsg is the largest message Env.Send accepts. It leaves room
// for this layer's PCI and for several more levels of recursion below it
// inside flow.MaxSDU.
const MaxMsg = 1200

// Directory maps name hashes to member addresses across the layer. It is
// a policy (Config.Directories, the layer's "dir" key); the IPCP owns one
// per enrollment.
//
// All methods are safe for concurrent use. Register, Unregister and Lookup
// may block on the network until ctx ends; Handle must not.
type Directory interface {
	// Start starts the directory's timers and goroutines (refresh,
	// republication, expiry). The IPCP calls it once, after it has its
	// address, before any other method.
	Start() error
	// Stop stops everything Start started and waits for it. The IPCP
	// calls it once; no other method is called after Stop begins, but
	// calls in flight (a Lookup blocked on the network) must return
	// promptly, with an error wrapping flow.ErrClosed.
	Stop()
	// Register announces that the member at a (in practice the IPCP's
	// own address) serves the name whose hash is h. Registering the same
	// (h, a) twice is not an error. The directory keeps the entry alive
	// (republishes it) until Unregister or Stop; the IPCP registers each
	// name once.
	Register(ctx context.Context, h layer.Hash, a layer.Addr) error
	// Unregister withdraws (h, a). Withdrawing an unknown entry is an
	// error wrapping flow.ErrNotFound.
	Unregister(ctx context.Context, h layer.Hash, a layer.Addr) error
	// Lookup returns the addresses registered for h, in the directory's
	// order of preference (the IPCP tries them in order), or an error
	// wrapping flow.ErrNotFound if there are none, flow.ErrTimeout (or
	// ctx's error) if ctx ended first. The returned slice is the
	// caller's. Entries this member registered itself are found without
	// the network.
	Lookup(ctx context.Context, h layer.Hash) ([]layer.Addr, error)
	// Handle processes a directory message that arrived from the member
	// at src. msg is valid only during the call (the IPCP reuses the
	// buffer): copy what is kept. Handle is called from one goroutine at
	// a time, not the data path's, and must not block: to answer, call
	// Env.Send (which does not call back into the directory). Malformed
	// messages are counted and dropped, never returned.
	Handle(src layer.Addr, msg []byte)
}

// Env is the IPCP as its directory sees it: its address, a transport
// for directory messages to other members, and the layer's membership.
// Safe for concurrent use.
type Env interface {
	// Self returns the IPCP's address (non-zero, fixed for the
	// directory's life).
	Self() layer.Addr
	// Send sends msg to the directory of the member at dst, in a dt
	// packet to (dst, unicast.EIDDir) on the raw QoS cube: best effort, no
	// retransmission, no ordering (the directory retries what it needs).
	// It copies msg and does not block beyond the N-1 flow's
	// back-pressure. len(msg) > MaxMsg is flow.ErrTooBig; no route to
	// dst is flow.ErrNotFound. Send to Self() is delivered to the own
	// Handle, asynchronously. Send never calls into the directory.
	Send(dst layer.Addr, msg []byte) error
	// Members returns the addresses of the layer's members as routing
	// knows them (the link-state database's origins), ascending, Self
	// included. A new member's list is complete about a routing flood
	// after enrollment; it changes as members come and go (see
	// MembersWatcher).
	Members() []layer.Addr
}

// Config is what a directory policy is built from.
type Config struct {
	// Env is the IPCP's transport and membership view; never nil.
	Env Env
	// Layer is the layer's name (for logs and errors).
	Layer string
	// Log logs notable events; nil discards them.
	Log *slog.Logger
	// Runner starts the directory's goroutines: the IPCP's (in a node,
	// its component's kernel PD); never nil.
	Runner layer.Runner
	// Signer signs the records this member registers
	// (identity.LabelDir); never nil: the IPCP's signing capability.
	Signer identity.Signer
	// Bound reports whether key may speak for address a in this layer:
	// under a protecting admission policy, whether a is the address
	// derived from key (addr.FromKey); under open, always true. Never
	// nil.
	Bound func(a layer.Addr, key ed25519.PublicKey) bool
	// Names, if not nil, makes a directory that can enforce the names
	// membership certificates list do so (the dht policy; flood cannot);
	// the IPCP sets it under an authority admission policy.
	Names *NamesPolicy
}

// NamesPolicy is how a directory checks names against membership
// certificates (identity.Cert.Names). A record may carry its
// registrant's certificate; the certificate certifies the record's name
// when it was issued by one of Authorities, is valid now, is not
// revoked, its Subject is the record's key and one of its Names hashes
// (with Hash, the layer's) to the record's name. Then a certified record
// of a name is taken even if another key registered the name first, and
// while it lives the name's records under any other key are refused;
// with Certified, a record its certificate does not certify is refused:
// certificates are the only source of names. docs/security.md, "Signed
// directory".
type NamesPolicy struct {
	// Authorities are the layer's authority keys; at least one.
	Authorities []ed25519.PublicKey
	// Hash is the layer's name hash (layer.HashName's algorithm).
	Hash layer.HashAlgo
	// Certified refuses any record its certificate does not certify.
	Certified bool
	// Revoked reports whether a verified certificate is revoked (the
	// layer's revocation list); nil: none is.
	Revoked func(identity.Cert) bool
	// Cert is this member's own certificate, attached to its records;
	// nil attaches none.
	Cert []byte
}

// Builder builds a directory policy for one IPCP. Implementations
// register theirs under a policy name in Config.Directories (the node's
// composition root does, for "dht": dht.Policy). It must not start anything:
// the IPCP calls Start.
type Builder func(cfg Config) (Directory, error)

// Entry is one directory entry, for the "dir" management command.
type Entry struct {
	Hash  layer.Hash
	Addrs []layer.Addr
	// Local is set when this member registered the entry itself (it is
	// authoritative for it); otherwise it is stored or cached here.
	Local bool
}

// Lister is an optional Directory operation, found by type assertion:
// the entries this member holds, for the "dir" management command. Safe
// for concurrent use; the result is the caller's.
type Lister interface {
	Entries() []Entry
}

// Counters is an optional Directory operation, found by type
// assertion: the directory's counters of refused input, by name, shown
// by ouro stats as "checks.dir.<name>".
type Counters interface {
	Counters() map[string]uint64
}

// MembersWatcher is an optional Directory operation, found by type
// assertion: the IPCP calls MembersChanged with the new membership
// (ascending, Self included) whenever routing's view of the members
// changes, from the same goroutine as Handle. It must not block.
type MembersWatcher interface {
	MembersChanged(members []layer.Addr)
}

// StaleWatcher is an optional Directory operation, found by type
// assertion: an allocation to the name whose hash is h failed at the
// member at a, which does not serve h (it said so) or did not answer (no
// route, gone). An answer for h naming a that the directory cached is
// dropped, so that the next Lookup asks afresh instead of giving the
// stale address again until the cache time ends (issue 18). It must not
// block.
type StaleWatcher interface {
	Stale(h layer.Hash, a layer.Addr)
}
