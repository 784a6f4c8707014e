package seal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
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

// rekeyPair is a pair whose Sealer turns its key over every sdus SDUs,
// or when the returned clock has moved on by d.
func rekeyPair(t testing.TB, sdus uint64, d time.Duration) (*Sealer, *Opener, *time.Time) {
	t.Helper()
	now := time.Unix(1e9, 0)
	key := bytes.Repeat([]byte{9}, KeySize)
	s, err := NewSealer(key, WithRekey(sdus, d), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(key)
	if err != nil {
		t.Fatal(err)
	}
	return s, o, &now
}

func epochOf(pkt []byte) uint8 { return pkt[0] }

// TestRekeyBySDUs: every 10 SDUs the key turns over (the epoch byte goes
// up), the counter runs on, and the Opener follows.
func TestRekeyBySDUs(t *testing.T) {
	s, o, _ := rekeyPair(t, 10, 0)
	for i := range 35 {
		p, err := s.Seal(nil, []byte{byte(i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := uint8(i / 10); epochOf(p) != want {
			t.Fatalf("SDU %d: epoch %d, want %d", i, epochOf(p), want)
		}
		if got, err := o.Open(nil, p, nil); err != nil || got[0] != byte(i) {
			t.Fatalf("SDU %d: %v, %v", i, got, err)
		}
	}
	if s.Rekeys() != 3 {
		t.Fatalf("%d rekeys, want 3", s.Rekeys())
	}
}

// TestRekeyByTime: an SDU after RekeyAfter goes under the next key.
func TestRekeyByTime(t *testing.T) {
	s, o, now := rekeyPair(t, 0, time.Minute)
	p1, _ := s.Seal(nil, []byte("a"), nil)
	*now = now.Add(61 * time.Second)
	p2, _ := s.Seal(nil, []byte("b"), nil)
	if epochOf(p1) != 0 || epochOf(p2) != 1 {
		t.Fatalf("epochs %d, %d; want 0, 1", epochOf(p1), epochOf(p2))
	}
	for _, p := range [][]byte{p1, p2} {
		if _, err := o.Open(nil, p, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRekeyReorderAndLoss: an SDU of the old epoch arriving after the
// first of the new one still opens; all SDUs of MaxSkip-1 epochs lost,
// the next epoch's open; more than MaxSkip epochs ahead do not; a
// replay of an old epoch's SDU is refused.
func TestRekeyReorderAndLoss(t *testing.T) {
	s, o, _ := rekeyPair(t, 2, 0)
	var ps [][]byte
	for i := range 40 {
		p, _ := s.Seal(nil, []byte{byte(i)}, nil)
		ps = append(ps, p)
	}
	open := func(i int) error { _, err := o.Open(nil, ps[i], nil); return err }
	// epoch 0: 0, 1; epoch 1: 2, 3; ... epoch k: 2k, 2k+1
	for _, i := range []int{0, 2, 1, 3} { // 1 comes after epoch 1 began
		if err := open(i); err != nil {
			t.Fatalf("SDU %d (epoch %d): %v", i, epochOf(ps[i]), err)
		}
	}
	// Epochs 2 to 4 lost; epoch 5 is MaxSkip ahead of 1.
	if err := open(10); err != nil {
		t.Fatalf("SDU 10 (epoch 5, %d ahead): %v", MaxSkip, err)
	}
	if err := open(2); !errors.Is(err, ErrReplay) {
		t.Fatalf("a replay of SDU 2: %v, want ErrReplay", err)
	}
	// Epoch 11 is 6 ahead of 5: too far.
	if err := open(22); !errors.Is(err, ErrAuth) {
		t.Fatalf("SDU 22 (epoch 11, 6 ahead): %v, want ErrAuth", err)
	}
	// A forged SDU claiming the next epoch does not move the Opener on.
	forged := append([]byte(nil), ps[12]...)
	forged[len(forged)-1] ^= 1
	if _, err := o.Open(nil, forged, nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged SDU: %v", err)
	}
	if err := open(12); err != nil {
		t.Fatalf("SDU 12 (epoch 6) after a forgery of it: %v", err)
	}
}
