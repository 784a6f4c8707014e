package sealflow

import (
	"sync"
	"time"

	"github.com/ouronet/ouro/crypto/kex"
)

// Resumption tickets (crypto/kex, resume.go): every finished key
// exchange leaves both ends a ticket, from which the next sealed
// allocation between the same two members resumes in one round trip
// (Resume, then a Resp carrying the answer) instead of two, without
// signatures or ML-KEM.
//
// A requester keeps its tickets by the address of the member that
// issued them (K: a layer address, a shim's peer address) (up to MaxTicketsPerPeer each, so that allocations made at
// once can each resume); a responder keeps its own by identifier. Each
// is used once: taking it removes it, so a replayed Resume finds nothing
// and is answered ResNoTicket, as is one whose ticket expired, was
// evicted or died with a restart; the requester then makes the full key
// exchange. Both stores are bounded.
const (
	// DefaultTicketLife is how long a ticket stays usable.
	DefaultTicketLife = 10 * time.Minute
	MaxTicketsPerPeer = 4
	MaxTicketPeers    = 1024
	MaxServedTickets  = 4096
)

// Tickets are a flow allocator's resumption tickets, both roles. Safe
// for concurrent use.
type Tickets[K comparable] struct {
	life time.Duration

	mu  sync.Mutex
	out map[K][]heldTicket                    // as requester: by the issuer's address, oldest first
	in  map[[kex.TicketIDSize]byte]heldTicket // as responder: by identifier
}

type heldTicket struct {
	t       kex.Ticket
	expires time.Time
}

// NewTickets returns a store whose tickets live for life.
func NewTickets[K comparable](life time.Duration) *Tickets[K] {
	return &Tickets[K]{
		life: life,
		out:  make(map[K][]heldTicket),
		in:   make(map[[kex.TicketIDSize]byte]heldTicket),
	}
}

// TakeOut returns (and forgets) the newest live ticket issued by dst.
func (s *Tickets[K]) TakeOut(dst K, now time.Time) (kex.Ticket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.out[dst]
	for len(ts) > 0 {
		h := ts[len(ts)-1]
		ts = ts[:len(ts)-1]
		if now.Before(h.expires) {
			s.setOut(dst, ts)
			return h.t, true
		}
	}
	delete(s.out, dst)
	return kex.Ticket{}, false
}

// PutOut keeps a ticket issued by dst.
func (s *Tickets[K]) PutOut(dst K, t kex.Ticket, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.out[dst]
	if ts == nil && len(s.out) >= MaxTicketPeers {
		s.expireOut(now)
		for a := range s.out { // still full: one peer's tickets go
			if len(s.out) < MaxTicketPeers {
				break
			}
			delete(s.out, a)
		}
	}
	if len(ts) >= MaxTicketsPerPeer {
		ts = append(ts[:0], ts[1:]...) // the oldest goes
	}
	s.out[dst] = append(ts, heldTicket{t: t, expires: now.Add(s.life)})
}

func (s *Tickets[K]) setOut(dst K, ts []heldTicket) {
	if len(ts) == 0 {
		delete(s.out, dst)
		return
	}
	s.out[dst] = ts
}

// expireOut forgets expired requester tickets; s.mu is held.
func (s *Tickets[K]) expireOut(now time.Time) {
	for a, ts := range s.out {
		live := ts[:0]
		for _, h := range ts {
			if now.Before(h.expires) {
				live = append(live, h)
			}
		}
		s.setOut(a, live)
	}
}

// TakeIn returns (and forgets) the responder's ticket id, if it is live.
func (s *Tickets[K]) TakeIn(id [kex.TicketIDSize]byte, now time.Time) (kex.Ticket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.in[id]
	if !ok {
		return kex.Ticket{}, false
	}
	delete(s.in, id)
	return h.t, now.Before(h.expires)
}

// PutIn keeps a ticket this member issued.
func (s *Tickets[K]) PutIn(t kex.Ticket, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.in) >= MaxServedTickets {
		for id, h := range s.in {
			if !now.Before(h.expires) {
				delete(s.in, id)
			}
		}
		for id := range s.in { // still full: any one goes
			if len(s.in) < MaxServedTickets {
				break
			}
			delete(s.in, id)
		}
	}
	s.in[t.ID] = heldTicket{t: t, expires: now.Add(s.life)}
}
