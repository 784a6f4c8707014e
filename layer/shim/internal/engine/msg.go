package engine

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/crypto/sealflow"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// MsgType is the kind of a control message.
type MsgType uint8

// The control message types (docs/wire/shims.md).
const (
	MsgAllocReq   MsgType = 1 // allocate a flow to the name with hash Hash; Src = requester's eid
	MsgAllocResp  MsgType = 2 // answer to MsgAllocReq; Src = responder's eid, Dst = requester's eid
	MsgDealloc    MsgType = 3 // the flow Src (sender) -> Dst (receiver) is gone
	MsgNoSuchFlow MsgType = 4 // data arrived for eid Src of the sender, which it does not have
	MsgNameQuery  MsgType = 5 // who holds the name with hash Hash? (eth: broadcast)
	MsgNameReply  MsgType = 6 // the sender holds the name with hash Hash
	MsgKex        MsgType = 7 // a piece of a sealed allocation's key exchange (KexMsg, its own shape)
)

// Result is the outcome of an allocation in MsgAllocResp.
type Result uint8

// The allocation results. They map to and from flow errors.
const (
	ResOK       Result = 0
	ResNotFound Result = 1 // flow.ErrNotFound: the name is not registered here
	ResRefused  Result = 2 // flow.ErrRefused: the IRM or the application refused
	ResBusy     Result = 3 // flow.ErrBusy: too many allocations in progress, or no endpoint ids left
)

// MaxMsgLen bounds an encoded control message; longer ones are malformed
// without being decoded (the decoder has no byte-string length limit of
// its own, so this is it).
const MaxMsgLen = 256

// Msg is a control message: one fixed-shape CBOR array
// [type, req_id, src_eid, dst_eid, result, hash, qos]. Fields a type does
// not use are zero (hash: empty byte string).
type Msg struct {
	_      struct{} `cbor:",toarray"`
	Type   MsgType
	ReqID  uint64
	Src    uint32
	Dst    uint32
	Result Result
	Hash   []byte // empty or layer.HashLen bytes
	QoS    flow.QoS
}

// The codec modes are immutable after package initialisation.
var (
	encMode = mustEnc()
	decMode = mustDec()
)

func mustEnc() cbor.EncMode {
	o := cbor.CoreDetEncOptions()
	o.NilContainers = cbor.NilContainerAsEmpty // no hash: an empty byte string, not null
	m, err := o.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}

func mustDec() cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  4,
		MaxArrayElements: 16,
		MaxMapPairs:      16,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

var errMalformed = errors.New("malformed control message")

