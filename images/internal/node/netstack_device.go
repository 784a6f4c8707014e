//go:build !tamago || netstack

// The node's own TCP/IP stack, for images that have it (ownstack.go):
// hosted, and board images built with the netstack tag.

package node

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/ipstack"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/udp"
)

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

// HasNetstack reports whether this image has the node's own TCP/IP stack:
// every hosted image, and board images built with the netstack tag.
const HasNetstack = true

// HasTCP reports whether the stack has TCP, which a status page needs:
// hosted images, and board images built with the ipstack_tcp tag too
// (images/internal/ipstack).
const HasTCP = ipstack.HasTCP

// newIPStack makes an [[ipnet]] bridge's own stack with address addr.
func newIPStack(addr netip.Prefix, mtu int) (ipStack, error) {
	st, err := ipstack.New(addr, mtu)
	if err != nil {
		return nil, err
	}
	return statusStack{st}, nil
}

// statusStack is an ipstack.Stack that serves the status page.
type statusStack struct{ *ipstack.Stack }

var _ ipStack = statusStack{}

func (s statusStack) serveStatus(pd *kernel.PD, port uint16, b *irm.Broker, log *slog.Logger) error {
	l, err := s.Listen(port)
	if err != nil {
		return err
	}
	ctx := pd.Context()
	pd.Go(func() {
		if err := status.Serve(ctx, l, b, 5*time.Second); err != nil {
			log.Warn("status page failed", "err", err)
		}
	})
	return nil
}
