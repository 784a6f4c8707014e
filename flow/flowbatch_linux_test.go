package flow_test

import (
	"testing"

	"github.com/ouronet/ouro/flow"
)

func init() {
	// A hosted program's two transports: shared rings (a batch port)
	// and the socket a node hands an old program (one SDU per read).
	flowPorts["Shm"] = func(t *testing.T) (flow.Port, flow.Port) { return flow.ShmPair(t, 16) }
	flowPorts["Seqpacket"] = func(t *testing.T) (flow.Port, flow.Port) { return seqpacketPair(t) }
}
