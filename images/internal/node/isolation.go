package node

import ()

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
	// MaxSessions bounds the programs served at once (default 256): the
	// gateway's budget is (MaxSessions + 1) × SessionBufs, the one more
	// for the session it prepares ahead.
	MaxSessions int
}

// GatewayOptions returns the gateway settings of the configuration.
func (c *Config) GatewayOptions() GatewayOptions {
	return GatewayOptions{Group: c.Node.SocketGroup, Public: c.Node.SocketPublic, SessionBufs: c.Node.SessionBufs, MaxSessions: c.Node.MaxSessions}
}

func (o *GatewayOptions) setDefaults() {
	if o.SessionBufs <= 0 {
		o.SessionBufs = defaultSessionBufs
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = defaultMaxSessions
	}
}
