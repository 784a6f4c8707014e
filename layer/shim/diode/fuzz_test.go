package diode

import (
	"testing"
)

// FuzzShard feeds the receiving end's shard path (the decoder, the proof,
// the signature check, the block window and the rebuild) arbitrary
// packets, seeded with a genuine block: it must never panic, and nothing
// but a genuine block is delivered.
func FuzzShard(f *testing.F) {
	a := ident(f)
	l := newLink()
	s, _, _ := pair(f, l, newLink(), a, a, nil)
	shards := captureBlock(f, l, s, 3)
	for _, sh := range shards {
		f.Add(sh)
	}
	f.Add([]byte{})
	f.Add(make([]byte, HeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, r := receiver(t, a.Public())
		sink := &sinkPort{}
		p.rxFlows[7].port = sink
		sh := Shard(b)
		if sh.IsValid() {
			_ = sh.K() + sh.M() + sh.Index() + int(sh.Flow()) + int(sh.Block())
			_, _, _, _ = sh.Root(), sh.Sig(), sh.Proof(), sh.Payload()
		}
		r.handle(sh)
		// Then the genuine shards: the block must still be delivered
		// (one mutated packet cannot block a genuine one), unless the
		// input was itself a genuine shard of it.
		for _, g := range shards {
			r.handle(Shard(g))
		}
		if got := p.FEC().BlocksIn; got != 1 {
			t.Fatalf("got %d blocks delivered, want 1 (stats %+v)", got, p.FEC())
		}
	})
}
