package identity_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/ouronet/ouro/crypto/identity"
)

func batchOf(t testing.TB, n int) (*identity.Batch, [][]byte, []*identity.Identity) {
	t.Helper()
	var b identity.Batch
	var msgs [][]byte
	var ids []*identity.Identity
	for i := range n {
		id, err := identity.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte(fmt.Sprintf("lsu %d", i))
		sig, err := identity.SignLabeled(context.Background(), id, identity.LabelLSU, msg)
		if err != nil {
			t.Fatal(err)
		}
		b.Add(id.Public(), identity.LabelLSU, msg, sig)
		msgs, ids = append(msgs, msg), append(ids, id)
	}
	return &b, msgs, ids
}

// TestBatch: a batch of good signatures passes; one bad signature among
// them (another message, another key, another label, a flipped bit) is
// found and only it fails.
func TestBatch(t *testing.T) {
	b, _, _ := batchOf(t, 40)
	for i, ok := range b.Verify() {
		if !ok {
			t.Fatalf("good signature %d refused", i)
		}
	}
	for name, spoil := range map[string]func(b *identity.Batch, id *identity.Identity, sig []byte){
		"other message": func(b *identity.Batch, id *identity.Identity, sig []byte) {
			b.Add(id.Public(), identity.LabelLSU, []byte("changed"), sig)
		},
		"other label": func(b *identity.Batch, id *identity.Identity, sig []byte) {
			b.Add(id.Public(), identity.LabelDir, []byte("spoiled"), sig)
		},
		"flipped bit": func(b *identity.Batch, id *identity.Identity, sig []byte) {
			s := append([]byte(nil), sig...)
			s[40] ^= 1
			b.Add(id.Public(), identity.LabelLSU, []byte("spoiled"), s)
		},
		"short signature": func(b *identity.Batch, id *identity.Identity, sig []byte) {
			b.Add(id.Public(), identity.LabelLSU, []byte("spoiled"), sig[:63])
		},
	} {
		t.Run(name, func(t *testing.T) {
			b, _, _ := batchOf(t, 20)
			id, _ := identity.Generate(rand.Reader)
			sig, _ := identity.SignLabeled(context.Background(), id, identity.LabelLSU, []byte("spoiled"))
			spoil(b, id, sig)
			more, _, _ := batchOf(t, 5)
			_ = more
			ok := b.Verify()
			for i, v := range ok {
				if v != (i != 20) {
					t.Fatalf("signature %d: %v", i, v)
				}
			}
		})
	}
}

func BenchmarkVerifyOneByOne(b *testing.B) {
	batch, _, _ := batchOf(b, 64)
	_ = batch
	id, _ := identity.Generate(rand.Reader)
	sig, _ := identity.SignLabeled(context.Background(), id, identity.LabelLSU, []byte("m"))
	for b.Loop() {
		for range 64 {
			identity.VerifyLabeled(id.Public(), identity.LabelLSU, []byte("m"), sig)
		}
	}
}

func BenchmarkVerifyBatch64(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		batch, _, _ := batchOf(b, 64)
		b.StartTimer()
		batch.Verify()
	}
}

// BenchmarkVerifyBatchSizes: the cost per signature by batch size
// (docs/benchmarks.md, Trust), each signature by another key, as the
// LSUs of a link-state database are.
func BenchmarkVerifyBatchSizes(b *testing.B) {
	type item struct{ pub, msg, sig []byte }
	var all []item
	for i := range 1024 {
		id, err := identity.Generate(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		msg := fmt.Appendf(nil, "lsu %d: %0120d", i, i) // about an LSU's size
		sig, err := identity.SignLabeled(context.Background(), id, identity.LabelLSU, msg)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, item{id.Public(), msg, sig})
	}
	for _, n := range []int{1, 4, 16, 64, 256, 1024} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				var batch identity.Batch
				for _, it := range all[:n] {
					batch.Add(it.pub, identity.LabelLSU, it.msg, it.sig)
				}
				for _, ok := range batch.Verify() {
					if !ok {
						b.Fatal("a good signature failed")
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e3, "µs/sig")
		})
	}
}
