package fa_test

import (
	"strings"
	"testing"

	"github.com/ouronet/ouro/crypto/kex"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dt"
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
		{Type: fa.MsgReq, SrcEID: 1 << 32, Hash: h[:], QoS: flow.QoS{Sealed: true}, Kex: []byte("hello"), Part: 1, Parts: 2},
		{Type: fa.MsgReply, DstEID: 6, Kex: []byte("reply"), Parts: 1},
		{Type: fa.MsgFinish, SrcEID: 5, Kex: []byte("finish")},
		{Type: fa.MsgResume, SrcEID: 5, Hash: h[:], QoS: flow.QoS{Sealed: true}, Kex: []byte("resume")},
		{Type: fa.MsgResp, SrcEID: 5, DstEID: 6, Kex: []byte("resumed")},
		{Type: fa.MsgResp, DstEID: 6, Result: fa.ResNoTicket},
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
		if len(m.Kex) > fa.KexChunk || m.Parts > fa.MaxParts || m.Parts > 0 && m.Part >= m.Parts {
			t.Fatalf("accepted a key-exchange piece %d of %d, %d bytes", m.Part, m.Parts, len(m.Kex))
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
		{"sealed request", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:], Kex: []byte{1}, Part: 1, Parts: 2}, true},
		{"request with a key piece and no count", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:], Kex: []byte{1}}, false},
		{"request piece out of range", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:], Kex: []byte{1}, Part: 2, Parts: 2}, false},
		{"request in too many pieces", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:], Kex: []byte{1}, Parts: fa.MaxParts + 1}, false},
		{"request piece too big", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:], Kex: make([]byte, fa.KexChunk+1), Parts: 2}, false},
		{"empty request piece", fa.Msg{Type: fa.MsgReq, SrcEID: 9, Hash: h[:], Parts: 1}, false},
		{"reply", fa.Msg{Type: fa.MsgReply, DstEID: 9, Kex: []byte{1}, Parts: 1}, true},
		{"reply without destination", fa.Msg{Type: fa.MsgReply, Kex: []byte{1}, Parts: 1}, false},
		{"reply without pieces", fa.Msg{Type: fa.MsgReply, DstEID: 9, Kex: []byte{1}}, false},
		{"finish", fa.Msg{Type: fa.MsgFinish, SrcEID: 9, Kex: []byte{1}}, true},
		{"empty finish", fa.Msg{Type: fa.MsgFinish, SrcEID: 9}, false},
		{"finish too big", fa.Msg{Type: fa.MsgFinish, SrcEID: 9, Kex: make([]byte, 129)}, false},
		{"finish in pieces", fa.Msg{Type: fa.MsgFinish, SrcEID: 9, Kex: []byte{1}, Parts: 2}, false},
		{"keepalive with a key piece", fa.Msg{Type: fa.MsgKeepalive, DstEID: 9, Kex: []byte{1}}, false},
		{"dealloc with a piece count", fa.Msg{Type: fa.MsgDealloc, DstEID: 9, Parts: 23}, false},
		{"resume", fa.Msg{Type: fa.MsgResume, SrcEID: 9, Hash: h[:], Kex: []byte{1}}, true},
		{"resume without its message", fa.Msg{Type: fa.MsgResume, SrcEID: 9, Hash: h[:]}, false},
		{"resume too big", fa.Msg{Type: fa.MsgResume, SrcEID: 9, Hash: h[:], Kex: make([]byte, kex.MaxResume+1)}, false},
		{"resume in pieces", fa.Msg{Type: fa.MsgResume, SrcEID: 9, Hash: h[:], Kex: []byte{1}, Parts: 1}, false},
		{"resume with a short hash", fa.Msg{Type: fa.MsgResume, SrcEID: 9, Hash: h[:8], Kex: []byte{1}}, false},
		{"acceptance of a resume", fa.Msg{Type: fa.MsgResp, SrcEID: 8, DstEID: 9, Kex: []byte{1}}, true},
		{"refusal with a resume's answer", fa.Msg{Type: fa.MsgResp, DstEID: 9, Result: fa.ResRefused, Kex: []byte{1}}, false},
		{"acceptance with too big an answer", fa.Msg{Type: fa.MsgResp, SrcEID: 8, DstEID: 9, Kex: make([]byte, kex.MaxResume+1)}, false},
		{"no ticket", fa.Msg{Type: fa.MsgResp, DstEID: 9, Result: fa.ResNoTicket}, true},
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

// TestLargestFitsControlMessage: the largest request (a 255-byte name, a
// full key-exchange piece, every QoS field set) fits one control message
// of the layer (flow.MaxSDU less the PCI and the sender's address).
func TestLargestFitsControlMessage(t *testing.T) {
	h := layer.HashName(layer.SHA3_256, "x")
	q := flow.QoS{Delay: ^uint32(0), Bandwidth: ^uint64(0), Availability: 255, Loss: ^uint32(0), BER: ^uint32(0), InOrder: true, MaxGap: ^uint32(0), Timeout: 1 << 62, Sealed: true}
	m := fa.Msg{Type: fa.MsgReq, SrcEID: ^layer.EID(0), Hash: h[:], Name: strings.Repeat("n", 255), QoS: q, Kex: make([]byte, fa.KexChunk), Part: fa.MaxParts - 1, Parts: fa.MaxParts}
	b, err := fa.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	if limit := flow.MaxSDU - 8 - dt.PCILen; len(b) > limit {
		t.Fatalf("largest request: %d bytes, a control message carries %d", len(b), limit)
	}
}
