//go:build tamago && !ipstack_tcp

package ipstack

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/ouronet/ouro/flow"
)

// HasTCP reports whether this build of the stack has TCP: not this board
// image, built without the ipstack_tcp tag (ipstack_tcp.go).
const HasTCP = false

var transports = []stack.TransportProtocolFactory{udp.NewProtocol}

// tuneTCP has nothing to tune: no TCP.
func tuneTCP(*stack.Stack) error { return nil }

// errNoTCP is what Listen and Dial return in an image without TCP.
var errNoTCP = fmt.Errorf("ipstack: this image has no TCP (a board image has it when built for a configuration with a status page: make image CONFIG=..., or -tags ipstack_tcp): %w", flow.ErrInvalid)

// Listen fails: this image has no TCP.
func (s *Stack) Listen(port uint16) (net.Listener, error) {
	return nil, fmt.Errorf("ipstack: listen on port %d: %w", port, errNoTCP)
}

// Dial fails: this image has no TCP.
func (s *Stack) Dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return nil, fmt.Errorf("ipstack: dial %v: %w", addr, errNoTCP)
}
