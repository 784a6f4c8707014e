package dir

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

func TestMsgRoundTrip(t *testing.T) {
	c := flow.NewCodec()
	key := layer.HashName(layer.SHA3_256, "echo")
	full := make([]layer.Addr, MaxValues)
	nodes := make([]layer.Addr, MaxNodes)
	for i := range full {
		full[i] = ^layer.Addr(i) // the widest encodings
	}
	for i := range nodes {
		nodes[i] = ^layer.Addr(i)
	}
	tests := []struct {
		name string
		m    Msg
	}{
		{"ping", Msg{Type: MsgPing, Cookie: 1}},
		{"find_node", Msg{Type: MsgFindNode, Cookie: 2, Key: key[:]}},
		{"nodes", Msg{Type: MsgNodes, Cookie: 3, Key: key[:], Nodes: []layer.Addr{1, 2, 3}}},
		{"store", Msg{Type: MsgStore, Cookie: ^uint64(0), Key: key[:], Values: []layer.Addr{7}, TTL: 3600}},
		{"largest", Msg{Type: MsgStore, Cookie: ^uint64(0), Key: key[:], Nodes: nodes, Values: full, TTL: ^uint32(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.m.Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(c, b)
			if err != nil {
				t.Fatal(err)
			}
			b2, _ := got.Encode(c)
			if !bytes.Equal(b, b2) {
				t.Errorf("got %x after a round trip, want %x", b2, b)
			}
			t.Logf("%s: %d bytes", tt.name, len(b))
		})
	}
}

func TestMsgInvalid(t *testing.T) {
	c := flow.NewCodec()
	key := make([]byte, layer.HashLen)
	tests := []struct {
		name string
		m    Msg
	}{
		{"type 0", Msg{Type: 0}},
		{"type 9", Msg{Type: 9, Key: key}},
		{"short key", Msg{Type: MsgFindNode, Key: key[:31]}},
		{"ping with key", Msg{Type: MsgPing, Key: key}},
		{"zero node", Msg{Type: MsgNodes, Key: key, Nodes: []layer.Addr{0}}},
		{"too many nodes", Msg{Type: MsgNodes, Key: key, Nodes: make([]layer.Addr, MaxNodes+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.m.Encode(c); !errors.Is(err, flow.ErrInvalid) {
				t.Errorf("encode: got %v, want ErrInvalid", err)
			}
			b, err := c.Marshal(&tt.m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(c, b); !errors.Is(err, flow.ErrInvalid) {
				t.Errorf("decode: got %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := Decode(c, make([]byte, 2000)); !errors.Is(err, flow.ErrTooBig) {
		t.Errorf("oversized: got %v, want ErrTooBig", err)
	}
}

func FuzzDecode(f *testing.F) {
	c := flow.NewCodec()
	key := layer.HashName(layer.SHA3_256, "x")
	for _, m := range []Msg{
		{Type: MsgPing, Cookie: 1},
		{Type: MsgValue, Cookie: 5, Key: key[:], Values: []layer.Addr{1, 1 << 40}},
		{Type: MsgStore, Cookie: 5, Key: key[:], Values: []layer.Addr{9}, TTL: 60},
	} {
		b, _ := m.Encode(c)
		f.Add(b)
	}
	f.Add([]byte{0x9f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(c, b)
		if err != nil {
			return
		}
		enc, err := m.Encode(c)
		if err != nil {
			t.Fatalf("decoded %+v, which does not encode: %v", m, err)
		}
		m2, err := Decode(c, enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if enc2, _ := m2.Encode(c); !bytes.Equal(enc, enc2) {
			t.Fatalf("not a fixed point: %x, %x", enc, enc2)
		}
	})
}
