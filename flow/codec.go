package flow

import (
	"context"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/kernel"
)

// MaxControlMsg bounds an encoded control message.
const MaxControlMsg = 64 << 10

// WireError is an error as it crosses a process boundary: a code for the
// sentinel it wraps and the message.
type WireError struct {
	_    struct{} `cbor:",toarray"`
	Code uint16
	Msg  string
}

// wireSentinels are the errors that keep their identity across component
// and process boundaries; the code is the index+1. Append only.
var wireSentinels = [...]error{
	ErrNotFound, ErrRefused, ErrClosed, ErrTimeout, ErrTooBig, ErrTruncated,
	ErrInvalid, ErrNoLayer, ErrPeerGone, ErrExists, ErrBusy,
	kernel.ErrInvalidCap, kernel.ErrRights, kernel.ErrRevoked, kernel.ErrAborted,
	kernel.ErrTruncated, kernel.ErrNoBudget, kernel.ErrClosed,
	context.DeadlineExceeded, context.Canceled,
}

// EncodeError turns err into its wire form; nil is the zero WireError.
func EncodeError(err error) WireError {
	if err == nil {
		return WireError{}
	}
	for i, s := range wireSentinels {
		if errors.Is(err, s) {
			return WireError{Code: uint16(i + 1), Msg: err.Error()}
		}
	}
	return WireError{Code: 0xffff, Msg: err.Error()}
}

// Err turns the wire form back into an error that wraps the same
// sentinel; the zero WireError is nil.
func (w WireError) Err() error {
	if w.Code == 0 && w.Msg == "" {
		return nil
	}
	if w.Code >= 1 && int(w.Code) <= len(wireSentinels) {
		return &remoteErr{msg: w.Msg, sentinel: wireSentinels[w.Code-1]}
	}
	return &remoteErr{msg: w.Msg}
}

type remoteErr struct {
	msg      string
	sentinel error
}

func (e *remoteErr) Error() string { return e.msg }
func (e *remoteErr) Unwrap() error { return e.sentinel }

// Timeout lets a remote ErrTimeout satisfy net.Error.
func (e *remoteErr) Timeout() bool { return e.sentinel == ErrTimeout }

// Codec encodes and decodes control messages (the node socket, calls
// between components): deterministic CBOR, decode limits set.
type Codec struct {
	enc cbor.EncMode
	dec cbor.DecMode
}

// NewCodec returns the project's control-message codec.
func NewCodec() Codec {
	enc, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err) // static options
	}
	dec, err := cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 4096,
		MaxMapPairs:      1024,
		IndefLength:      cbor.IndefLengthForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return Codec{enc: enc, dec: dec}
}

// Marshal encodes v.
func (c Codec) Marshal(v any) ([]byte, error) {
	b, err := c.enc.Marshal(v)
	if err == nil && len(b) > MaxControlMsg {
		return nil, fmt.Errorf("flow: control message of %d bytes: %w", len(b), ErrTooBig)
	}
	return b, err
}

// Unmarshal decodes data into v.
func (c Codec) Unmarshal(data []byte, v any) error {
	if len(data) > MaxControlMsg {
		return fmt.Errorf("flow: control message of %d bytes: %w", len(data), ErrTooBig)
	}
	if err := c.dec.Unmarshal(data, v); err != nil {
		return fmt.Errorf("flow: decode control message: %w: %w", ErrInvalid, err)
	}
	return nil
}
