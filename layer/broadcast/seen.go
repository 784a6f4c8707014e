package broadcast

// windowBits is how far behind an origin's newest sequence number an SDU
// may arrive and still be delivered (once).
const windowBits = 256

// window remembers which of an origin's last windowBits sequence numbers
// arrived: bit i of the bitmap is top-i (the anti-replay window of RFC
// 4303 section 3.4.3, used for duplicates instead of replays).
type window struct {
	top  uint32
	bits [windowBits / 64]uint64
	used uint64 // the seen-set's clock when last used, for eviction
}

// fresh records seq and reports whether it is new. A number older than
// the window counts as seen: floods do not reorder that much, and a
// restarted member comes back as a new origin.
func (w *window) fresh(seq uint32) bool {
	if seq > w.top {
		w.shift(seq - w.top)
		w.top = seq
		w.bits[0] |= 1
		return true
	}
	off := w.top - seq
	if off >= windowBits {
		return false
	}
	word, bit := off/64, uint64(1)<<(off%64)
	if w.bits[word]&bit != 0 {
		return false
	}
	w.bits[word] |= bit
	return true
}

// shift moves every remembered number s places further from top.
func (w *window) shift(s uint32) {
	if s >= windowBits {
		w.bits = [windowBits / 64]uint64{}
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

// seenSet is a window per origin, at most max origins: a new origin
// evicts the least recently used. Not safe for concurrent use.
type seenSet struct {
	max     int
	clock   uint64
	origins map[uint64]*window
}

func newSeenSet(max int) *seenSet {
	return &seenSet{max: max, origins: make(map[uint64]*window, max)}
}

// fresh reports whether (origin, seq) is new, and records it.
func (s *seenSet) fresh(origin uint64, seq uint32) bool {
	s.clock++
	w := s.origins[origin]
	if w == nil {
		if len(s.origins) >= s.max {
			var oldest uint64
			var oldestUse uint64 = ^uint64(0)
			for o, x := range s.origins {
				if x.used < oldestUse {
					oldest, oldestUse = o, x.used
				}
			}
			w = s.origins[oldest]
			delete(s.origins, oldest)
			*w = window{}
		} else {
			w = new(window)
		}
		s.origins[origin] = w
		w.top = seq
		w.bits[0] = 1
		w.used = s.clock
		return true
	}
	w.used = s.clock
	return w.fresh(seq)
}
