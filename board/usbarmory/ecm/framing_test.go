package ecm

import (
	"bytes"
	"testing"
)

// packets splits frame into the bulk packets a host sends (ECM 1.2,
// 3.3.1): full packets, a short last one, or a ZLP after an exact
// multiple. linux: pad such a frame by one byte instead of a ZLP, as Linux
// usbnet does.
func packets(frame []byte, mp int, linux bool) [][]byte {
	if linux && NeedsZLP(len(frame), mp) {
		frame = append(frame[:len(frame):len(frame)], 0)
	}
	var ps [][]byte
	for len(frame) >= mp {
		ps = append(ps, frame[:mp])
		frame = frame[mp:]
	}
	return append(ps, frame) // short or zero-length
}

// deliver runs frames through host, controller and Receiver.
func deliver(frames [][]byte, mp int, linux bool) (got [][]byte, verdicts map[Verdict]int) {
	var ps [][]byte
	for _, f := range frames {
		for _, p := range packets(f, mp, linux) {
			ps = append(ps, p)
		}
	}
	asked := RxBufferSize(mp)
	var r Receiver
	verdicts = map[Verdict]int{}
	// the i.MX6 device controller: an OUT transfer (dTD) retires on a
	// short packet or when its byte count is exhausted (IMX6ULLRM
	// 56.4.6.4.1); TamaGo does not report zero-length transfers.
	var cur []byte
	for _, p := range ps {
		cur = append(cur, p...)
		if len(p) < mp || len(cur) == asked {
			if len(cur) > 0 { // TamaGo hides zero-length transfers
				v := r.Transfer(len(cur), asked)
				verdicts[v]++
				if v == Frame {
					got = append(got, cur)
				}
			}
			cur = nil
		}
	}
	return got, verdicts
}

func frameOf(n int, seed byte) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = seed + byte(i)
	}
	return f
}

func TestZLPRule(t *testing.T) {
	for _, tc := range []struct {
		n, mp   int
		zlp     bool
		packets int
	}{
		{14, 512, false, 1},
		{511, 512, false, 1},
		{512, 512, true, 2},
		{1024, 512, true, 3},
		{1514, 512, false, 3},
		{64, 64, true, 2},
		{1472, 64, true, 24},
		{1514, 64, false, 24},
	} {
		if got := NeedsZLP(tc.n, tc.mp); got != tc.zlp {
			t.Errorf("NeedsZLP(%d, %d) = %v, want %v", tc.n, tc.mp, got, tc.zlp)
		}
		if got := Packets(tc.n, tc.mp); got != tc.packets {
			t.Errorf("Packets(%d, %d) = %d, want %d", tc.n, tc.mp, got, tc.packets)
		}
		if got := len(packets(make([]byte, tc.n), tc.mp, false)); got != tc.packets {
			t.Errorf("host sends %d packets for %d bytes, Packets says %d", got, tc.n, tc.packets)
		}
	}
	for _, mp := range []int{FullSpeedBulk, HighSpeedBulk} {
		if n := RxBufferSize(mp); n%mp != 0 || n <= MaxSegmentSize || n-mp > MaxSegmentSize {
			t.Errorf("RxBufferSize(%d) = %d: not the smallest multiple above %d", mp, n, MaxSegmentSize)
		}
	}
}

// TestFramingRoundTrip sends every frame length from an Ethernet header to
// wMaxSegmentSize, back to back, through both ZLP conventions.
func TestFramingRoundTrip(t *testing.T) {
	for _, mp := range []int{FullSpeedBulk, HighSpeedBulk} {
		for _, linux := range []bool{false, true} {
			var frames [][]byte
			for n := MinFrameLen; n <= MaxSegmentSize; n++ {
				frames = append(frames, frameOf(n, byte(n)))
			}
			got, v := deliver(frames, mp, linux)
			if len(got) != len(frames) || v[Frame] != len(frames) {
				t.Fatalf("mp %d linux %v: %d frames delivered (%v), want %d", mp, linux, len(got), v, len(frames))
			}
			for i, f := range got {
				want := frames[i]
				if linux && NeedsZLP(len(want), mp) {
					// one byte of padding instead of a ZLP
					if len(f) != len(want)+1 || !bytes.Equal(f[:len(want)], want) {
						t.Fatalf("mp %d: padded frame %d: %d bytes, want %d+1", mp, i, len(f), len(want))
					}
					continue
				}
				if !bytes.Equal(f, want) {
					t.Fatalf("mp %d linux %v: frame %d: %d bytes, want %d", mp, linux, i, len(f), len(want))
				}
			}
		}
	}
}

func TestFramingErrors(t *testing.T) {
	const mp = HighSpeedBulk
	next := frameOf(60, 9)
	for _, tc := range []struct {
		name     string
		bad      []byte
		verdicts map[Verdict]int // for bad and next together
		nextOK   bool
	}{
		{"runt", frameOf(13, 1), map[Verdict]int{Runt: 1, Frame: 1}, true},
		{"one too long", frameOf(MaxSegmentSize+1, 1), map[Verdict]int{Oversize: 1, Frame: 1}, true},
		{"fills the buffer", frameOf(RxBufferSize(mp)+100, 1), map[Verdict]int{Oversize: 1, Tail: 1, Frame: 1}, true},
		{"two buffers and more", frameOf(2*RxBufferSize(mp)+1, 1), map[Verdict]int{Oversize: 1, Tail: 2, Frame: 1}, true},
		// a ZLP right after a full buffer is invisible: the next frame
		// is taken for the tail (documented on Receiver.Transfer)
		{"buffer then ZLP", frameOf(RxBufferSize(mp), 1), map[Verdict]int{Oversize: 1, Tail: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, v := deliver([][]byte{tc.bad, next}, mp, false)
			if len(v) != len(tc.verdicts) {
				t.Errorf("verdicts %v, want %v", v, tc.verdicts)
			}
			for k, n := range tc.verdicts {
				if v[k] != n {
					t.Errorf("verdicts %v, want %v", v, tc.verdicts)
					break
				}
			}
			if ok := len(got) == 1 && bytes.Equal(got[0], next); ok != tc.nextOK {
				t.Errorf("next frame delivered: %v, want %v", ok, tc.nextOK)
			}
		})
	}
}

// FuzzReceiver feeds arbitrary transfer lengths: a Frame verdict is always
// a length an Ethernet frame can have, and the receiver leaves discard mode
// at the first short transfer.
func FuzzReceiver(f *testing.F) {
	f.Add([]byte{0x10, 0xff, 0x00, 0x20})
	f.Fuzz(func(t *testing.T, lens []byte) {
		const asked = 1536
		var r Receiver
		for i := 0; i+1 < len(lens); i += 2 {
			got := int(lens[i])<<8 | int(lens[i+1])
			if got > asked {
				got = asked
			}
			was := r.discarding
			v := r.Transfer(got, asked)
			if v == Frame && (got < MinFrameLen || got > MaxSegmentSize) {
				t.Fatalf("frame of %d bytes", got)
			}
			if was && v != Tail {
				t.Fatalf("got %v while discarding", v)
			}
			if got < asked && r.discarding {
				t.Fatalf("still discarding after a short transfer")
			}
		}
	})
}
