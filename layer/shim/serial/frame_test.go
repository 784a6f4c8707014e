package serial

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ouronet/ouro/flow"
)

// decodeAll feeds stream to a fresh decoder and collects the frames and
// errors in order.
func decodeAll(d *Decoder, stream []byte) (frames [][]byte, errs []error) {
	for len(stream) > 0 {
		n, h, err := d.Next(stream)
		stream = stream[n:]
		if err != nil {
			errs = append(errs, err)
		}
		if h != nil {
			frames = append(frames, bytes.Clone(h))
		}
	}
	return frames, errs
}

func seqBytes(n int, f func(i int) byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = f(i)
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	all := seqBytes(256, func(i int) byte { return byte(i) })
	tests := []struct {
		name string
		body []byte
	}{
		{"header only", make([]byte, HeaderLen)},
		{"all byte values", all},
		{"all byte values reversed", seqBytes(256, func(i int) byte { return byte(255 - i) })},
		{"zeros", make([]byte, 600)},
		{"253 non-zero", bytes.Repeat([]byte{7}, 253)},
		{"254 non-zero", bytes.Repeat([]byte{7}, 254)},
		{"255 non-zero", bytes.Repeat([]byte{7}, 255)},
		{"254 non-zero then zero", append(bytes.Repeat([]byte{7}, 254), 0)},
		{"zero then 254 non-zero", append([]byte{0}, bytes.Repeat([]byte{7}, 254)...)},
		{"alternating", seqBytes(1000, func(i int) byte { return byte(i % 2) })},
		{"runs of zeros", seqBytes(1000, func(i int) byte {
			if i%100 < 40 {
				return 0
			}
			return byte(i)
		})},
		{"max body", seqBytes(MaxBody-CRCLen, func(i int) byte { return byte(i*7 + 1) })},
		{"max body of 0xff", bytes.Repeat([]byte{0xff}, MaxBody-CRCLen)},
		{"max body of zeros", make([]byte, MaxBody-CRCLen)},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := AppendFrame(nil, tt.body)
			if got, limit := len(enc), int(Cost(len(tt.body)+CRCLen)); got > limit {
				t.Errorf("encoded %d bytes, Cost says at most %d", got, limit)
			}
			if i := bytes.IndexByte(enc, 0); i != len(enc)-1 {
				t.Fatalf("delimiter at %d of %d", i, len(enc))
			}
			frames, errs := decodeAll(d, enc)
			if len(errs) != 0 || len(frames) != 1 {
				t.Fatalf("got %d frames, errors %v; want 1 frame", len(frames), errs)
			}
			if !bytes.Equal(frames[0], tt.body) {
				t.Fatalf("got %x, want %x", frames[0], tt.body)
			}
		})
	}
}

// TestFrameRandom round-trips random bodies, many in one stream, with
// empty frames in between.
func TestFrameRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	var want [][]byte
	for range 500 {
		b := make([]byte, HeaderLen+rng.IntN(MaxBody-CRCLen-HeaderLen+1))
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = 0
			} else {
				b[i] = byte(rng.Uint32())
			}
		}
		want = append(want, b)
		stream = AppendFrame(stream, b)
		if rng.IntN(3) == 0 {
			stream = append(stream, 0, 0)
		}
	}
	got, errs := decodeAll(NewDecoder(), stream)
	if len(errs) != 0 || len(got) != len(want) {
		t.Fatalf("got %d frames and %d errors, want %d frames", len(got), len(errs), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestDecoderErrors(t *testing.T) {
	good := AppendFrame(nil, seqBytes(40, func(i int) byte { return byte(i) }))
	flip := bytes.Clone(good)
	flip[10] ^= 0x04
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"crc", flip, ErrCRC},
		{"short", AppendFrame(nil, []byte{1, 2, 3}), ErrShort},
		{"cobs truncated block", []byte{5, 1, 2, 0}, ErrCOBS},
		{"too long", append(bytes.Repeat([]byte{0xff}, MaxEncoded+10), 0), ErrFrameTooLong},
		{"too long in blocks", append(bytes.Repeat(append([]byte{0xff}, bytes.Repeat([]byte{1}, 254)...), 7), 0), ErrFrameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder()
			frames, errs := decodeAll(d, append(bytes.Clone(tt.stream), good...))
			if len(errs) != 1 || !errors.Is(errs[0], tt.want) {
				t.Fatalf("got errors %v, want [%v]", errs, tt.want)
			}
			if len(frames) != 1 { // the next frame decodes: resynchronised
				t.Fatalf("got %d frames after the bad one, want 1", len(frames))
			}
		})
	}
}

