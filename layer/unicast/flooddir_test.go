package unicast

import (
	"testing"

	"github.com/ouronet/ouro/layer"
)

func FuzzFloodMsg(f *testing.F) {
	h := layer.HashName(layer.SHA3_256, "x")
	b, _ := floodCodec.Marshal(floodMsg{Type: floodAdd, Hashes: [][]byte{h[:]}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := unmarshalFlood(b)
		if err != nil {
			return
		}
		for _, h := range m.Hashes {
			if len(h) != layer.HashLen {
				t.Fatalf("accepted a %d-byte hash", len(h))
			}
		}
	})
}
