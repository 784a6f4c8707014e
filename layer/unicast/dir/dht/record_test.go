package dht

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"testing"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

func TestRecordValid(t *testing.T) {
	ctx := context.Background()
	c := flow.NewCodec()
	id, err := identity.Generate(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := layer.HashName(layer.SHA3_256, "svc")
	r, err := signRecord(ctx, c, id, "l", h, 7, 3, 60)
	if err != nil {
		t.Fatal(err)
	}
	only7 := func(a layer.Addr, _ ed25519.PublicKey) bool { return a == 7 }
	tests := []struct {
		name  string
		edit  func(*Record)
		layer string
		hash  layer.Hash
		bound func(layer.Addr, ed25519.PublicKey) bool
		want  bool
	}{
		{"genuine", func(*Record) {}, "l", h, nil, true},
		{"bound", func(*Record) {}, "l", h, only7, true},
		{"not bound", func(*Record) {}, "l", h, func(layer.Addr, ed25519.PublicKey) bool { return false }, false},
		{"another layer", func(*Record) {}, "m", h, nil, false},
		{"another name", func(*Record) {}, "l", layer.HashName(layer.SHA3_256, "other"), nil, false},
		{"address", func(r *Record) { r.Addr = 8 }, "l", h, nil, false},
		{"sequence", func(r *Record) { r.Seq++ }, "l", h, nil, false},
		{"ttl", func(r *Record) { r.TTL = 0 }, "l", h, nil, false},
		{"key", func(r *Record) { r.Key = make([]byte, ed25519.PublicKeySize) }, "l", h, nil, false},
		{"short key", func(r *Record) { r.Key = r.Key[:5] }, "l", h, nil, false},
		{"signature", func(r *Record) { r.Sig[0] ^= 1 }, "l", h, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := r
			x.Key, x.Sig = append([]byte(nil), r.Key...), append([]byte(nil), r.Sig...)
			tt.edit(&x)
			if got := x.valid(c, tt.layer, tt.hash, tt.bound); got != tt.want {
				t.Errorf("got valid %v, want %v", got, tt.want)
			}
		})
	}
}

// BenchmarkRecordSign and BenchmarkRecordVerify are what a signed
// record costs its owner (once per registration and republication) and
// every holder and asker (once per copy received); docs/benchmarks.md
// quotes them.
func BenchmarkRecordSign(b *testing.B) {
	ctx := context.Background()
	c := flow.NewCodec()
	id, _ := identity.Generate(crand.Reader)
	h := layer.HashName(layer.SHA3_256, "svc")
	for i := 0; b.Loop(); i++ {
		if _, err := signRecord(ctx, c, id, "l", h, 7, uint64(i), 3600); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordVerify(b *testing.B) {
	c := flow.NewCodec()
	id, _ := identity.Generate(crand.Reader)
	h := layer.HashName(layer.SHA3_256, "svc")
	r, _ := signRecord(context.Background(), c, id, "l", h, 7, 1, 3600)
	for b.Loop() {
		if !r.valid(c, "l", h, nil) {
			b.Fatal("invalid")
		}
	}
}
