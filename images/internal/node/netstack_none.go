//go:build tamago && !netstack

// A board image built without the netstack tag has no TCP/IP stack of its
// own (ownstack.go): gVisor is not linked. make image adds the tag for a
// configuration that uses the stack (router -image-tags); the router
// stops at start if its configuration needs it anyway, and an IPCP or
// bridge created at run time that needs it fails with errNoNetstack.

package node

import (
	"fmt"
	"net/netip"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/shim/udp"
)

// HasNetstack reports whether this image has the node's own TCP/IP stack:
// not this board image, built without the netstack tag.
const HasNetstack = false

// HasTCP reports whether the stack has TCP: there is no stack.
const HasTCP = false

// errNoNetstack is what needing the stack returns in an image without it.
var errNoNetstack = fmt.Errorf("this image has no TCP/IP stack of its own (a board image has it when built for a configuration that uses one: make image CONFIG=..., or -tags netstack): %w", flow.ErrInvalid)

// netstackUDP fails: this image has no stack.
func netstackUDP(c netstackConfig, addr netip.AddrPort, pd *kernel.PD, ds drivers) (udp.Device, error) {
	return nil, fmt.Errorf("netstack %v: %w", c.Addrs, errNoNetstack)
}

// newIPStack fails: this image has no stack.
func newIPStack(addr netip.Prefix, mtu int) (ipStack, error) {
	return nil, fmt.Errorf("netstack %v: %w", addr, errNoNetstack)
}
