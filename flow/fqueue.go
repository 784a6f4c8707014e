package flow

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// EventKind says what happened to a flow in a Set.
type EventKind uint8

// The event kinds; an Event carries one of them.
const (
	// Readable: Read will not block (it returns an SDU, or the peer's
	// end of data).
	Readable EventKind = 1 << iota
	// Closed: the flow is closed, locally or by the peer, or the peer is
	// gone, and nothing is left to read.
	Closed
)

// String returns "readable" or "closed".
func (k EventKind) String() string {
	switch k {
	case Readable:
		return "readable"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is a flow that is ready, and how.
type Event struct {
	Flow *Flow
	Kind EventKind
}

// Set watches many flows at once, like Ouroboros' fqueue (and poll(2)):
// flows are added, and Wait returns those that are readable or closed.
// It is level-triggered: a flow stays reported while it is readable.
// Flows signal their sets when data arrives or they close; nothing polls.
//
// A flow may be in several sets. Safe for concurrent use, but one Wait at
// a time.
type Set struct {
	mu      sync.Mutex
	members map[*Flow]*member
	ready   []*member // members signalled since the last Wait looked
	scratch []*member // Wait's copy of ready
	wake    chan struct{}
	closed  bool
}

type member struct {
	f      *Flow
	queued bool // in ready
}

// NewSet returns an empty Set.
func NewSet() *Set {
	return &Set{members: map[*Flow]*member{}, wake: make(chan struct{}, 1)}
}

// Add watches f. A flow already in the set is ErrExists.
func (s *Set) Add(f *Flow) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("flow: set add: %w", ErrClosed)
	}
	if _, ok := s.members[f]; ok {
		s.mu.Unlock()
		return fmt.Errorf("flow: set add flow %d: %w", f.info.ID, ErrExists)
	}
	s.members[f] = &member{f: f}
	s.mu.Unlock()
	f.queueReads() // readiness is what rxLoop queues
	f.setsMu.Lock()
	f.sets = append(f.sets, s)
	f.setsMu.Unlock()
	s.signal(f) // it may be ready already
	return nil
}

// Remove stops watching f; a flow not in the set is ignored.
func (s *Set) Remove(f *Flow) {
	f.setsMu.Lock()
	for i, x := range f.sets {
		if x == s {
			f.sets = append(f.sets[:i], f.sets[i+1:]...)
			break
		}
	}
	f.setsMu.Unlock()
	s.mu.Lock()
	if m, ok := s.members[f]; ok {
		delete(s.members, f)
		if m.queued {
			for i, x := range s.ready {
				if x == m {
					s.ready = append(s.ready[:i], s.ready[i+1:]...)
					break
				}
			}
		}
	}
	s.mu.Unlock()
}

// Len returns the number of flows in the set.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.members)
}

// Close ends a pending Wait (with ErrClosed) and forgets every flow.
func (s *Set) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	flows := make([]*Flow, 0, len(s.members))
	for f := range s.members {
		flows = append(flows, f)
	}
	s.mu.Unlock()
	for _, f := range flows {
		s.Remove(f)
	}
	signal(s.wake)
	return nil
}

// signal marks f as possibly ready and wakes Wait.
func (s *Set) signal(f *Flow) {
	s.mu.Lock()
	m, ok := s.members[f]
	if ok && !m.queued {
		m.queued = true
		s.ready = append(s.ready, m)
	}
	s.mu.Unlock()
	if ok {
		signal(s.wake)
	}
}

// Wait blocks until at least one flow in the set is readable or closed,
// or ctx ends, and returns the events appended to events[:0]: pass the
// previous result back in and a Wait in steady state allocates nothing.
// A closed flow is reported until it is removed.
func (s *Set) Wait(ctx context.Context, events []Event) ([]Event, error) {
	events = events[:0]
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return events, fmt.Errorf("flow: set wait: %w", ErrClosed)
		}
		s.scratch = append(s.scratch[:0], s.ready...)
		for _, m := range s.ready {
			m.queued = false
		}
		clear(s.ready)
		s.ready = s.ready[:0]
		s.mu.Unlock()

		// Check each signalled flow (its lock, not the set's, held).
		now := time.Now()
		for i, m := range s.scratch {
			if kind := m.f.state(now); kind != 0 {
				events = append(events, Event{Flow: m.f, Kind: kind})
			} else {
				s.scratch[i] = nil
			}
		}
		// Level-triggered: what is ready stays queued for the next Wait.
		s.mu.Lock()
		for _, m := range s.scratch {
			if m != nil && !m.queued && s.members[m.f] == m {
				m.queued = true
				s.ready = append(s.ready, m)
			}
		}
		clear(s.scratch)
		s.mu.Unlock()
		if len(events) > 0 {
			return events, nil
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return events, fmt.Errorf("flow: set wait: %w", ctx.Err())
		}
	}
}

// state reports whether f is readable or closed (0: neither).
func (f *Flow) state(now time.Time) EventKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closing:
		return Closed
	case f.eng != nil && f.eng.Readable(now):
		return Readable
	case f.eng == nil && f.rawReady.Load() > 0:
		return Readable
	case f.rxErr != nil, f.eng != nil && (f.eng.Err() != nil || f.eng.Finished()):
		return Closed
	}
	return 0
}

// notifySets signals every set f is in. Called without f.mu held.
func (f *Flow) notifySets() {
	f.setsMu.Lock()
	defer f.setsMu.Unlock()
	for _, s := range f.sets {
		s.signal(f)
	}
}
