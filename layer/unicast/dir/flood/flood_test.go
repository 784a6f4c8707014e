package flood

import (
	"fmt"
	"github.com/ouronet/ouro/layer/unicast/dir"
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

// floodEnv is a dir.Env of fixed members that sends nothing.
type floodEnv struct{ members []layer.Addr }

func (e floodEnv) Self() layer.Addr            { return e.members[0] }
func (floodEnv) Send(layer.Addr, []byte) error { return nil }
func (e floodEnv) Members() []layer.Addr       { return e.members }

// TestFloodDirBounded is the attack test of the flood directory's state
// (measured: 600k random Adds kept 255k entries, +71 MiB): Adds from an
// address that is not a member are dropped, and one member cannot make
// it keep more than floodMaxPerMember names. Without the limits, the
// 5000 names of member 2 and the 30 of the non-member were all kept.
func TestFloodDirBounded(t *testing.T) {
	d := New(dir.Config{Env: floodEnv{[]layer.Addr{1, 2}}})
	add := func(src layer.Addr, from, n int) {
		for i := from; i < from+n; i += floodMaxHashes {
			m := floodMsg{Type: floodAdd}
			for j := i; j < min(i+floodMaxHashes, from+n); j++ {
				h := layer.HashName(layer.SHA3_256, fmt.Sprint(j))
				m.Hashes = append(m.Hashes, h[:])
			}
			b, err := floodCodec.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			d.Handle(src, b)
		}
	}
	add(99, 0, 30)
	if got := len(d.Entries()); got != 0 {
		t.Fatalf("a non-member's Adds kept %d entries", got)
	}
	add(2, 0, 5000)
	if got := len(d.Entries()); got != floodMaxPerMember {
		t.Fatalf("one member's 5000 Adds kept %d entries, want %d", got, floodMaxPerMember)
	}
	if got := d.refused.Load(); got != 30+5000-floodMaxPerMember {
		t.Fatalf("refused %d, want %d", got, 30+5000-floodMaxPerMember)
	}
	// Deleting frees the member's quota.
	h := layer.HashName(layer.SHA3_256, "0")
	b, _ := floodCodec.Marshal(floodMsg{Type: floodDel, Hashes: [][]byte{h[:]}})
	d.Handle(2, b)
	add(2, 10000, 1)
	if got := len(d.Entries()); got != floodMaxPerMember {
		t.Fatalf("after a delete and an add: %d entries", got)
	}
}
