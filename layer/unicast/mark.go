package unicast

import (
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast/dt"
)

// Congestion marking in the data path (ca.MarkECN; docs/layers.md, ca):
// the transmit loop marks what leaves each N-1 port's queue.

// queuedPort is an N-1 port that says how much of what was written to it
// waits in the layer below (the node's ring port, irm.RingPort): the forwarder marks by it too
// (dt.Scheduler.SetBelow).
type queuedPort interface {
	Queued() int
}

// mark raises the ECN of each packet of a batch leaving np's queue by the
// queue's standing depth (with what waits below it) against its capacity
// (with the most that ever waited below: the lower ring's). Marking as
// packets leave, not as they join, tells the receivers what the queue is
// now, not what it was a queue's delay ago.
func (c *core) mark(np *nport, batch []*pbuf, below int) {
	var lvl [flow.NumCubes]int16
	for i := range lvl {
		lvl[i] = -1
	}
	now := time.Now().UnixNano()
	for _, b := range batch {
		pci := dt.PCI(b.pkt())
		cube := pci.Cube()
		if cube >= flow.NumCubes {
			continue
		}
		if lvl[cube] < 0 {
			lvl[cube] = int16(c.ca.MarkECN(np.sched.Standing(cube, now, c.ca.Interval()), np.sched.Cap()+below))
		}
		if lvl[cube] > 0 {
			pci.RaiseECN(uint8(lvl[cube]))
		}
	}
}
