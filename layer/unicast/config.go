package unicast

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"io"
	"log/slog"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/enroll"
)

// Config configures a unicast IPCP. Zero durations take the defaults.
type Config struct {
	// Name is the IPCP's own name: it binds it in the lower layers to
	// accept N-1 flows, and neighbours allocate flows to it. Required.
	Name string
	// Layer is the layer's name. Required.
	Layer string
	// Lower are the lower layers the IPCP registers Name in (through the
	// Registrar); empty registers nothing (the broker may do it).
	Lower []string

	// Bootstrap makes this IPCP the layer's first member, with Layer
	// (zero fields: enroll.DefaultConfig) as the layer's configuration.
	Bootstrap   bool
	LayerConfig enroll.Config
	// Enroll is the IPCP name of a member to enroll through; it is
	// retried with backoff until it succeeds or the IPCP stops.
	Enroll string
	// Neighbours are IPCP names to keep adjacencies with once a member.
	// Empty after enrolling means the member enrolled through.
	Neighbours []string
	// Discover makes the member also connect, in the background, to
	// every member of its layer that Heard says it reaches directly over
	// a lower layer (docs/layers.md, "Neighbour discovery"); it needs
	// Heard. DiscoverTick is how often it looks (default 2 s).
	Discover     bool
	Heard        Hearer
	DiscoverTick time.Duration

	// Signer is the IPCP's identity: in a node, a signing capability to
	// the node's signer component (the key never enters the IPCP); nil
	// makes an ephemeral identity for this IPCP's lifetime (tests,
	// IPCPs created at run time). What the IPCP signs is in
	// docs/security.md.
	Signer identity.Signer
	// PubKey is the IPCP's public identity, sent when enrolling; it is
	// Signer's public key (set by setDefaults).
	PubKey []byte
	// Document is the node's signed identity document (nil: the
	// Signer's, if it hands one out, else one the IPCP signs without
	// board or measurement).
	Document []byte
	// Cert is the node's membership certificate for layers admitted by
	// authority (ouro cert issue); nil for the others.
	Cert []byte
	// CRL is the layer authority's revocation list (ouro cert revoke) this
	// IPCP starts with, checked when it admits a member or a neighbour;
	// nil: none yet. A newer list reaches it through the layer from any
	// member given one (ouro crl), and it passes lists on to its
	// neighbours (docs/security.md, "Rotation and revocation").
	CRL []byte
	// Seal seals every flow this member allocates or accepts: requests
	// that come unsealed are refused (docs/security.md, "Sealed flows").
	// Without it, flows whose QoS asks (flow.QoS.Sealed) are sealed.
	Seal bool
	// SealPeers, if not empty, are the only nodes (self-certifying ids,
	// identity.NameOf) a sealed flow of this member may have at its other
	// end, either way; the others' allocations are refused.
	SealPeers []string
	// SealTicketLife is how long the ticket a sealed flow's key exchange
	// leaves both ends stays usable to resume the next one between them
	// in one round trip (0: fa.DefaultTicketLife; negative: never
	// resume, always make the full key exchange).
	SealTicketLife time.Duration
	// SealAEAD, if set, is the only AEAD this member's sealed flows use
	// (a peer that does not take it fails their key exchange); zero
	// negotiates: AES-256-GCM where both ends have hardware AES, else
	// ChaCha20-Poly1305 (crypto/seal, crypto/kex).
	SealAEAD seal.AEAD
	// Addr is a static address (0: the one Signer's key and Name derive,
	// addr.Keyed; drawn from Entropy only if another member has it).
	Addr layer.Addr
	// Entropy for random addresses, the fallback (default crypto/rand.Reader).
	Entropy io.Reader

	// Sched is the per-N-1-flow scheduling discipline across QoS cubes,
	// QueueLen each cube's queue length (0: dt.DefaultQueueLen).
	Sched    dt.SchedKind
	QueueLen int

	// MaxSDU is the largest SDU of the N-1 flows the data path is made
	// for (0: flow.MaxSDU; more where a lower layer carries more, up to
	// flow.MaxJumboSDU): its packet buffers hold one (dt.BufLenFor), and
	// the layer's own limit is the smallest of its N-1 flows' less the
	// PCI, at most this less the PCI.
	MaxSDU int

	// Bufs is the most packet buffers (of dt.BufLen, about 1.5 KiB, or
	// dt.BufLenFor(MaxSDU)) the
	// data path ever holds, in its queues, its read batches and its free
	// list: the IPCP's budget for packets, so that a flood cannot make
	// it hold more. A packet that would need one more is dropped and
	// counted (drops.no_buf); one the IPCP originates first waits up to
	// 20 ms for one. 0: DefaultBufs.
	Bufs int
	// Reserve, if set, charges the buffers the data path makes to the
	// component's kernel budget as it makes them (kernel.PD.Reserve), so
	// that they count against it like the buffers it holds in rings;
	// when the budget is spent the data path makes no more and drops as
	// if all Bufs were held. What an incarnation reserved returns to the
	// budget when it ends.
	Reserve func(n int) error

	// Directories are the directory policies this IPCP can run, by the
	// name the layer configuration's Dir key uses; "flood" is built in.
	Directories map[string]dir.Builder

	RoutingTick time.Duration // routing's flood and recomputation period (default 100 ms)
	KeepAlive   time.Duration // keepalive of idle flows and idle N-1 data-transfer flows (default 1 s)
	FlowTimeout time.Duration // a flow whose peer is silent this long is closed (default 4 s)
	RetryMax    time.Duration // ceiling of enrollment and reconnection backoff (default 2 s)

	// Log logs notable events, with the IPCP's name as "ipcp"; its parts
	// add "part" (connmgr, fa, dir). Nil discards them.
	Log *slog.Logger

	// Runner starts every goroutine of the IPCP and its parts (in a
	// node, its component's kernel PD, so that a panic is a fault of the
	// component); required.
	Runner layer.Runner
}

