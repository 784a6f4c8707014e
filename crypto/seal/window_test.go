package seal

import (
	"math/rand/v2"
	"testing"
)

// shiftWindow is the replay window as it was first written: a bitmap of
// WindowLen bits, bit i for the counter i behind the newest, shifted
// each time the newest moves on. The model replayWindow must agree with.
type shiftWindow struct {
	top  uint64
	bits [WindowLen / 64]uint64
}

func (w *shiftWindow) fresh(c uint64) bool {
	if c > w.top {
		return true
	}
	off := w.top - c
	return off < WindowLen && w.bits[off/64]&(1<<(off%64)) == 0
}

func (w *shiftWindow) mark(c uint64) {
	if c > w.top {
		w.shift(c - w.top)
		w.top = c
	}
	off := w.top - c
	w.bits[off/64] |= 1 << (off % 64)
}

func (w *shiftWindow) shift(s uint64) {
	if s >= WindowLen {
		w.bits = [WindowLen / 64]uint64{}
		return
	}
	ws, bs := int(s/64), s%64
	for i := len(w.bits) - 1; i >= 0; i-- {
		var v uint64
		if j := i - ws; j >= 0 {
			v = w.bits[j] << bs
			if bs > 0 && j > 0 {
				v |= w.bits[j-1] >> (64 - bs)
			}
		}
		w.bits[i] = v
	}
}

// TestReplayWindowModel: the ring window answers as the shifting bitmap
// does for every counter of random streams that run in order, skip
// ahead (by less and more than a block, a window, the ring), fall back
// (reordered, replayed, older than the window) and repeat, each stream
// marking what is fresh as Open does. A ring without its spare block
// (WindowLen/64 blocks) fails this.
func TestReplayWindowModel(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 1))
		var got replayWindow
		var want shiftWindow
		c := uint64(1)
		for i := range 20000 {
			switch k := r.IntN(100); {
			case k < 60:
				c++
			case k < 70:
				c += uint64(r.IntN(200))
			case k < 73:
				c += uint64(r.IntN(3 * WindowLen))
			case k < 90:
				if back := uint64(r.IntN(WindowLen + 100)); back < c {
					c -= back
				}
			default:
				// a repeat of c
			}
			if c == 0 {
				c = 1
			}
			g, w := got.fresh(c), want.fresh(c)
			if g != w {
				t.Fatalf("seed %d, step %d: counter %d (newest %d): fresh %v, the model says %v", seed, i, c, want.top, g, w)
			}
			if w {
				got.mark(c)
				want.mark(c)
			}
		}
	}
}

// BenchmarkReplayWindow marks counters in order, the common case: the
// ring against the shifting bitmap.
func BenchmarkReplayWindow(b *testing.B) {
	b.Run("ring", func(b *testing.B) {
		var w replayWindow
		for i := range uint64(b.N) {
			if w.fresh(i + 1) {
				w.mark(i + 1)
			}
		}
	})
	b.Run("shift", func(b *testing.B) {
		var w shiftWindow
		for i := range uint64(b.N) {
			if w.fresh(i + 1) {
				w.mark(i + 1)
			}
		}
	})
}