// TestDecoderResync cuts a stream of frames at random places, loses and
// corrupts bytes: every frame that arrives intact decodes, every other is
// dropped (never delivered corrupted), and frames after a damaged one
// decode again.
func TestDecoderResync(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	type frame struct {
		body []byte
		enc  []byte
	}
	var frames []frame
	for i := range 400 {
		b := seqBytes(HeaderLen+rng.IntN(300), func(j int) byte { return byte(i + j*j) })
		frames = append(frames, frame{b, AppendFrame(nil, b)})
	}
	var stream []byte
	intact := map[string]bool{}
	for _, f := range frames {
		e := bytes.Clone(f.enc)
		switch rng.IntN(5) {
		case 0: // garbage before
			g := seqBytes(rng.IntN(50), func(int) byte { return byte(rng.Uint32()) })
			stream = append(stream, g...)
			stream = append(stream, 0) // senders lead hellos with a delimiter
		case 1: // a lost byte
			i := rng.IntN(len(e) - 1)
			e = append(e[:i], e[i+1:]...)
		case 2: // a flipped bit
			e[rng.IntN(len(e)-1)] ^= 1 << rng.IntN(8)
		}
		if bytes.Equal(e, f.enc) {
			intact[string(f.body)] = true
		}
		stream = append(stream, e...)
	}
	got, errs := decodeAll(NewDecoder(), stream)
	seen := map[string]bool{}
	for _, g := range got {
		k := string(g)
		if _, ok := intact[k]; !ok {
			found := false
			for _, f := range frames {
				if bytes.Equal(f.body, g) {
					found = true
				}
			}
			if !found {
				t.Fatalf("a corrupted frame was delivered: %x", g)
			}
		}
		seen[k] = true
	}
	for k := range intact {
		if !seen[k] {
			t.Errorf("an intact frame was lost: %x", []byte(k)[:8])
		}
	}
	t.Logf("%d frames sent, %d intact, %d decoded, %d dropped with errors", len(frames), len(intact), len(got), len(errs))
}

func TestHeader(t *testing.T) {
	b := make([]byte, DataLen+3)
	h := Header(b)
	h.SetHeader(TypeData, FlagProbe, 0x01020304, 0xfffffffe)
	h.SetEID(0xa0b0c0d0)
	copy(h.Payload(), "abc")
	if !h.IsValid() || h.Type() != TypeData || h.Flags() != FlagProbe || h.Seq() != 0x01020304 ||
		h.Limit() != 0xfffffffe || h.EID() != 0xa0b0c0d0 || string(h.Payload()) != "abc" {
		t.Fatalf("accessors: %x", b)
	}
	want := []byte{0x11, 0x01, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xfe, 0xa0, 0xb0, 0xc0, 0xd0, 'a', 'b', 'c'}
	if !bytes.Equal(b, want) {
		t.Fatalf("got %x, want %x", b, want)
	}
	hello := Header(make([]byte, HelloLen))
	hello.SetHeader(TypeHello, 0, 0, 0)
	hello.SetHello(0x1122334455667788, 42)
	if !hello.IsValid() || hello.Nonce() != 0x1122334455667788 || hello.Seen() != 42 {
		t.Fatalf("hello: %x", hello)
	}
	for _, bad := range []Header{
		nil, make([]byte, HeaderLen), // version 0
		append([]byte{0x15}, make([]byte, 20)...),                  // type 5
		append([]byte{0x12}, make([]byte, 9)...),                   // hello too short
		append([]byte{0x13}, make([]byte, 10)...),                  // credit too long
		append([]byte{0x11}, make([]byte, 12)...),                  // data without an eid
		append([]byte{0x11}, make([]byte, DataLen+flow.MaxSDU)...), // SDU too long
	} {
		if bad.IsValid() {
			t.Errorf("%x is valid", bad)
		}
	}
}

