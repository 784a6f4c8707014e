package fa

import (
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/kex"
	"github.com/ouronet/ouro/layer"
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
	s := newTicketStore(time.Minute)

	// Requester: newest first, once each, at most maxTicketsPerPeer.
	for i := range maxTicketsPerPeer + 2 {
		s.putOut(7, ticket(i), now)
	}
	for i := maxTicketsPerPeer + 1; i >= 2; i-- {
		got, ok := s.takeOut(7, now)
		if !ok || got.ID != ticket(i).ID {
			t.Fatalf("take %d: %x, %v", i, got.ID[:3], ok)
		}
	}
	if _, ok := s.takeOut(7, now); ok {
		t.Fatal("more tickets than maxTicketsPerPeer kept")
	}
	s.putOut(7, ticket(1), now)
	if _, ok := s.takeOut(7, now.Add(time.Minute)); ok {
		t.Fatal("an expired requester ticket was taken")
	}
	for i := range maxTicketPeers + 10 {
		s.putOut(layer.Addr(i+1), ticket(i), now)
	}
	if out, _ := s.sizes(); out > maxTicketPeers {
		t.Fatalf("%d requester tickets kept, bound %d", out, maxTicketPeers)
	}

	// Responder: once each, expiry, bound.
	s.putIn(ticket(1), now)
	if got, ok := s.takeIn(ticket(1).ID, now); !ok || got.Secret != ticket(1).Secret {
		t.Fatal("the responder's ticket was not found")
	}
	if _, ok := s.takeIn(ticket(1).ID, now); ok {
		t.Fatal("a responder ticket was taken twice")
	}
	s.putIn(ticket(2), now)
	if _, ok := s.takeIn(ticket(2).ID, now.Add(time.Minute)); ok {
		t.Fatal("an expired responder ticket was taken")
	}
	for i := range maxServedTickets + 100 {
		s.putIn(ticket(i), now)
	}
	if _, in := s.sizes(); in > maxServedTickets {
		t.Fatalf("%d responder tickets kept, bound %d", in, maxServedTickets)
	}
}

// sizes returns how many tickets each role holds.
func (s *ticketStore) sizes() (out, in int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ts := range s.out {
		out += len(ts)
	}
	return out, len(s.in)
}
