package kernel

import "strconv"

// Rights is a set of access rights on a capability, with seL4's meaning.
type Rights uint8

// The rights. Read: receive on an endpoint, wait on a notification, pop
// from a ring. Write: send, signal, push. Grant: capabilities in a message
// sent over this cap are transferred. GrantReply: may Call (a reply cap is
// made for the receiver).
const (
	Read Rights = 1 << iota
	Write
	Grant
	GrantReply
)

// AllRights is every right.
const AllRights = Read | Write | Grant | GrantReply

// String returns the rights as four letters, "RWGC" with '-' for a missing
// right; C stands for GrantReply (may Call). AllRights is "RWGC".
func (r Rights) String() string {
	b := [4]byte{'-', '-', '-', '-'}
	for i, c := range [4]byte{'R', 'W', 'G', 'C'} {
		if r&(1<<i) != 0 {
			b[i] = c
		}
	}
	if r&^AllRights != 0 {
		return string(b[:]) + "+" + strconv.Itoa(int(r&^AllRights))
	}
	return string(b[:])
}

// ParseRights parses the String form ("RW--", "RWGC"); letters may also be
// given without dashes in any order ("RW", "rwg").
func ParseRights(s string) (Rights, error) {
	var r Rights
	for _, c := range s {
		switch c {
		case 'R', 'r':
			r |= Read
		case 'W', 'w':
			r |= Write
		case 'G', 'g':
			r |= Grant
		case 'C', 'c':
			r |= GrantReply
		case '-':
		default:
			return 0, &rightsError{s}
		}
	}
	return r, nil
}

type rightsError struct{ s string }

func (e *rightsError) Error() string { return "kernel: bad rights " + strconv.Quote(e.s) }

// Badge is an unforgeable value attached to a capability by Mint and
// delivered to the receiver of a message sent over it, or OR-ed into a
// notification word on Signal. 0 means unbadged.
type Badge uint64

// Cap names a slot in the holder's own CSpace: the slot's index and its
// generation, so that the number of a deleted cap stays invalid after the
// slot is reused. It means nothing in any other CSpace. 0 is the null cap
// and is never valid.
type Cap uint32

// Kind is the kind of object a capability refers to.
type Kind uint8

// Object kinds.
const (
	KindNone Kind = iota
	KindEndpoint
	KindNotification
	KindRing
	KindReply
	KindComponent
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindEndpoint:
		return "endpoint"
	case KindNotification:
		return "notification"
	case KindRing:
		return "ring"
	case KindReply:
		return "reply"
	case KindComponent:
		return "component"
	}
	return "none"
}

// CapInfo describes a capability, as returned by PD.Inspect.
type CapInfo struct {
	Kind    Kind
	Object  string // the object's name (generated for dynamic objects)
	Rights  Rights
	Badge   Badge
	Revoked bool // the slot holds a tombstone left by Revoke
	Closed  bool // a ring that either side has closed
}

// MarshalText encodes r in its String form, so descriptions in JSON or
// TOML read "RW--".
func (r Rights) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes the forms ParseRights accepts.
func (r *Rights) UnmarshalText(b []byte) error {
	v, err := ParseRights(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
