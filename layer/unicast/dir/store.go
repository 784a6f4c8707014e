package dir

import (
	"slices"
	"time"

	"github.com/ouronet/ouro/layer"
)

// value is one address stored under a key, until it expires.
type value struct {
	addr    layer.Addr
	expires time.Time
}

// stored is what this member holds for a key on others' behalf.
type stored struct {
	vals []value
	// received is when a MsgStore for the key last arrived: if another
	// holder replicated it recently, this one need not (Kademlia 2.5).
	received time.Time
}

// cached is a remote lookup's answer, kept until expires.
type cached struct {
	addrs   []layer.Addr
	expires time.Time
}

// put stores (a, until) in s, replacing an older expiry. It reports false
// if s is full.
func (s *stored) put(a layer.Addr, until time.Time) bool {
	for i := range s.vals {
		if s.vals[i].addr == a {
			if until.After(s.vals[i].expires) {
				s.vals[i].expires = until
			}
			return true
		}
	}
	if len(s.vals) >= MaxValues {
		return false
	}
	s.vals = append(s.vals, value{a, until})
	return true
}

// del withdraws a; it reports whether it was there.
func (s *stored) del(a layer.Addr) bool {
	i := slices.IndexFunc(s.vals, func(v value) bool { return v.addr == a })
	if i < 0 {
		return false
	}
	s.vals = slices.Delete(s.vals, i, i+1)
	return true
}

// expire drops values expired at now and returns how many it dropped.
func (s *stored) expire(now time.Time) int {
	n := len(s.vals)
	s.vals = slices.DeleteFunc(s.vals, func(v value) bool { return !now.Before(v.expires) })
	return n - len(s.vals)
}

// live appends the addresses not expired at now to out.
func (s *stored) live(now time.Time, out []layer.Addr) []layer.Addr {
	for _, v := range s.vals {
		if now.Before(v.expires) && !slices.Contains(out, v.addr) {
			out = append(out, v.addr)
		}
	}
	return out
}