// EncodeMsg appends the encoding of m to dst.
func EncodeMsg(dst []byte, m *Msg) ([]byte, error) {
	b, err := encMode.Marshal(m)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// DecodeMsg decodes and validates a control message.
func DecodeMsg(b []byte) (Msg, error) {
	var m Msg
	if len(b) > MaxMsgLen {
		return m, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	if err := decMode.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if m.Type < MsgAllocReq || m.Type > MsgNameReply {
		return m, fmt.Errorf("%w: type %d", errMalformed, m.Type)
	}
	if len(m.Hash) != 0 && len(m.Hash) != layer.HashLen {
		return m, fmt.Errorf("%w: hash of %d bytes", errMalformed, len(m.Hash))
	}
	switch m.Type {
	case MsgAllocReq, MsgNameQuery, MsgNameReply:
		if len(m.Hash) != layer.HashLen {
			return m, fmt.Errorf("%w: type %d without a name hash", errMalformed, m.Type)
		}
	}
	if m.Type == MsgAllocReq && m.Src == 0 {
		return m, fmt.Errorf("%w: alloc request from eid 0", errMalformed)
	}
	if m.Type == MsgAllocResp && (m.Dst == 0 || (m.Result == ResOK && m.Src == 0)) {
		return m, fmt.Errorf("%w: alloc response without endpoint ids", errMalformed)
	}
	return m, nil
}

// The steps of a sealed allocation's key exchange (crypto/kex) that a
// KexMsg carries a piece of.
const (
	StepHello  uint8 = 1 // requester → responder; Src = requester's eid
	StepReply  uint8 = 2 // responder → requester; Dst = requester's eid
	StepFinish uint8 = 3 // requester → responder; Src = requester's eid
	// Resumption from a ticket (crypto/kex, resume.go).
	StepResume      uint8 = 4 // requester → responder: a ResumeHello; Src = requester's eid
	StepResumeReply uint8 = 5 // responder → requester: the ResumeReply; Dst = requester's eid
	StepNoTicket    uint8 = 6 // responder → requester: no such ticket here, make the full exchange; Dst = requester's eid
)

// KexChunk is the largest piece of a key-exchange message one KexMsg
// carries: with the headers it stays well within an Ethernet frame. A
// Hello is 1.4 kB with a short identity document and 1.9 kB with the
// largest (kex.MaxHello bounds it at 3 kB), a Reply about as much: more
// than a 1500-byte frame carries (docs/wire/shims.md, "Sealed
// allocation").
const KexChunk = 1024

// MaxKexLen bounds an encoded KexMsg; longer ones are malformed without
// being decoded.
const MaxKexLen = KexChunk + 64

// KexMsg is a piece of a key-exchange message: one fixed-shape CBOR array
// of eight elements [type = 7, req_id, src_eid, dst_eid, step, part,
// parts, data]. A Msg is an array of seven, so the first byte (0x88
// against 0x87) tells the two apart before decoding.
type KexMsg struct {
	_     struct{} `cbor:",toarray"`
	Type  MsgType
	ReqID uint64
	Src   uint32
	Dst   uint32
	Step  uint8
	Part  uint8
	Parts uint8
	Data  []byte
}

// kexHead is the first byte of an encoded KexMsg (a CBOR array of 8).
const kexHead = 0x88

// IsKex reports whether the control payload b is a KexMsg.
func IsKex(b []byte) bool { return len(b) > 0 && b[0] == kexHead }

// EncodeKex appends the encoding of m to dst.
func EncodeKex(dst []byte, m *KexMsg) ([]byte, error) {
	b, err := encMode.Marshal(m)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// DecodeKex decodes and validates a KexMsg.
func DecodeKex(b []byte) (KexMsg, error) {
	var m KexMsg
	if len(b) > MaxKexLen {
		return m, fmt.Errorf("%w: key exchange piece of %d bytes", errMalformed, len(b))
	}
	if !IsKex(b) {
		return m, fmt.Errorf("%w: not a key exchange piece", errMalformed)
	}
	if err := decMode.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %v", errMalformed, err)
	}
	switch {
	case m.Type != MsgKex:
		return m, fmt.Errorf("%w: key exchange piece of type %d", errMalformed, m.Type)
	case m.Parts == 0 || m.Parts > sealflow.MaxParts || m.Part >= m.Parts:
		return m, fmt.Errorf("%w: key exchange piece %d of %d", errMalformed, m.Part, m.Parts)
	case len(m.Data) == 0 || len(m.Data) > KexChunk:
		return m, fmt.Errorf("%w: key exchange piece of %d bytes", errMalformed, len(m.Data))
	}
	switch m.Step {
	case StepHello, StepFinish, StepResume:
		if m.Src == 0 {
			return m, fmt.Errorf("%w: key exchange from eid 0", errMalformed)
		}
	case StepReply, StepResumeReply, StepNoTicket:
		if m.Dst == 0 {
			return m, fmt.Errorf("%w: key exchange reply to eid 0", errMalformed)
		}
	default:
		return m, fmt.Errorf("%w: key exchange step %d", errMalformed, m.Step)
	}
	return m, nil
}

// resultOf maps an upcall error to the result signalled to the peer.
func resultOf(err error) Result {
	switch {
	case err == nil:
		return ResOK
	case errors.Is(err, flow.ErrNotFound):
		return ResNotFound
	case errors.Is(err, flow.ErrBusy):
		return ResBusy
	}
	return ResRefused
}

// errOf maps a result from the peer back to a flow error.
func errOf(r Result) error {
	switch r {
	case ResOK:
		return nil
	case ResNotFound:
		return flow.ErrNotFound
	case ResBusy:
		return flow.ErrBusy
	}
	return flow.ErrRefused
}
