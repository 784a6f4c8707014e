package dht

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

func TestMsgRoundTrip(t *testing.T) {
	c := flow.NewCodec()
	key := layer.HashName(layer.SHA3_256, "echo")
	full := make([]Record, MaxRecords)
	nodes := make([]layer.Addr, MaxNodes)
	for i := range full {
		full[i] = Record{Addr: ^layer.Addr(i), Key: make([]byte, 32), Seq: ^uint64(i), TTL: ^uint32(i), Sig: make([]byte, 64)} // the widest encodings
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
		{"store", Msg{Type: MsgStore, Cookie: ^uint64(0), Key: key[:], Records: full[:1]}},
		{"largest nodes", Msg{Type: MsgNodes, Cookie: ^uint64(0), Key: key[:], Nodes: nodes}},
		{"largest records", Msg{Type: MsgValue, Cookie: ^uint64(0), Key: key[:], Records: full}},
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
	rec := Record{Addr: 1, Key: make([]byte, 32), Seq: 1, TTL: 1, Sig: make([]byte, 64)}
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
		{"store without records", Msg{Type: MsgStore, Key: key}},
		{"records in nodes", Msg{Type: MsgNodes, Key: key, Records: []Record{rec}}},
		{"too many records", Msg{Type: MsgValue, Key: key, Records: slices.Repeat([]Record{rec}, MaxRecords+1)}},
		{"record of address 0", Msg{Type: MsgValue, Key: key, Records: []Record{{Key: rec.Key, Sig: rec.Sig}}}},
		{"record with a short key", Msg{Type: MsgValue, Key: key, Records: []Record{{Addr: 1, Key: rec.Key[:31], Sig: rec.Sig}}}},
		{"record without signature", Msg{Type: MsgValue, Key: key, Records: []Record{{Addr: 1, Key: rec.Key}}}},
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
		{Type: MsgValue, Cookie: 5, Key: key[:], Records: []Record{{Addr: 1, Key: make([]byte, 32), Seq: 3, TTL: 1 << 30, Sig: make([]byte, 64)}}},
		{Type: MsgStore, Cookie: 5, Key: key[:], Records: []Record{{Addr: 9, Key: make([]byte, 32), Sig: make([]byte, 64)}}},
		{Type: MsgStore, Cookie: 6, Key: key[:], Records: []Record{{Addr: 9, Key: make([]byte, 32), Sig: make([]byte, 64), Cert: make([]byte, 200)}}},
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
