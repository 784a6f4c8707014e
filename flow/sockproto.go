package flow

import "github.com/fxamacker/cbor/v2"

// The node socket protocol. A hosted node listens on a Unix
// SOCK_SEQPACKET socket; a program opens one control connection (a
// session) and sends SockReq messages on it. The node answers each with a
// SockResp carrying the same ID; a response that hands over a flow
// carries, as SCM_RIGHTS ancillary data, one end of a fresh
// SOCK_SEQPACKET socket pair: every message on it is one SDU. Closing it
// deallocates the flow. Incoming flows for bound names arrive as SockResp
// with the ID of the pending Accept. A program that announced
// SockFeatureShm (SockHello) gets, after that socket, a sealed memfd and
// four eventfds: the flow's SDUs travel through shared-memory rings
// (flow/shmring) and the socket only tells either side that the other
// closed or died. The format is in docs/wire/node-socket.md.

// Socket operations.
const (
	SockAlloc  uint8 = 1 // Name, QoS → a flow
	SockBind   uint8 = 2 // Name; Body, if set: the peers whose flows it takes ([]string, PeerBinder)
	SockUnbind uint8 = 3 // Name
	SockAccept uint8 = 4 // → a flow, when one arrives
	SockJoin   uint8 = 5 // Layer → a flow
	SockMgmt   uint8 = 6 // Body: a management request → Body: its result
	SockHello  uint8 = 7 // Body: the features the program speaks (uint) → Body: those the node grants
)

// Features a program announces with SockHello. A node that predates
// SockHello answers it ErrInvalid and hands every flow over as a socket;
// a program that does not announce a feature never sees it.
const (
	// SockFeatureShm: hand flows over as shared-memory rings (a memfd and
	// four eventfds after the flow's socket) when the session's budget
	// allows; otherwise, or without it, as a SOCK_SEQPACKET socket.
	SockFeatureShm uint64 = 1
	// SockFeatureKeep, with SockFeatureShm: a flow's rings outlive the
	// flow, for the program's next flows. The program keeps the rings of
	// a flow it closes (at most MaxKept), lists their numbers in the Body
	// of its next Alloc, Join or Accept ([]uint64), and the node answers
	// the flow with one of them (its number in the Body, uint64, and the
	// flow's socket the only descriptor), or with new rings (their number
	// in the Body, and the memfd and eventfds as without the feature).
	// The node keeps a flow's rings only once the program closed the
	// flow's socket, and only for that program's session.
	SockFeatureKeep uint64 = 2
)

// MaxKept bounds the rings a program keeps, and lists in a request.
const MaxKept = 4

// SockReq is a request on the node socket's control connection.
type SockReq struct {
	_     struct{} `cbor:",toarray"`
	ID    uint64
	Op    uint8
	Name  string
	QoS   QoS
	Layer string
	Body  cbor.RawMessage
}

// SockResp answers a SockReq.
type SockResp struct {
	_    struct{} `cbor:",toarray"`
	ID   uint64
	Err  WireError
	Info Info
	Body cbor.RawMessage
}
