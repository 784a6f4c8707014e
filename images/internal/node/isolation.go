package node

import (
	"context"
	"time"

	"github.com/ouronet/ouro/flow"
)

// KernelConfig is the [kernel] table: node-wide limits of the capability
// kernel (docs/node.md).
type KernelConfig struct {
	// MaxBufs bounds the packet buffers all components' budgets together
	// may hold (kernel.Config.MaxBufs); 0: no node-wide bound, each
	// budget still bounds its component.
	MaxBufs int `toml:"max_bufs"`
}

// Defaults of the hosted gateway's session budgets ([node] session_bufs,
// max_sessions).
const (
	defaultSessionBufs = 256
	defaultMaxSessions = 256
)

// GatewayOptions are the hosted socket gateway's settings ([node]
// socket_group, socket_public, session_bufs, max_sessions).
type GatewayOptions struct {
	// Group is the group (name or number) whose members get the
	// management role; the socket file belongs to it. Root and the
	// node's own user always get it.
	Group string
	// Public lets every other local user connect, with the application
	// role (the socket file is then mode 0666, else 0660).
	Public bool
	// SessionBufs is each program session's packet-buffer budget
	// (default 256), carved from the gateway's.
	SessionBufs int
	// MaxSessions bounds the sessions at once (default 256): the
	// gateway's budget is MaxSessions × SessionBufs.
	MaxSessions int
	// Allocs, if set, is told of every flow allocation a program on the
	// socket asks for (the metrics' allocation latency histogram).
	Allocs AllocObserver
}

// AllocObserver is told of each flow allocation the gateway asks the IRM
// for on a program's behalf, and each an IPCP asks for its N-1 flows
// (Config.Allocs): the layer that allocated it ("" if none did), how
// long the IRM took from the request to its answer (the query of every
// layer, the layer's allocation, the peer's accept), and the error. It
// is called on the control path of the session's or the IPCP's
// component; it must not block and must be safe for concurrent use.
type AllocObserver interface {
	ObserveAlloc(layer string, d time.Duration, err error)
}

// observedBroker is an IPCP's broker for its N-1 flows, its allocations
// told to obs.
type observedBroker struct {
	flow.Broker
	obs AllocObserver
}

// Alloc implements flow.Broker.
func (b observedBroker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	start := time.Now()
	p, info, err := b.Broker.Alloc(ctx, name, q)
	b.obs.ObserveAlloc(info.Layer, time.Since(start), err)
	return p, info, err
}

// observed returns b with its allocations told to obs, or b if obs is nil.
func observed(b flow.Broker, obs AllocObserver) flow.Broker {
	if obs == nil {
		return b
	}
	return observedBroker{Broker: b, obs: obs}
}

// GatewayOptions returns the gateway settings of the configuration.
func (c *Config) GatewayOptions() GatewayOptions {
	return GatewayOptions{Group: c.Node.SocketGroup, Public: c.Node.SocketPublic, SessionBufs: c.Node.SessionBufs, MaxSessions: c.Node.MaxSessions, Allocs: c.Allocs}
}

func (o *GatewayOptions) setDefaults() {
	if o.SessionBufs <= 0 {
		o.SessionBufs = defaultSessionBufs
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = defaultMaxSessions
	}
}
