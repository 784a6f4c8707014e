// Package ipcp is the contract between an IPC process and the node's IRM:
// the IPCP interface and its optional parts, the IRM's upcalls, the
// allocation request and result, and the management vocabulary (requests,
// answers, tables, paging) that the ouro tool, the IRM and every IPCP
// speak. It holds no mechanism and imports no kernel: layers see only
// package flow and this contract (docs/node.md).
package ipcp

import (
	"context"

	"github.com/ouronet/ouro/flow"
)

// IPCP is an IPC process as the IRM drives it: one member of one layer
// (a shim, a unicast or a broadcast IPCP). The IRM owns the flow ends it
// hands out; the IPCP moves SDUs between them and the layer.
//
// Methods may block on the network (Query, Alloc) and are called
// concurrently; implementations are safe for concurrent use.
type IPCP interface {
	// Info describes the IPCP.
	Info() Info
	// Register makes name reachable through this IPCP's layer (a directory
	// entry, a shim's name table, an answer to Ethernet name queries).
	Register(ctx context.Context, name string) error
	// Unregister withdraws name.
	Unregister(ctx context.Context, name string) error
	// Query reports whether name is reachable through this layer:
	// nil if so, an error wrapping flow.ErrNotFound if not.
	Query(ctx context.Context, name string) error
	// Alloc allocates a flow from src to dst over the layer. On success
	// port is the IPCP's end of the flow: what the application writes
	// comes out of port.Read, what the peer sends goes into port.Write.
	// The IPCP closes port when the peer deallocates or vanishes, and
	// signals deallocation to the peer when port.Read returns flow.ErrClosed.
	Alloc(ctx context.Context, req AllocReq, port flow.Port) error
}

// Info identifies an IPCP.
type Info struct {
	Name  string `cbor:"1,keyasint" json:"name"`  // the IPCP's own name, e.g. "node1.udp"
	Layer string `cbor:"2,keyasint" json:"layer"` // the layer it is a member of
	Kind  string `cbor:"3,keyasint" json:"kind"`  // "local", "udp", "eth", "serial", "unicast", "broadcast"
	State string `cbor:"4,keyasint" json:"state"` // "init", "operational", "shutdown"
}

// SDULimiter is an IPCP whose layer carries SDUs smaller than
// flow.MaxSDU (its header takes room in the layers below): the IRM tells
// both ends of its flows, so a Write too large fails at the writer
// instead of being dropped in the layer.
type SDULimiter interface {
	MaxSDU() int
}

// AllocReq is a flow allocation as the IRM passes it to an IPCP.
type AllocReq struct {
	ID  uint64   `cbor:"1,keyasint"` // the IRM's flow id
	Dst string   `cbor:"2,keyasint"` // destination name
	Src string   `cbor:"3,keyasint"` // source name (may be empty: anonymous)
	QoS flow.QoS `cbor:"4,keyasint"`
	// MaxSDU is the largest SDU the layer carries (0: flow.MaxSDU); set by
	// the IPCP's side on incoming flows.
	MaxSDU int `cbor:"5,keyasint"`
	// Peer is the requester's verified node identity, on an incoming
	// sealed flow (set by the IPCP; nil otherwise).
	Peer *flow.Peer `cbor:"6,keyasint,omitempty"`
}

// PeerAllocator is an IPCP that can seal flows: AllocPeer is Alloc that
// also returns the verified identity of the node that accepted a sealed
// flow (nil for an unsealed one) and the largest SDU the flow carries
// (0: the IPCP's MaxSDU), which sealing makes smaller.
type PeerAllocator interface {
	AllocPeer(ctx context.Context, req AllocReq, port flow.Port) (AllocResult, error)
}

// Upcalls is what an IPCP calls into the IRM for. The IRM gives each IPCP
// its own Upcalls when it adopts it.
type Upcalls interface {
	// FlowReq asks the IRM to accept an incoming flow to dst (a name this
	// IPCP registered). On success it returns the IPCP's end of the new
	// flow, connected to the accepting program. An error wrapping
	// flow.ErrNotFound or flow.ErrRefused is to be signalled to the peer.
	FlowReq(ctx context.Context, req AllocReq) (flow.Port, error)
}

// AllocResult is an IPCP's answer to an allocation (PeerAllocator) or a join, as the IRM's RPC carries it.
type AllocResult struct {
	_      struct{}   `cbor:",toarray"`
	MaxSDU int        // the largest SDU the flow carries; 0: flow.MaxSDU
	Peer   *flow.Peer // the accepting node's verified identity (sealed flows); nil: none
}

// Joiner is an IPCP of a broadcast layer: Join attaches port as a member.
type Joiner interface {
	Join(ctx context.Context, port flow.Port) error
}

// Manager is an IPCP with management commands of its own (bootstrap,
// enroll, connect, and its tables).
type Manager interface {
	Mgmt(ctx context.Context, req MgmtReq) (MgmtResp, error)
}
