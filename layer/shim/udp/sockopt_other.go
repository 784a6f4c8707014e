//go:build !linux

package udp

// socket is the kernel socket under the shim's device; this target has
// no options to set or counters to read (bare metal: a netstack socket).
type socket struct{}

func tuneSocket(Device, Config) (*socket, bufSizes, error) { return nil, bufSizes{}, nil }

func (s *socket) drops() (uint64, bool) { return 0, false }
