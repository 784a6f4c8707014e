package flow

import (
	"context"
	"fmt"
	"time"
)

// SDU sizes. MaxSDU is the largest SDU a flow carries unless its layer
// says it carries more (Info.MaxSDU): what every layer carries by
// default. Headers of every layer below fit in a packet buffer's headroom
// (kernel.Headroom), so an SDU of this size fits one buffer whatever the
// recursion depth the headroom allows. A layer configured for larger
// SDUs (a UDP shim's max_sdu) carries up to MaxJumboSDU, in a node whose
// packet buffers it sized for them; MinSDU is the least a layer may be
// configured with.
const (
	MaxSDU      = 1400
	MaxJumboSDU = 65000
	MinSDU      = 576
)

// Port is one end of a flow as a provider hands it out: it moves whole
// SDUs, no more. The application's end sits under a Flow (which adds FRCT);
// an IPCP holds the other end. Ports are what an IRM passes to an IPCP and
// what a Broker returns to an application.
//
// Read and Write are safe for concurrent use with each other, and with
// Close; one reader and one writer at a time.
type Port interface {
	// Read blocks until an SDU arrives or the deadline passes (the zero
	// time means no deadline), copies it into p and returns its length.
	// An SDU longer than p is truncated: ErrTruncated with n = len(p).
	// After the other end closed and every SDU in flight was read: ErrClosed.
	Read(p []byte, deadline time.Time) (int, error)
	// Write copies p and queues it, blocking while the flow is full
	// (back-pressure) until the deadline. len(p) > MaxSDU is ErrTooBig.
	Write(p []byte, deadline time.Time) error
	// Close deallocates this end: the other end's Read returns ErrClosed
	// once it drained what was sent. Close is idempotent.
	Close() error
}

// BatchPort is a Port that also moves several SDUs per call, so that a
// data path pays one wake-up (and, over kernel rings, one ring operation)
// per batch instead of per SDU. It is optional: find it with a type
// assertion on a Port. The batch calls follow Read's and Write's rules;
// they are safe for concurrent use with Read, Write and Close, one reader
// and one writer at a time.
type BatchPort interface {
	Port
	// ReadBatch blocks until an SDU arrives or the deadline passes (the
	// zero time means no deadline), then copies SDUs that are ready, at
	// most len(bufs) and without blocking again, into bufs[i], sets
	// sizes[i] (len(sizes) >= len(bufs)) and returns how many. The
	// caller owns bufs. A truncated SDU ends the batch: it is the last
	// one counted, its size is len(bufs[n-1]) and the error wraps
	// ErrTruncated. Otherwise the error is non-nil only with n = 0, as
	// Read's (ErrTimeout, ErrClosed).
	ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error)
	// WriteBatch copies and queues sdus in order, blocking while the flow
	// is full (back-pressure) until the deadline, and returns how many it
	// queued; the caller keeps sdus. It stops at the first SDU it cannot
	// queue: n < len(sdus) comes with that SDU's error, as Write's
	// (ErrTooBig for sdus[n] alone; ErrTimeout, ErrClosed).
	WriteBatch(sdus [][]byte, deadline time.Time) (int, error)
}

// LendPort is a Port whose reader may take SDUs in the port's own
// buffers instead of copies of them: a shim's transmit loop then writes
// its header into the room in front of each SDU, seals it in place and
// sends it from there (the node's rings; docs/flow.md, "Copies"). It is
// optional: find it with a type assertion on a Port. One reader at a
// time, and not mixed with Read and ReadBatch.
type LendPort interface {
	Port
	// Lend blocks until an SDU arrives or the deadline passes (the zero
	// time means no deadline), then lends SDUs that are ready, at most
	// len(frames) and without blocking again: frames[i] is the i-th,
	// preceded by head bytes of room (frames[i][:head]: the caller's to
	// write, the SDU is frames[i][head:]) and with the buffer's room after
	// it (up to cap(frames[i])). It returns how many. The frames are the
	// caller's to change until Return, which must come before the next
	// Lend; then they are the port's again. head larger than the port's
	// headroom is ErrInvalid. The error is non-nil only with n = 0, as
	// Read's (ErrTimeout, ErrClosed).
	Lend(frames [][]byte, head int, deadline time.Time) (int, error)
	// Return gives back what the last Lend lent (nothing: a no-op).
	// It may come after Close.
	Return()
}

