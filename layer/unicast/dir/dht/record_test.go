package dht

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
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

// certRecord is a record of h carrying a certificate that lists "svc",
// and the policy that certifies it.
func certRecord(b testing.TB, c flow.Codec, h layer.Hash) (Record, *DHT) {
	ctx := context.Background()
	id, _ := identity.Generate(crand.Reader)
	auth, _ := identity.Generate(crand.Reader)
	now := time.Now()
	cert, err := identity.IssueCert(ctx, identity.Cert{Serial: 1, Subject: id.Public(), Name: "router-a", Layer: "l",
		NotBefore: now.Add(-time.Hour).Unix(), NotAfter: now.Add(time.Hour).Unix(), Names: []string{"svc"}}, auth)
	if err != nil {
		b.Fatal(err)
	}
	r, _ := signRecord(ctx, c, id, "l", h, 7, 1, 3600)
	r.Cert = cert
	return r, &DHT{cfg: Config{Names: &NamesPolicy{Authorities: []ed25519.PublicKey{auth.Public()}, Hash: layer.SHA3_256, Cert: cert}}}
}

// TestRecordCert: a record's certificate certifies it for the names it
// lists, under the policy's authorities, for its own key only; the
// records of one message fit dir.MaxMsg.
func TestRecordCert(t *testing.T) {
	c := flow.NewCodec()
	h := layer.HashName(layer.SHA3_256, "svc")
	r, d := certRecord(t, c, h)
	now := time.Now()
	if !r.valid(c, "l", h, nil) || !d.certifies(&r, h, now) {
		t.Fatal("a certified record not certified")
	}
	if d.certifies(&r, layer.HashName(layer.SHA3_256, "svc2"), now) {
		t.Error("certified for a name its certificate does not list")
	}
	if d.certifies(&r, h, now.Add(2*time.Hour)) {
		t.Error("certified by an expired certificate")
	}
	other := r
	other.Key = make([]byte, ed25519.PublicKeySize) // another subject
	if d.certifies(&other, h, now) {
		t.Error("certified under another key")
	}
	stranger, _ := identity.Generate(crand.Reader)
	d2 := &DHT{cfg: Config{Names: &NamesPolicy{Authorities: []ed25519.PublicKey{stranger.Public()}, Hash: layer.SHA3_256}}}
	if d2.certifies(&r, h, now) {
		t.Error("certified by another authority's certificate")
	}
	d.cfg.Names.Revoked = func(identity.Cert) bool { return true }
	if d.certifies(&r, h, now) {
		t.Error("certified by a revoked certificate")
	}
	big := r
	big.Cert = make([]byte, MaxRecordCert+1)
	if big.check() == nil || r.check() != nil {
		t.Errorf("record check: a %d-byte certificate taken or a %d-byte one refused", len(big.Cert), len(r.Cert))
	}
	plain := r
	plain.Cert = nil
	pb, _ := c.Marshal(plain)
	cb, _ := c.Marshal(r)
	t.Logf("a record: %d bytes, %d with a certificate of %d ", len(pb), len(cb), len(r.Cert))
	recs := make([]Record, MaxRecords)
	for i := range recs {
		recs[i] = r
	}
	for len(recs) > 0 {
		n := len(fitRecords(recs))
		b, err := (&Msg{Type: MsgStore, Cookie: ^uint64(0), Key: h[:], Records: recs[:n]}).Encode(c)
		if err != nil || len(b) > dir.MaxMsg {
			t.Fatalf("%d records of %d bytes: a %d-byte message, %v", n, r.size(), len(b), err)
		}
		recs = recs[n:]
	}
}

// BenchmarkRecordVerifyCert is BenchmarkRecordVerify plus the
// certificate's check, its verification cached (the usual case: one
// certificate per member); ...Cold verifies the certificate each time.
func BenchmarkRecordVerifyCert(b *testing.B) {
	c := flow.NewCodec()
	h := layer.HashName(layer.SHA3_256, "svc")
	r, d := certRecord(b, c, h)
	now := time.Now()
	for b.Loop() {
		if !r.valid(c, "l", h, nil) || !d.certifies(&r, h, now) {
			b.Fatal("not certified")
		}
	}
}

func BenchmarkRecordVerifyCertCold(b *testing.B) {
	c := flow.NewCodec()
	h := layer.HashName(layer.SHA3_256, "svc")
	r, d := certRecord(b, c, h)
	now := time.Now()
	for b.Loop() {
		d.certs = certCache{}
		if !r.valid(c, "l", h, nil) || !d.certifies(&r, h, now) {
			b.Fatal("not certified")
		}
	}
}
