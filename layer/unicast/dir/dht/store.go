package dht

import (
	"crypto/ed25519"
	"slices"
	"time"

	"github.com/ouronet/ouro/layer"
)

// value is one address stored under a key, until it expires, and the
// owner's signed record of it (forwarded as is when replicated).
type value struct {
	addr    layer.Addr
	expires time.Time
	rec     Record
	gone    bool // withdrawn: kept until expires to refuse replays of older records
	cert    bool // the record's certificate certifies it (NamesPolicy)
}

// stored is what this member holds for a key on others' behalf. All its
// values share one owner key: the key of the first record stored while
// none was live (first come, first owner).
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

// Outcomes of stored.apply.
const (
	applied      = iota // stored, refreshed or withdrawn
	notOwner            // another key owns the name
	replay              // not newer than what is held for the address
	full                // MaxValues reached
	notCertOwner        // another key's certificate lists the name
)

// certOwner returns the key of the live certified values, or nil.
func (s *stored) certOwner(now time.Time) ed25519.PublicKey {
	for _, v := range s.vals {
		if v.cert && !v.gone && now.Before(v.expires) {
			return v.rec.Key
		}
	}
	return nil
}

// owner returns the key of the live values, or nil.
func (s *stored) owner(now time.Time) ed25519.PublicKey {
	for _, v := range s.vals {
		if !v.gone && now.Before(v.expires) {
			return v.rec.Key
		}
	}
	return nil
}

// apply applies a verified record: a registration is held for its TTL
// (at most until), a withdrawal removes its address. Only the
// name's owner may do either, and only with a record newer than the one
// held for the address (the same record again refreshes nothing).
//
// owner, if not nil, is the name's owner known besides s (this member's
// own registrations of the name).
//
// cert says that r's certificate certifies it (NamesPolicy): then r is
// taken whoever registered the name first, and the values of other keys
// are dropped. A record without is refused (notCertOwner) while another
// key's certified value lives.
func (s *stored) apply(r Record, owner ed25519.PublicKey, cert bool, until, now time.Time) int {
	if co := s.certOwner(now); co != nil && !co.Equal(ed25519.PublicKey(r.Key)) {
		if !cert {
			return notCertOwner
		}
		// Two keys certified for one name (the authority issued both):
		// the first stays, as for first come.
		return notOwner
	}
	if cert {
		s.vals = slices.DeleteFunc(s.vals, func(v value) bool { return !ed25519.PublicKey(v.rec.Key).Equal(ed25519.PublicKey(r.Key)) })
		owner = r.Key
	}
	if owner == nil {
		owner = s.owner(now)
	}
	if owner != nil && !owner.Equal(ed25519.PublicKey(r.Key)) {
		return notOwner
	}
	i := slices.IndexFunc(s.vals, func(v value) bool { return v.addr == r.Addr })
	sameKey := i >= 0 && ed25519.PublicKey(s.vals[i].rec.Key).Equal(ed25519.PublicKey(r.Key))
	if i >= 0 && !sameKey && !s.vals[i].gone && now.Before(s.vals[i].expires) {
		return notOwner // another key's live record of the address
	}
	if sameKey && r.Seq <= s.vals[i].rec.Seq {
		if r.Seq == s.vals[i].rec.Seq {
			return applied // a replica of what is held
		}
		return replay
	}
	v := value{addr: r.Addr, expires: until, rec: r, gone: !r.live(), cert: cert}
	if exp := now.Add(time.Duration(r.TTL) * time.Second); !v.gone && exp.Before(until) {
		v.expires = exp
	}
	if i >= 0 {
		s.vals[i] = v
		return applied
	}
	if len(s.vals) >= MaxValues {
		return full
	}
	s.vals = append(s.vals, v)
	return applied
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

// live appends the records not withdrawn nor expired at now to out.
func (s *stored) live(now time.Time, out []Record) []Record {
	for _, v := range s.vals {
		if !v.gone && now.Before(v.expires) && !slices.ContainsFunc(out, func(r Record) bool { return r.Addr == v.addr }) {
			out = append(out, v.rec)
		}
	}
	return out
}
