package ipcptest

import (
	"context"
	"fmt"
	"github.com/ouronet/ouro/flow/flowtest"
	"sync"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
)

// Upcalls is a fake ipcp.Upcalls for testing IPCPs without an IRM. Each
// accepted FlowReq is recorded, answered with one end of a fresh Pipe, and
// the other end (the accepting program's) is delivered on Accepted.
//
// The zero value is not usable; use NewUpcalls. Safe for concurrent use.
type Upcalls struct {
	// Accepted receives the program's end of every flow FlowReq accepted.
	// FlowReq blocks (until its ctx ends) while Accepted is full.
	Accepted chan Accepted

	capacity int

	mu     sync.Mutex
	reqs   []ipcp.AllocReq // every request, accepted or not, in arrival order
	refuse error           // if non-nil, FlowReq fails with it
}

// Accepted is a flow the fake IRM accepted: the request and the accepting
// program's end of the flow.
type Accepted struct {
	Req  ipcp.AllocReq
	Port flow.Port
}

var _ ipcp.Upcalls = (*Upcalls)(nil)

// NewUpcalls returns a fake that accepts every flow request with a Pipe of
// the given capacity; Accepted buffers up to 16 flows.
func NewUpcalls(capacity int) *Upcalls {
	return &Upcalls{Accepted: make(chan Accepted, 16), capacity: capacity}
}

// Refuse makes later FlowReq calls fail with an error wrapping err (for
// example flow.ErrRefused or flow.ErrNotFound); Refuse(nil) accepts again.
func (u *Upcalls) Refuse(err error) {
	u.mu.Lock()
	u.refuse = err
	u.mu.Unlock()
}

// Requests returns a copy of every request FlowReq received, in order.
func (u *Upcalls) Requests() []ipcp.AllocReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]ipcp.AllocReq(nil), u.reqs...)
}

// FlowReq implements ipcp.Upcalls: it records req and, unless refusing,
// returns the IPCP's end of a new Pipe and sends the other end on Accepted.
func (u *Upcalls) FlowReq(ctx context.Context, req ipcp.AllocReq) (flow.Port, error) {
	u.mu.Lock()
	u.reqs = append(u.reqs, req)
	refuse := u.refuse
	u.mu.Unlock()
	if refuse != nil {
		return nil, fmt.Errorf("flowtest: flow request to %q: %w", req.Dst, refuse)
	}
	ipcpEnd, appEnd := flowtest.Pipe(u.capacity)
	select {
	case u.Accepted <- Accepted{Req: req, Port: appEnd}:
		return ipcpEnd, nil
	case <-ctx.Done():
		ipcpEnd.Close()
		appEnd.Close()
		return nil, fmt.Errorf("flowtest: flow request to %q: %w", req.Dst, ctx.Err())
	}
}