func (c *Config) setDefaults() error {
	if c.Name == "" || c.Layer == "" {
		return fmt.Errorf("unicast: config needs a name and a layer: %w", flow.ErrInvalid)
	}
	if c.Bootstrap && c.Enroll != "" {
		return fmt.Errorf("unicast: %s: bootstrap and enroll are exclusive: %w", c.Name, flow.ErrInvalid)
	}
	if c.Runner == nil {
		return layer.NeedRunner("unicast: " + c.Name)
	}
	if c.Discover && c.Heard == nil {
		return fmt.Errorf("unicast: %s: discover needs a Hearer: %w", c.Name, flow.ErrInvalid)
	}
	if c.Bufs < 0 {
		return fmt.Errorf("unicast: %s: bufs %d, want >= 0: %w", c.Name, c.Bufs, flow.ErrInvalid)
	}
	c.Bufs = cmp.Or(c.Bufs, DefaultBufs)
	c.DiscoverTick = cmp.Or(c.DiscoverTick, 2*time.Second)
	if c.Entropy == nil {
		c.Entropy = rand.Reader
	}
	if c.Signer == nil {
		id, err := identity.Generate(rand.Reader)
		if err != nil {
			return fmt.Errorf("unicast: %s: identity: %w", c.Name, err)
		}
		c.Signer = id
	}
	c.PubKey = c.Signer.Public()
	c.RoutingTick = cmp.Or(c.RoutingTick, 100*time.Millisecond)
	c.KeepAlive = cmp.Or(c.KeepAlive, time.Second)
	c.FlowTimeout = cmp.Or(c.FlowTimeout, 4*time.Second)
	c.RetryMax = cmp.Or(c.RetryMax, 2*time.Second)
	c.Log = logx.Or(c.Log)
	return nil
}

// layerDefaults fills the zero fields of a bootstrap configuration. The
// directory is the DHT ("dht") if this IPCP has it, else "flood".
func layerDefaults(c enroll.Config, layerName string, dirs map[string]dir.Builder) enroll.Config {
	d := enroll.DefaultConfig(layerName)
	if dirs["dht"] != nil {
		d.Dir = "dht"
	}
	c.Layer = layerName
	if c.AddrWidth == 0 {
		c.AddrWidth = d.AddrWidth
	}
	c.Routing = cmp.Or(c.Routing, d.Routing)
	c.CA = cmp.Or(c.CA, d.CA)
	c.Dir = cmp.Or(c.Dir, d.Dir)
	c.Hello = cmp.Or(c.Hello, d.Hello)
	c.Dead = cmp.Or(c.Dead, d.Dead)
	return c
}

// Registrar registers a name in a lower layer: the IRM's "reg" management
// command. *irm.Broker satisfies it through an adapter (the node factory's);
// tests over fake brokers pass nil.
type Registrar interface {
	Reg(ctx context.Context, name, layer string) error
}
