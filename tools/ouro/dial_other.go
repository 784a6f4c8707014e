//go:build !linux

package main

import (
	"fmt"

	"github.com/ouronet/ouro/flow"
)

// dialSocket fails: the node socket protocol passes flows as file
// descriptors over a Linux SOCK_SEQPACKET socket.
func dialSocket(path string) (node, error) {
	return nil, fmt.Errorf("the node socket %s needs Linux: %w", path, flow.ErrInvalid)
}
