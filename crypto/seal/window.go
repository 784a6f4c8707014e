package seal

// replayWindow is an Opener's record of the counters it accepted, the newest
// and the WindowLen behind it, in the style of RFC 6479: a ring of
// 64-bit blocks indexed by counter, one block more than the window
// needs, so that moving the newest counter on clears the blocks it
// passes instead of shifting the whole bitmap (an SDU in order touches
// one word, where a shifting bitmap rewrites all of them).
type replayWindow struct {
	top  uint64 // newest counter accepted (0: none yet)
	ring [ringBlocks]uint64
}

// ringBlocks is WindowLen's blocks and one more: the block that top's
// counter opens is cleared while the WindowLen counters behind it keep
// their bits.
const ringBlocks = WindowLen/64 + 1

// fresh reports whether c is not known to have been accepted: newer
// than top, or at most WindowLen-1 behind it and not marked.
func (w *replayWindow) fresh(c uint64) bool {
	if c > w.top {
		return true
	}
	if w.top-c >= WindowLen {
		return false
	}
	return w.ring[(c/64)%ringBlocks]&(1<<(c%64)) == 0
}

// mark records c (fresh) as accepted.
func (w *replayWindow) mark(c uint64) {
	if c > w.top {
		// Clear the blocks between top's and c's (c's included): their
		// bits are of counters more than WindowLen behind c.
		from, to := w.top/64, c/64
		if to-from >= ringBlocks {
			w.ring = [ringBlocks]uint64{}
		} else {
			for b := from + 1; b <= to; b++ {
				w.ring[b%ringBlocks] = 0
			}
		}
		w.top = c
	}
	w.ring[(c/64)%ringBlocks] |= 1 << (c % 64)
}
