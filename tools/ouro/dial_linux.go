package main

import "github.com/ouronet/ouro/flow"

// defaultSocket is the node socket used without --socket.
func defaultSocket() string { return flow.SocketPath() }

// dialSocket opens a session with the hosted node at path.
func dialSocket(path string) (node, error) {
	b, err := flow.Dial(path)
	if err != nil {
		return nil, err
	}
	return b, nil
}
