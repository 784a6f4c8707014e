package layer

import (
	"fmt"

	"github.com/ouronet/ouro/flow"
)

// Runner starts the goroutines of the component an IPCP (or a part of one)
// runs in. In a node it is the component's *kernel.PD: a panic in f is a
// fault of that component, reported to its supervisor and restarted, never
// a crash of the node. f must return once the IPCP is stopped.
type Runner interface{ Go(f func()) }

// NeedRunner returns the error every constructor returns for a nil Runner:
// who names the IPCP or part (for example "udp: r.udp").
func NeedRunner(who string) error {
	return fmt.Errorf("%s: config needs a Runner (the component's kernel PD; layertest.Runner in tests): %w", who, flow.ErrInvalid)
}
