package sealflow

import (
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/kex"
)

func ticket(i int) kex.Ticket {
	var t kex.Ticket
	t.ID[0], t.ID[1], t.ID[2] = byte(i), byte(i>>8), byte(i>>16)
	t.Secret[0] = byte(i)
	return t
}

// TestTicketStore: tickets are used once, expire, and both roles' stores
// stay within their bounds whatever is put in.
func TestTicketStore(t *testing.T) {
	now := time.Now()
	s := NewTickets[int](time.Minute)

	// Requester: newest first, once each, at most MaxTicketsPerPeer.
	for i := range MaxTicketsPerPeer + 2 {
		s.PutOut(7, ticket(i), now)
	}
	for i := MaxTicketsPerPeer + 1; i >= 2; i-- {
		got, ok := s.TakeOut(7, now)
		if !ok || got.ID != ticket(i).ID {
			t.Fatalf("take %d: %x, %v", i, got.ID[:3], ok)
		}
	}
	if _, ok := s.TakeOut(7, now); ok {
		t.Fatal("more tickets than MaxTicketsPerPeer kept")
	}
	s.PutOut(7, ticket(1), now)
	if _, ok := s.TakeOut(7, now.Add(time.Minute)); ok {
		t.Fatal("an expired requester ticket was taken")
	}
	for i := range MaxTicketPeers + 10 {
		s.PutOut(i+1, ticket(i), now)
	}
	if out, _ := s.sizes(); out > MaxTicketPeers {
		t.Fatalf("%d requester tickets kept, bound %d", out, MaxTicketPeers)
	}

	// Responder: once each, expiry, bound.
	s.PutIn(ticket(1), now)
	if got, ok := s.TakeIn(ticket(1).ID, now); !ok || got.Secret != ticket(1).Secret {
		t.Fatal("the responder's ticket was not found")
	}
	if _, ok := s.TakeIn(ticket(1).ID, now); ok {
		t.Fatal("a responder ticket was taken twice")
	}
	s.PutIn(ticket(2), now)
	if _, ok := s.TakeIn(ticket(2).ID, now.Add(time.Minute)); ok {
		t.Fatal("an expired responder ticket was taken")
	}
	for i := range MaxServedTickets + 100 {
		s.PutIn(ticket(i), now)
	}
	if _, in := s.sizes(); in > MaxServedTickets {
		t.Fatalf("%d responder tickets kept, bound %d", in, MaxServedTickets)
	}
}

// sizes returns how many tickets each role holds.
func (s *Tickets[K]) sizes() (out, in int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ts := range s.out {
		out += len(ts)
	}
	return out, len(s.in)
}
