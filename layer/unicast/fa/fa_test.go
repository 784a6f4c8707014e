package fa_test

import (
	"testing"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/fa"
)

func FuzzUnmarshal(f *testing.F) {
	h := layer.HashName(layer.SHA3_256, "x")
	for _, m := range []fa.Msg{
		{Type: fa.MsgReq, SrcEID: 1 << 32, Hash: h[:], Name: "a", QoS: flow.Voice()},
		{Type: fa.MsgResp, SrcEID: 5, DstEID: 6},
		{Type: fa.MsgDealloc, SrcEID: 5, DstEID: 6},
		{Type: fa.MsgUpdate, SrcEID: 5, DstEID: 6, ECE: 200},
		{Type: fa.MsgKeepalive, SrcEID: 5, DstEID: 6},
	} {
		b, err := fa.Marshal(&m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := fa.Unmarshal(b)
		if err != nil {
			return
		}
		if m.Type == fa.MsgReq && len(m.Hash) != layer.HashLen {
			t.Fatalf("accepted a request with a %d-byte hash", len(m.Hash))
		}
		if _, err := fa.Marshal(&m); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func TestUnmarshalChecks(t *testing.T) {
	h := layer.HashName(layer.SHA3_256, "x")
	tests := []struct {
		name string
		m    fa.Msg
		ok   bool
	}{
		{"request", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:]}, true},
		{"request with a short hash", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:8]}, false},
		{"request without endpoint", fa.Msg{Type: fa.MsgReq, Hash: h[:]}, false},
		{"refusal", fa.Msg{Type: fa.MsgResp, DstEID: 9, Result: fa.ResNotFound}, true},
		{"acceptance without endpoint", fa.Msg{Type: fa.MsgResp, DstEID: 9}, false},
		{"dealloc without destination", fa.Msg{Type: fa.MsgDealloc, SrcEID: 9}, false},
		{"unknown type", fa.Msg{Type: 42, DstEID: 9}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := fa.Marshal(&tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fa.Unmarshal(b); (err == nil) != tc.ok {
				t.Fatalf("Unmarshal err = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