func TestFrameAllocs(t *testing.T) {
	body := seqBytes(DataLen+flow.MaxSDU, func(i int) byte { return byte(i) })
	buf := make([]byte, 0, MaxEncoded)
	d := NewDecoder()
	var enc []byte
	n := testing.AllocsPerRun(100, func() {
		enc = AppendFrame(buf[:0], body)
		if _, h, err := d.Next(enc); err != nil || len(h) != len(body) {
			t.Fatalf("decode: %v", err)
		}
	})
	if n != 0 {
		t.Errorf("got %v allocs per encode+decode, want 0", n)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	body := seqBytes(DataLen+flow.MaxSDU, func(i int) byte { return byte(i) })
	buf := make([]byte, 0, MaxEncoded)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		AppendFrame(buf[:0], body)
	}
}

func BenchmarkDecoder(b *testing.B) {
	body := seqBytes(DataLen+flow.MaxSDU, func(i int) byte { return byte(i) })
	enc := AppendFrame(nil, body)
	d := NewDecoder()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d.Next(enc)
	}
}

// FuzzDecoder feeds arbitrary streams in arbitrary pieces: the decoder
// never panics, never returns more than MaxBody-CRCLen bytes, and what it
// returns re-encodes to a frame that decodes to the same body.
func FuzzDecoder(f *testing.F) {
	f.Add(AppendFrame(nil, make([]byte, 20)), uint8(3))
	f.Add(append([]byte{0xff, 1, 2, 0, 5}, AppendFrame(nil, []byte("hello, serial link"))...), uint8(1))
	f.Add(bytes.Repeat([]byte{0xff}, 2000), uint8(0))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		d := NewDecoder()
		for len(stream) > 0 {
			piece := stream
			if step > 0 && int(step) < len(piece) {
				piece = piece[:step]
			}
			n, h, err := d.Next(piece)
			if n <= 0 || n > len(piece) {
				t.Fatalf("consumed %d of %d", n, len(piece))
			}
			stream = stream[n:]
			if h == nil {
				continue
			}
			if err != nil {
				t.Fatalf("a body and an error: %v", err)
			}
			if len(h) > MaxBody-CRCLen {
				t.Fatalf("body of %d bytes", len(h))
			}
			again, errs := decodeAll(NewDecoder(), AppendFrame(nil, h))
			if len(errs) != 0 || len(again) != 1 || !bytes.Equal(again[0], h) {
				t.Fatalf("re-encoding %x: %v", h, errs)
			}
			h.IsValid() // must not panic
		}
	})
}

// TestWireExample pins the examples of docs/wire/serial.md.
func TestWireExample(t *testing.T) {
	c := Header(make([]byte, HeaderLen))
	c.SetHeader(TypeCredit, 0, 0x100, 0x1100)
	d := Header(make([]byte, DataLen+3))
	d.SetHeader(TypeData, 0, 0x1234, 0x2000)
	d.SetEID(7)
	copy(d.Payload(), []byte{0x00, 0x41, 0x00})
	for _, tt := range []struct {
		name string
		body Header
		want []byte
	}{
		{"credit", c, []byte{0x02, 0x13, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x11, 0x05, 0xf5, 0x29, 0xde, 0x86, 0x00}},
		{"data", d, []byte{0x02, 0x11, 0x01, 0x01, 0x03, 0x12, 0x34, 0x01, 0x02, 0x20, 0x01, 0x01, 0x01,
			0x02, 0x07, 0x02, 0x41, 0x05, 0xfa, 0xb5, 0x83, 0x08, 0x00}},
	} {
		if got := AppendFrame(nil, tt.body); !bytes.Equal(got, tt.want) {
			t.Errorf("%s: got % x, want % x", tt.name, got, tt.want)
		}
	}
}
