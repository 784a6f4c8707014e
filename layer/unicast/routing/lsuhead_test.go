package routing

import (
	"testing"

	"github.com/ouronet/ouro/layer"
)

// FuzzLSUHead: lsuHead, which HandleMessage trusts for LSUs not newer
// than its own, reads the origin and sequence number that the full
// decoder reads, whenever both accept the LSU. lsuHead may refuse what
// the full decoder takes (it reads only plain unsigned integers, where
// the decoder also takes, for one, a CBOR simple value as a number: the
// corpus keeps such an input): HandleMessage then decodes in full.
func FuzzLSUHead(f *testing.F) {
	for _, l := range []LSU{
		{Origin: 3, Seq: 7, Key: make([]byte, 32), Sig: make([]byte, 64)},
		{Origin: 1 << 40, Seq: 1<<64 - 1, Links: []Link{{Neighbour: 2, Metric: 1}}, Name: "a", Key: make([]byte, 32), Sig: make([]byte, 64)},
	} {
		b, err := encMode.Marshal(l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x86, 0x18, 0x05, 0x19, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, seq, ok := lsuHead(b)
		var l LSU
		if decodeLSU(b, &l) != nil {
			return
		}
		if ok && (o != l.Origin || seq != l.Seq) {
			t.Fatalf("lsuHead: %d, %d, %v; decoded %d, %d", o, seq, ok, l.Origin, l.Seq)
		}
	})
}

func TestLSUHeadRefuses(t *testing.T) {
	for _, b := range [][]byte{nil, {0x85, 1, 1}, {0x86, 0x00, 1}, {0x86, 0x20, 1}, {0x86, 0x1b, 1}, {0x86, 1}, {0x86, 1, 0x1c}} {
		if o, s, ok := lsuHead(b); ok {
			t.Errorf("lsuHead(% x) = %d, %d, true", b, o, s)
		}
	}
	if o, s, ok := lsuHead([]byte{0x86, 0x1a, 0, 1, 0, 0, 0x05}); !ok || o != layer.Addr(1<<16) || s != 5 {
		t.Errorf("lsuHead = %d, %d, %v", o, s, ok)
	}
}
