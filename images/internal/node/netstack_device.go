package node

import (
	"fmt"
	"net/netip"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/udp"
)

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

// netstackUDP builds the stack c describes and a UDP socket bound to addr
// on it (zero addr: the first address, udp.DefaultPort). Closing the
// socket stops the stack and closes the device. r runs the stack's
// goroutines: the kernel PD of the shim's component; a board link's
// frames come from the ring of its driver's IP port (ds) that pd's
// component holds.
func netstackUDP(c netstackConfig, addr netip.AddrPort, pd *kernel.PD, ds drivers) (udp.Device, error) {
	cfg := netstack.Config{Runner: pd}
	for _, s := range c.Addrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("addrs: %w", err)
		}
		cfg.Addrs = append(cfg.Addrs, p)
	}
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("addrs: none given: %w", flow.ErrInvalid)
	}
	for _, g := range []struct {
		s   string
		dst *netip.Addr
	}{{c.Gateway4, &cfg.Gateway4}, {c.Gateway6, &cfg.Gateway6}} {
		if g.s == "" {
			continue
		}
		a, err := netip.ParseAddr(g.s)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		*g.dst = a
	}
	if !addr.IsValid() {
		addr = netip.AddrPortFrom(cfg.Addrs[0].Addr(), udp.DefaultPort)
	} else if addr.Port() == 0 {
		addr = netip.AddrPortFrom(addr.Addr(), udp.DefaultPort)
	}

	var dev eth.Device
	if c.Board != "" {
		if c.QEMUConnect != "" || c.QEMUListen != "" {
			return nil, fmt.Errorf("set one of board, qemu_connect and qemu_listen: %w", flow.ErrInvalid)
		}
		d, err := ds.openRing(c.Board, portIP, pd)
		if err != nil {
			return nil, err
		}
		dev = d
	} else {
		d, err := ethDevice(ethConfig{QEMUConnect: c.QEMUConnect, QEMUListen: c.QEMUListen, MAC: c.MAC})
		if err != nil {
			return nil, err
		}
		if d == nil {
			return nil, fmt.Errorf("set one of board, qemu_connect and qemu_listen: %w", flow.ErrInvalid)
		}
		dev = d
	}
	ns, err := netstack.New(dev, cfg)
	if err != nil {
		dev.Close()
		return nil, err
	}
	if err := ns.Start(); err != nil {
		ns.Stop()
		return nil, err
	}
	conn, err := ns.ListenUDP(addr)
	if err != nil {
		ns.Stop()
		return nil, err
	}
	return &stackConn{UDPConn: conn, ns: ns}, nil
}

// stackConn is a netstack socket that owns its stack.
type stackConn struct {
	*netstack.UDPConn
	ns *netstack.Stack
}

// Close closes the socket and stops the stack.
func (c *stackConn) Close() error {
	err := c.UDPConn.Close()
	c.ns.Stop()
	return err
}

// Ports of a board link's driver (netstack.Mux).
const (
	portShim = netstack.PortShim
	portIP   = netstack.PortIP
)
