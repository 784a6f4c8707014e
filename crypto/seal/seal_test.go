package seal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

func pair(t testing.TB) (*Sealer, *Opener) { return pairOf(t, ChaCha20Poly1305) }

func pairOf(t testing.TB, a AEAD) (*Sealer, *Opener) {
	t.Helper()
	key := bytes.Repeat([]byte{7}, KeySize)
	s, err := NewSealer(a, key)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(a, key)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

// eachAEAD runs f for every AEAD.
func eachAEAD(t *testing.T, f func(t *testing.T, a AEAD)) {
	for _, a := range AEADs {
		t.Run(a.String(), func(t *testing.T) { f(t, a) })
	}
}

// TestVector pins the wire form: counter 1, then the AEAD with nonce
// 00000000 || counter: RFC 8439 ChaCha20-Poly1305, AES-256-GCM. Both
// cross-checked with pyca/cryptography's ChaCha20Poly1305 and AESGCM.
func TestVector(t *testing.T) {
	for a, want := range map[AEAD]string{
		ChaCha20Poly1305: "866221796727d986b96b1cf04e9e687e651958ee",
		AES256GCM:        "5f3dcb0f255291e10c883bd1f6c39b5513116510",
	} {
		s, _ := pairOf(t, a)
		got, err := s.Seal(nil, []byte("ouro"), []byte("flow 1"))
		if err != nil {
			t.Fatal(err)
		}
		if want := "0000000000000001" + want; hex.EncodeToString(got) != want {
			t.Errorf("%s: got %x, want %s", a, got, want)
		}
		if len(got) != len("ouro")+Overhead {
			t.Errorf("%s: %d bytes, want %d", a, len(got), len("ouro")+Overhead)
		}
	}
}

// TestOtherAEAD: what one AEAD sealed does not open under the other
// with the same key.
func TestOtherAEAD(t *testing.T) {
	s, _ := pairOf(t, AES256GCM)
	_, o := pairOf(t, ChaCha20Poly1305)
	p, _ := s.Seal(nil, []byte("x"), nil)
	if _, err := o.Open(nil, p, nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("AES-GCM SDU opened with ChaCha20-Poly1305: %v, want ErrAuth", err)
	}
	if _, err := NewSealer(AEAD(9), make([]byte, KeySize)); !errors.Is(err, ErrAEAD) {
		t.Fatalf("unknown AEAD: %v, want ErrAEAD", err)
	}
	if _, err := NewOpener(0, make([]byte, KeySize)); !errors.Is(err, ErrAEAD) {
		t.Fatalf("AEAD 0: %v, want ErrAEAD", err)
	}
	if s.AEAD() != AES256GCM || o.AEAD() != ChaCha20Poly1305 {
		t.Fatalf("AEAD() = %s, %s", s.AEAD(), o.AEAD())
	}
}

func TestRoundTrip(t *testing.T) { eachAEAD(t, testRoundTrip) }

func testRoundTrip(t *testing.T, a AEAD) {
	s, o := pairOf(t, a)
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
	eachAEAD(t, func(t *testing.T, a AEAD) {
		s, o := pairOf(t, a)
		window(t, s, o)
	})
}

func window(t *testing.T, s *Sealer, o *Opener) {
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
	for _, a := range AEADs {
		if _, err := NewSealer(a, make([]byte, 16)); !errors.Is(err, ErrKey) {
			t.Errorf("%s: got %v, want ErrKey", a, err)
		}
		if _, err := NewOpener(a, nil); !errors.Is(err, ErrKey) {
			t.Errorf("%s: got %v, want ErrKey", a, err)
		}
	}
}

func TestAllocs(t *testing.T) { eachAEAD(t, testAllocs) }

func testAllocs(t *testing.T, a AEAD) {
	s, o := pairOf(t, a)
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
	var made [][]byte
	for _, a := range AEADs {
		s, _ := pairOf(f, a)
		p, _ := s.Seal(nil, []byte("seed"), nil)
		made = append(made, p)
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for i, a := range AEADs {
			_, o := pairOf(t, a)
			got, err := o.Open(nil, pkt, nil)
			if err == nil && !bytes.Equal(pkt, made[i]) {
				t.Fatalf("%s opened a packet Seal did not make: %x -> %q", a, pkt, got)
			}
		}
	})
}

// BenchmarkSealOpen seals and opens one SDU of 1,376 bytes (the largest
// a sealed flow over the UDP shim carries at a 1,500-byte MTU) with each
// AEAD: compare the two in one run.
func BenchmarkSealOpen(b *testing.B) {
	for _, a := range AEADs {
		b.Run(a.String(), func(b *testing.B) {
			s, o := pairOf(b, a)
			sdu := make([]byte, 1376)
			pkt := make([]byte, 0, len(sdu)+Overhead)
			out := make([]byte, 0, len(sdu))
			b.SetBytes(int64(len(sdu)))
			b.ReportAllocs()
			for range b.N {
				p, _ := s.Seal(pkt[:0], sdu, nil)
				if _, err := o.Open(out[:0], p, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// rekeyPair is a pair whose Sealer turns its key over every sdus SDUs,
// or when the returned clock has moved on by d.
func rekeyPair(t testing.TB, sdus uint64, d time.Duration) (*Sealer, *Opener, *time.Time) {
	return rekeyPairOf(t, ChaCha20Poly1305, sdus, d)
}

func rekeyPairOf(t testing.TB, a AEAD, sdus uint64, d time.Duration) (*Sealer, *Opener, *time.Time) {
	t.Helper()
	now := time.Unix(1e9, 0)
	key := bytes.Repeat([]byte{9}, KeySize)
	s, err := NewSealer(a, key, WithRekey(sdus, d), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(a, key)
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

// TestRekeyByTimeDefaultClock: without WithClock the age of the key is
// read from the monotonic clock (time.Since), and it still turns the
// key over once RekeyAfter has passed.
func TestRekeyByTimeDefaultClock(t *testing.T) {
	key := bytes.Repeat([]byte{9}, KeySize)
	s, err := NewSealer(AES256GCM, key, WithRekey(0, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(AES256GCM, key)
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := s.Seal(nil, []byte("a"), nil)
	time.Sleep(30 * time.Millisecond)
	p2, _ := s.Seal(nil, []byte("b"), nil)
	p3, _ := s.Seal(nil, []byte("c"), nil)
	if epochOf(p1) != 0 || epochOf(p2) != 1 || epochOf(p3) != 1 || s.Rekeys() != 1 {
		t.Fatalf("epochs %d, %d, %d, %d rekeys; want 0, 1, 1 and 1", epochOf(p1), epochOf(p2), epochOf(p3), s.Rekeys())
	}
	for _, p := range [][]byte{p1, p2, p3} {
		if _, err := o.Open(nil, p, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRekeyReorderAndLoss: an SDU of the old epoch arriving after the
// first of the new one still opens; all SDUs of MaxSkip-1 epochs lost,
// the next epoch's open; more than MaxSkip epochs ahead do not; a
// replay of an old epoch's SDU is refused.
func TestRekeyReorderAndLoss(t *testing.T) { eachAEAD(t, testRekeyReorderAndLoss) }

func testRekeyReorderAndLoss(t *testing.T, a AEAD) {
	s, o, _ := rekeyPairOf(t, a, 2, 0)
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
