package node

import (
	"log/slog"
	"net/netip"

	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
)

// The node's own TCP/IP stack (gVisor) runs a UDP shim's
// [ipcp.udp.netstack] and an [[ipnet]] bridge's netstack. Hosted images
// always have it; a board image only when built with the netstack tag
// (netstack_device.go; without it netstack_none.go), which make image adds
// for a configuration that uses the stack (UsesNetstack, router
// -image-tags): gVisor is about 1 MB of a board image
// (docs/benchmarks.md, "Image").

// UsesNetstack reports whether cfg runs anything on the node's own TCP/IP
// stack: a UDP shim with an [ipcp.udp.netstack] table or an [[ipnet]]
// netstack. A board image for it needs the netstack tag (HasNetstack).
func (c *Config) UsesNetstack() bool {
	for _, n := range c.IPNets {
		if n.Netstack != "" {
			return true
		}
	}
	for _, p := range c.IPCPs {
		var u udpConfig
		if p.Kind == "udp" && c.decode(p.UDP, &u) == nil && u.Netstack != nil {
			return true
		}
	}
	return false
}

// ipStack is an [[ipnet]] bridge's own TCP/IP stack (newIPStack): the
// bridge's device, with one address, on which the node may serve its
// status page.
type ipStack interface {
	TUN
	Addr() netip.Addr
	// serveStatus serves the node's status page on port of the stack's
	// address, reading it through session b, until pd's component stops.
	serveStatus(pd *kernel.PD, port uint16, b *irm.Broker, log *slog.Logger) error
}

// netstackConfig is the [ipcp.udp.netstack] table: the UDP shim runs on the
// node's own gVisor stack over an Ethernet device instead of a kernel
// socket. Exactly one of Board, QEMUConnect and QEMUListen selects the
// device.
type netstackConfig struct {
	Addrs       []string  `toml:"addrs"`        // static addresses with prefix: "127.0.10.2/24"
	Gateway4    string    `toml:"gateway4"`     // optional default routes
	Gateway6    string    `toml:"gateway6"`     //
	Board       boardPort `toml:"board"`        // bare metal: as [ipcp.eth] board (shared with an eth shim on the same device)
	QEMUConnect string    `toml:"qemu_connect"` // hosted: a QEMU socket stream, as in [ipcp.eth]
	QEMUListen  string    `toml:"qemu_listen"`
	MAC         string    `toml:"mac"` // the stream device's MAC (default random)
}

// Ports of a board link's driver (netstack.Mux).
const (
	portShim = netstack.PortShim
	portIP   = netstack.PortIP
)
