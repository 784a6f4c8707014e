package unicast

import (
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/fa"
)

// Reserved endpoint ids of a unicast layer: dt packets to an address with
// one of these EIDs carry the layer's own management traffic instead of a
// flow's SDUs. Flow endpoints are numbered above MaxReservedEID.
const (
	// EIDFlowAlloc carries flow-allocator messages (docs/wire/unicast.md).
	EIDFlowAlloc layer.EID = 1
	// EIDDir carries directory messages: whatever the directory policy
	// sends with dir.Env.Send arrives at the peer's Directory.Handle.
	EIDDir layer.EID = 2
	// EIDKeepalive marks a keepalive on an idle N-1 data-transfer flow:
	// it keeps the flow alive in the layer below (a shim expires idle
	// flows) and is dropped on arrival.
	EIDKeepalive layer.EID = 3
	// MaxReservedEID is the largest reserved endpoint id.
	MaxReservedEID layer.EID = 63
)

var _ fa.StaleHook = (*core)(nil)

// Stale implements fa.StaleHook: the flow allocator could not allocate
// h's flow at dst; the directory is told (dir.StaleWatcher).
func (c *core) Stale(h layer.Hash, dst layer.Addr) {
	if w, ok := c.dir.(dir.StaleWatcher); ok {
		w.Stale(h, dst)
	}
}
