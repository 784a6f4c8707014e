package seal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func pair(t testing.TB) (*Sealer, *Opener) {
	t.Helper()
	key := bytes.Repeat([]byte{7}, KeySize)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(key)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

// TestVector pins the wire form: counter 1, then RFC 8439
// ChaCha20-Poly1305 with nonce 00000000 || counter. Cross-checked with
// pyca/cryptography's ChaCha20Poly1305.
func TestVector(t *testing.T) {
	s, _ := pair(t)
	got, err := s.Seal(nil, []byte("ouro"), []byte("flow 1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0000000000000001" + "866221796727d986b96b1cf04e9e687e651958ee"; hex.EncodeToString(got) != want {
		t.Fatalf("got %x, want %s", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	s, o := pair(t)
	ad := []byte("flow 9")
	var pkts [][]byte
	for _, m := range []string{"", "a", "hello, world"} {
		p, err := s.Seal(nil, []byte(m), ad)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, p)
		got, err := o.Open(nil, p, ad)
		if err != nil || string(got) != m {
			t.Fatalf("got %q, %v, want %q", got, err, m)
		}
	}
	tests := []struct {
		name string
		pkt  []byte
		ad   []byte
		want error
	}{
		{"replay", pkts[1], ad, ErrReplay},
		{"other ad", pkts[2], []byte("flow 8"), ErrReplay}, // replay is checked first
		{"short", pkts[0][:Overhead-1], ad, ErrShort},
		{"counter 0", make([]byte, Overhead), ad, ErrAuth},
	}
	flipped, _ := s.Seal(nil, []byte("x"), ad)
	flipped[len(flipped)-1] ^= 1
	tests = append(tests, struct {
		name string
		pkt  []byte
		ad   []byte
		want error
	}{"forged", flipped, ad, ErrAuth})
	fresh, _ := s.Seal(nil, []byte("y"), ad)
	tests = append(tests, struct {
		name string
		pkt  []byte
		ad   []byte
		want error
	}{"wrong ad", fresh, []byte("flow 8"), ErrAuth})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := o.Open(nil, tt.pkt, tt.ad); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	// A forged packet does not move the window: the authentic one with
	// the same counter (fresh, after the failed "wrong ad") still opens.
	if _, err := o.Open(nil, fresh, ad); err != nil {
		t.Errorf("authentic packet after a forgery: %v", err)
	}
}

func TestWindow(t *testing.T) {
	s, o := pair(t)
	var pkts [][]byte
	for range WindowLen + 10 {
		p, _ := s.Seal(nil, []byte("x"), nil)
		pkts = append(pkts, p)
	}
	// Deliver the newest first, then the rest out of order.
	if _, err := o.Open(nil, pkts[len(pkts)-1], nil); err != nil {
		t.Fatal(err)
	}
	for i := len(pkts) - 2; i >= 0; i-- {
		_, err := o.Open(nil, pkts[i], nil)
		behind := len(pkts) - 1 - i
		switch {
		case behind < WindowLen && err != nil:
			t.Fatalf("counter %d, %d behind: got %v, want accepted", i+1, behind, err)
		case behind >= WindowLen && !errors.Is(err, ErrReplay):
			t.Fatalf("counter %d, %d behind: got %v, want ErrReplay", i+1, behind, err)
		}
	}
}

func TestKey(t *testing.T) {
	if _, err := NewSealer(make([]byte, 16)); !errors.Is(err, ErrKey) {
		t.Errorf("got %v, want ErrKey", err)
	}
	if _, err := NewOpener(nil); !errors.Is(err, ErrKey) {
		t.Errorf("got %v, want ErrKey", err)
	}
}

func TestAllocs(t *testing.T) {
	s, o := pair(t)
	sdu := make([]byte, 1400)
	pkt := make([]byte, 0, 1400+Overhead)
	out := make([]byte, 0, 1400)
	allocs := testing.AllocsPerRun(1000, func() {
		p, err := s.Seal(pkt[:0], sdu, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Open(out[:0], p, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per seal and open, want 0", allocs)
	}
}

func FuzzOpen(f *testing.F) {
	s, _ := pair(f)
	p, _ := s.Seal(nil, []byte("seed"), nil)
	f.Add(p)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, o := pair(t)
		got, err := o.Open(nil, pkt, nil)
		if err == nil && !bytes.Equal(pkt, p) {
			t.Fatalf("opened a packet Seal did not make: %x -> %q", pkt, got)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	s, o := pair(b)
	sdu := make([]byte, 1400)
	pkt := make([]byte, 0, 1400+Overhead)
	out := make([]byte, 0, 1400)
	b.SetBytes(int64(len(sdu)))
	for range b.N {
		p, _ := s.Seal(pkt[:0], sdu, nil)
		o.Open(out[:0], p, nil)
	}
}