// InPlacePort is a Port whose SDUs a program can write and read where
// they lie in the memory it shares with its node, without the copy Write
// and Read make: a hosted program's flow over shared rings (ShmPort).
// From the program's data to the socket an SDU is then copied once in
// user space, by the node, which must copy what a program wrote before
// it acts on it; and once on its way in (docs/flow.md, "Copies"). It is
// optional: find it with a type assertion on a Port. One reader and one
// writer at a time, as Read's and Write's.
type InPlacePort interface {
	Port
	// WriteWith waits like Write for room, calls fill with n bytes of
	// the shared ring for it to write the SDU there, and sends it. fill
	// must not keep the slice or call WriteWith. n must be 1 to the
	// flow's SDU limit (else ErrTooBig).
	WriteWith(n int, fill func(sdu []byte), deadline time.Time) error
	// ReadWith waits like Read for an SDU and calls use with it where it
	// lies in the shared ring, then frees its place. use must not keep
	// the slice or call ReadWith.
	ReadWith(use func(sdu []byte), deadline time.Time) error
}

// Info describes an allocated flow, as the broker reports it.
type Info struct {
	ID     uint64 `cbor:"1,keyasint" json:"id"`     // the node's flow id
	Local  string `cbor:"2,keyasint" json:"local"`  // local name (the accepting name, or the allocating program)
	Remote string `cbor:"3,keyasint" json:"remote"` // remote name as allocated or as announced by the peer
	Layer  string `cbor:"4,keyasint" json:"layer"`  // the layer the flow runs in
	QoS    QoS    `cbor:"5,keyasint" json:"qos"`
	// MaxSDU is the largest SDU the flow's layer carries (a layer's own
	// header takes room in the layers below it); 0 means MaxSDU, more
	// only where the layer carries larger SDUs (up to MaxJumboSDU).
	MaxSDU int `cbor:"6,keyasint" json:"max_sdu,omitempty"`
	// Peer is the other end's verified node identity, on sealed flows
	// (nil otherwise: nothing proved who is there).
	Peer *Peer `cbor:"7,keyasint,omitempty" json:"peer,omitempty"`
}

// Peer is the verified identity of the node at the other end of a sealed
// flow: its key proved possession in the key exchange, and the rest is
// what its signed identity document says.
type Peer struct {
	Key         []byte `cbor:"1,keyasint" json:"key"`                   // ed25519 public key
	ID          string `cbor:"2,keyasint" json:"id"`                    // self-certifying name of Key
	Name        string `cbor:"3,keyasint" json:"name"`                  // the node's configured name
	Board       string `cbor:"4,keyasint" json:"board"`                 // "hosted", "usbarmory", ...
	Measurement []byte `cbor:"5,keyasint,omitempty" json:"measurement"` // the image it runs; nil: not measured

	// AEAD is what the flow is sealed with, as the key exchange
	// negotiated: "aes256gcm" or "chacha20poly1305".
	AEAD string `cbor:"6,keyasint,omitempty" json:"aead,omitempty"`
}

// String is the peer as one line: name, id and, if measured, the image;
// then the AEAD, if known.
func (p *Peer) String() string {
	if p == nil {
		return "unverified"
	}
	s := fmt.Sprintf("%s (%s, %s)", p.Name, p.ID, p.Board)
	if len(p.Measurement) > 0 {
		s += fmt.Sprintf(" image %x", p.Measurement)
	}
	if p.AEAD != "" {
		s += ", " + p.AEAD
	}
	return s
}

// SDULimit is the largest SDU a Port of this flow carries: MaxSDU, or
// what the layer said (at most MaxJumboSDU).
func (i Info) SDULimit() int {
	if i.MaxSDU > 0 {
		return min(i.MaxSDU, MaxJumboSDU)
	}
	return MaxSDU
}

// Broker is the IRM as an application sees it: it allocates ports.
// Implementations: the in-node broker (kernel endpoint to the IRM
// component, ports over kernel rings) and the hosted Unix-socket client.
type Broker interface {
	// Alloc allocates a flow to name with the given QoS and returns the
	// application's end. It blocks until the peer accepted or ctx ends.
	Alloc(ctx context.Context, name string, q QoS) (Port, Info, error)
	// Bind makes this program the acceptor for name: flows allocated to
	// name arrive through Accept. Registration of name in layers is the
	// broker's business (the IRM registers bound names as configured).
	Bind(ctx context.Context, name string) error
	// Unbind undoes Bind.
	Unbind(ctx context.Context, name string) error
	// Accept blocks until a flow to one of the bound names arrives.
	Accept(ctx context.Context) (Port, Info, error)
	// Join joins a broadcast layer; SDUs written reach every member.
	Join(ctx context.Context, layer string) (Port, Info, error)
	// Close releases the broker connection; ports it returned stay open.
	Close() error
}

// PeerBinder is a Broker that can bind a name for flows from chosen
// peers only: the node's IRM refuses (ErrRefused, at the allocating
// end) every flow to name whose verified peer (a sealed flow's
// Info.Peer) is not one of peers — node ids as `ouro id` prints them —
// and every unsealed one. Binding again changes the list; empty: any
// peer, as Bind.
type PeerBinder interface {
	BindPeers(ctx context.Context, name string, peers []string) error
}
