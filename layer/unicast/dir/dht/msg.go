package dht

import (
	"fmt"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
)

// MsgType is the kind of a DHT message.
type MsgType uint8

// The DHT's messages (docs/layers-dir-broadcast.md). Requests carry a
// fresh cookie; a response echoes its request's cookie and is accepted
// only from the address the request went to.
const (
	MsgPing      MsgType = 1 // request: are you there → MsgPong
	MsgPong      MsgType = 2 // response to MsgPing
	MsgFindNode  MsgType = 3 // request: the K contacts closest to Key → MsgNodes
	MsgFindValue MsgType = 4 // request: the records of Key → MsgValue, or MsgNodes if none here
	MsgNodes     MsgType = 5 // response: Nodes, closest to Key first
	MsgValue     MsgType = 6 // response: Records of Key
	MsgStore     MsgType = 7 // request: hold Records under Key until they expire (a withdrawal removes its address) → MsgStored
	MsgStored    MsgType = 8 // response to MsgStore
)

// Limits on a message, checked on decode (beyond the codec's own).
const (
	// MaxNodes bounds the contacts of a MsgNodes (and Config.K).
	MaxNodes = 20
	// MaxValues bounds what one member stores or caches per name.
	MaxValues = 64
	// MaxRecords bounds the records of one message (a signed record is
	// about 125 bytes: 8 fit a dir.MaxMsg message).
	MaxRecords = 8
)

// Msg is a DHT message: a CBOR array, deterministic encoding. Key is a
// byte string of exactly layer.HashLen bytes (or empty for ping and pong);
// addresses are unsigned integers; Records (MsgStore and MsgValue only,
// at least one there) are signed registrations.
type Msg struct {
	_       struct{} `cbor:",toarray"`
	Type    MsgType
	Cookie  uint64
	Key     []byte
	Nodes   []layer.Addr
	Records []Record
}

// isRequest reports whether t asks for an answer.
func (t MsgType) isRequest() bool {
	return t == MsgPing || t == MsgFindNode || t == MsgFindValue || t == MsgStore
}

func (t MsgType) String() string {
	switch t {
	case MsgPing:
		return "ping"
	case MsgPong:
		return "pong"
	case MsgFindNode:
		return "find_node"
	case MsgFindValue:
		return "find_value"
	case MsgNodes:
		return "nodes"
	case MsgValue:
		return "value"
	case MsgStore:
		return "store"
	case MsgStored:
		return "stored"
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// hash returns Key as a layer.Hash (Validate checked its length).
func (m *Msg) hash() (h layer.Hash) {
	copy(h[:], m.Key)
	return h
}

// Validate checks what the codec cannot: the type, the key's length, the
// lists' bounds, and that no address is zero.
func (m *Msg) Validate() error {
	if m.Type < MsgPing || m.Type > MsgStored {
		return fmt.Errorf("dir: message type %d: %w", m.Type, flow.ErrInvalid)
	}
	needKey := m.Type != MsgPing && m.Type != MsgPong && m.Type != MsgStored
	if needKey && len(m.Key) != layer.HashLen || !needKey && len(m.Key) != 0 {
		return fmt.Errorf("dir: %v with a key of %d bytes: %w", m.Type, len(m.Key), flow.ErrInvalid)
	}
	if len(m.Nodes) > MaxNodes || len(m.Records) > MaxRecords {
		return fmt.Errorf("dir: %v with %d nodes, %d records: %w", m.Type, len(m.Nodes), len(m.Records), flow.ErrInvalid)
	}
	if withRecords := m.Type == MsgStore || m.Type == MsgValue; withRecords != (len(m.Records) > 0) {
		return fmt.Errorf("dir: %v with %d records: %w", m.Type, len(m.Records), flow.ErrInvalid)
	}
	for _, a := range m.Nodes {
		if a == 0 {
			return fmt.Errorf("dir: %v with a zero node address: %w", m.Type, flow.ErrInvalid)
		}
	}
	for i := range m.Records {
		if err := m.Records[i].check(); err != nil {
			return err
		}
	}
	return nil
}

// Encode returns m's wire form. More than dir.MaxMsg bytes is
// flow.ErrTooBig (the limits above keep every valid message under it).
func (m *Msg) Encode(c flow.Codec) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := c.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("dir: encode %v: %w", m.Type, err)
	}
	if len(b) > dir.MaxMsg {
		return nil, fmt.Errorf("dir: %v of %d bytes: %w", m.Type, len(b), flow.ErrTooBig)
	}
	return b, nil
}

// Decode parses and validates a message. b is not retained. Errors wrap
// flow.ErrInvalid or flow.ErrTooBig.
func Decode(c flow.Codec, b []byte) (*Msg, error) {
	if len(b) > dir.MaxMsg {
		return nil, fmt.Errorf("dir: message of %d bytes: %w", len(b), flow.ErrTooBig)
	}
	m := new(Msg)
	if err := c.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("dir: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}
