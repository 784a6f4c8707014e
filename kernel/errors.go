package kernel

import "errors"

// The closed set of errors the kernel returns. Errors are wrapped with
// context (which verb, which cap); test them with errors.Is. ErrWouldBlock
// is returned unwrapped so that polling loops do not allocate.
var (
	// ErrInvalidCap: the slot is empty, out of range, stale (the cap was
	// deleted, even if the slot was reused since), or holds a cap of the
	// wrong kind for the verb.
	ErrInvalidCap = errors.New("invalid capability")
	// ErrRights: the cap lacks a right the verb needs.
	ErrRights = errors.New("insufficient rights")
	// ErrRevoked: the cap was removed by a Revoke of an ancestor; the slot
	// keeps a tombstone until deleted.
	ErrRevoked = errors.New("capability revoked")
	// ErrAborted: the component on the other side died (or the call's reply
	// cap was deleted), the endpoint or notification was destroyed (its
	// last cap deleted), the calling component itself was stopped, or a
	// Restart gave up waiting for the old incarnation's goroutines.
	ErrAborted = errors.New("operation aborted")
	// ErrTruncated: the receive buffer was too small (what fits was
	// delivered) or a payload exceeds MaxPayload.
	ErrTruncated = errors.New("message truncated")
	// ErrNoBudget: the component's buffer, byte-rate, object or slot budget
	// is exhausted, or, on a push, the budget of the ring's creator or the
	// ring's own byte rate.
	ErrNoBudget = errors.New("budget exhausted")
	// ErrClosed: the ring was closed (and drained), or the kernel stopped.
	ErrClosed = errors.New("closed")
	// ErrWouldBlock: a non-blocking verb had nothing to do (NBSend dropped
	// its message, NBRecv/Poll/Pop found nothing, Push found no room).
	ErrWouldBlock = errors.New("would block")
)
