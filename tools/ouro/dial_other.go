//go:build !linux

package main

import (
	"fmt"
	"os"

	"github.com/ouronet/ouro/flow"
)

// defaultSocket is the node socket used without --socket (as
// flow.SocketPath computes it on Linux).
func defaultSocket() string {
	if p := os.Getenv("OURO_SOCKET"); p != "" {
		return p
	}
	return "/run/ouro/node.sock"
}

// dialSocket fails: the node socket protocol passes flows as file
// descriptors over a Linux SOCK_SEQPACKET socket. The UDP modes of ping,
// perf and echo work anywhere.
func dialSocket(path string) (node, error) {
	return nil, fmt.Errorf("the node socket %s needs Linux: %w", path, flow.ErrInvalid)
}
