package flow

import "errors"

// Errors returned by flow operations, wrapped with context. Test with errors.Is.
var (
	ErrNotFound  = errors.New("name not found")      // no layer reaches the name, or nobody serves it
	ErrRefused   = errors.New("flow refused")        // the peer or its IRM refused the flow
	ErrClosed    = errors.New("flow closed")         // the flow was deallocated (locally or by the peer)
	ErrTimeout   = errors.New("timed out")           // a deadline passed; also satisfies net.Error Timeout()
	ErrTooBig    = errors.New("SDU too big")         // a write larger than the flow's maximum SDU size
	ErrTruncated = errors.New("SDU truncated")       // a read buffer smaller than the SDU
	ErrInvalid   = errors.New("invalid argument")    // bad name, bad QoS, bad configuration
	ErrNoLayer   = errors.New("no such layer")       // Join/register in a layer the node does not have
	ErrPeerGone  = errors.New("peer vanished")       // the peer stopped answering (keepalive timeout)
	ErrExists    = errors.New("already exists")      // duplicate name, binding or registration
	ErrBusy      = errors.New("resources exhausted") // budgets or tables full
)
