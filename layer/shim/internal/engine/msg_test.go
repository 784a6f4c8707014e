package engine

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMsgRoundTrip(t *testing.T) {
	h := layer.HashName(layer.SHA3_256, "srv")
	for _, m := range []Msg{
		{Type: MsgAllocReq, ReqID: 1 << 40, Src: 7, Hash: h[:], QoS: flow.Voice()},
		{Type: MsgAllocResp, ReqID: 3, Src: 9, Dst: 7, Result: ResOK},
		{Type: MsgAllocResp, ReqID: 3, Dst: 7, Result: ResRefused},
		{Type: MsgDealloc, Src: 9, Dst: 7},
		{Type: MsgNoSuchFlow, Src: 12},
		{Type: MsgNameQuery, Hash: h[:]},
		{Type: MsgNameReply, Hash: h[:]},
	} {
		b, err := EncodeMsg(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeMsg(b)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		b2, _ := EncodeMsg(nil, &got)
		if !bytes.Equal(b, b2) {
			t.Fatalf("type %d: re-encoding differs: %x vs %x", m.Type, b, b2)
		}
	}
}

// TestMsgEncoding pins the wire bytes documented in docs/wire/shims.md.
func TestMsgEncoding(t *testing.T) {
	b, err := EncodeMsg(nil, &Msg{Type: MsgDealloc, Src: 9, Dst: 7})
	if err != nil {
		t.Fatal(err)
	}
	// [3, 0, 9, 7, 0, h'', {1: 0, ..., 6: false, 7: 0, 8: 0}]
	if got, want := hex.EncodeToString(b), "870300090700"+"40"+"a8010002000300040005000"+"6f4"+"07000800"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestMsgRejects(t *testing.T) {
	h := layer.HashName(layer.SHA3_256, "srv")
	enc := func(m Msg) []byte { b, _ := EncodeMsg(nil, &m); return b }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not an array", []byte{0x01}},
		{"short array", []byte{0x82, 0x01, 0x00}},
		{"unknown type", enc(Msg{Type: 9})},
		{"type zero", enc(Msg{})},
		{"short hash", enc(Msg{Type: MsgNameQuery, Hash: h[:5]})},
		{"query without hash", enc(Msg{Type: MsgNameQuery})},
		{"request from eid 0", enc(Msg{Type: MsgAllocReq, Hash: h[:]})},
		{"response to eid 0", enc(Msg{Type: MsgAllocResp, Src: 3})},
		{"too long", append(enc(Msg{Type: MsgDealloc}), make([]byte, MaxMsgLen)...)},
		{"indefinite array", []byte{0x9f, 0x03, 0xff}},
		{"deep nesting", bytes.Repeat([]byte{0x81}, 40)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeMsg(tc.b); !errors.Is(err, errMalformed) {
				t.Fatalf("got %v, want a malformed message error", err)
			}
		})
	}
}

func TestResultMapping(t *testing.T) {
	for _, e := range []error{flow.ErrNotFound, flow.ErrRefused, flow.ErrBusy} {
		if got := errOf(resultOf(e)); got != e {
			t.Errorf("%v maps back to %v", e, got)
		}
	}
	if errOf(resultOf(errors.New("other"))) != flow.ErrRefused {
		t.Error("an unknown error is not a refusal")
	}
}

func FuzzDecodeMsg(f *testing.F) {
	h := layer.HashName(layer.SHA3_256, "x")
	for _, m := range []Msg{
		{Type: MsgAllocReq, ReqID: 1, Src: 7, Hash: h[:], QoS: flow.Data()},
		{Type: MsgAllocResp, ReqID: 1, Src: 9, Dst: 7},
		{Type: MsgNameQuery, Hash: h[:]},
	} {
		b, _ := EncodeMsg(nil, &m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMsg(b)
		if err != nil {
			return
		}
		// What decodes re-encodes and decodes to the same message.
		b2, err := EncodeMsg(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeMsg(b2)
		if err != nil {
			t.Fatalf("re-encoded message rejected: %v", err)
		}
		b3, _ := EncodeMsg(nil, &m2)
		if !bytes.Equal(b2, b3) {
			t.Fatal("encoding not stable")
		}
	})
}

// Key-exchange pieces round-trip, and a Msg is never taken for one (nor
// the other way round).
func TestKexMsg(t *testing.T) {
	m := KexMsg{Type: MsgKex, ReqID: 3, Src: 7, Step: StepHello, Part: 1, Parts: 3, Data: bytes.Repeat([]byte{9}, KexChunk)}
	b, err := EncodeKex(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !IsKex(b) || len(b) > MaxKexLen {
		t.Fatalf("encoding %x... of %d bytes", b[:4], len(b))
	}
	got, err := DecodeKex(b)
	if err != nil || got.ReqID != 3 || got.Part != 1 || !bytes.Equal(got.Data, m.Data) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := DecodeMsg(b); err == nil {
		t.Fatal("a key exchange piece decoded as a Msg")
	}
	h := layer.HashName(layer.SHA3_256, "x")
	mb, _ := EncodeMsg(nil, &Msg{Type: MsgAllocReq, ReqID: 1, Src: 7, Hash: h[:]})
	if IsKex(mb) {
		t.Fatal("a Msg taken for a key exchange piece")
	}
	for name, bad := range map[string]KexMsg{
		"no parts":         {Type: MsgKex, Src: 7, Step: StepHello, Data: []byte{1}},
		"part beyond":      {Type: MsgKex, Src: 7, Step: StepHello, Part: 2, Parts: 2, Data: []byte{1}},
		"too many parts":   {Type: MsgKex, Src: 7, Step: StepHello, Parts: 6, Data: []byte{1}},
		"empty":            {Type: MsgKex, Src: 7, Step: StepHello, Parts: 1},
		"piece too big":    {Type: MsgKex, Src: 7, Step: StepHello, Parts: 1, Data: make([]byte, KexChunk+1)},
		"hello from eid 0": {Type: MsgKex, Step: StepHello, Parts: 1, Data: []byte{1}},
		"reply to eid 0":   {Type: MsgKex, Src: 7, Step: StepReply, Parts: 1, Data: []byte{1}},
		"unknown step":     {Type: MsgKex, Src: 7, Dst: 7, Step: 7, Parts: 1, Data: []byte{1}},
		"wrong type":       {Type: MsgAllocReq, Src: 7, Step: StepHello, Parts: 1, Data: []byte{1}},
	} {
		b, _ := EncodeKex(nil, &bad)
		if _, err := DecodeKex(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeKex(f *testing.F) {
	for _, m := range []KexMsg{
		{Type: MsgKex, ReqID: 1, Src: 7, Step: StepHello, Part: 0, Parts: 3, Data: make([]byte, KexChunk)},
		{Type: MsgKex, ReqID: 1, Dst: 7, Step: StepReply, Part: 1, Parts: 2, Data: []byte{1, 2, 3}},
		{Type: MsgKex, ReqID: 1, Src: 7, Step: StepFinish, Parts: 1, Data: []byte{1}},
	} {
		b, _ := EncodeKex(nil, &m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeKex(b)
		if err != nil {
			return
		}
		if m.Part >= m.Parts || len(m.Data) == 0 || len(m.Data) > KexChunk {
			t.Fatalf("accepted %+v", m)
		}
		b2, err := EncodeKex(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeKex(b2)
		if err != nil {
			t.Fatalf("re-encoded piece rejected: %v", err)
		}
		if b3, _ := EncodeKex(nil, &m2); !bytes.Equal(b2, b3) {
			t.Fatal("encoding not stable")
		}
	})
}
