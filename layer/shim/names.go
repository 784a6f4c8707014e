package shim

import (
	"fmt"
	"sync"

	"github.com/ouronet/ouro/flow"
)

// Names are the names registered in a shim IPCP that keeps them by name
// (the local, diode and carrier shims; udp and eth keep hashes in their
// engine): what ipcp.IPCP's Register and Unregister change. The zero
// value is empty and ready; safe for concurrent use.
type Names struct {
	mu sync.Mutex
	m  map[string]bool
}

// Register adds name; kind prefixes the errors ("local", ...).
func (n *Names) Register(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s: register: empty name: %w", kind, flow.ErrInvalid)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m[name] {
		return fmt.Errorf("%s: register %q: %w", kind, name, flow.ErrExists)
	}
	if n.m == nil {
		n.m = make(map[string]bool)
	}
	n.m[name] = true
	return nil
}

// Unregister removes name.
func (n *Names) Unregister(kind, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.m[name] {
		return fmt.Errorf("%s: unregister %q: %w", kind, name, flow.ErrNotFound)
	}
	delete(n.m, name)
	return nil
}

// Has reports whether name is registered.
func (n *Names) Has(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[name]
}
