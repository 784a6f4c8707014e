package flow_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

func waitEvents(t *testing.T, s *flow.Set, events []flow.Event) []flow.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	events, err := s.Wait(ctx, events)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return events
}

func TestSet(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			s := flow.NewSet()
			defer s.Close()
			var writers, readers []*flow.Flow
			for i := 0; i < 3; i++ {
				a, b := pair(t, p.q, 16, nil)
				writers, readers = append(writers, a), append(readers, b)
				if err := s.Add(b); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Add(readers[0]); !errors.Is(err, flow.ErrExists) {
				t.Fatalf("second Add = %v, want ErrExists", err)
			}
			// Nothing ready: Wait blocks until its context ends.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			ev, err := s.Wait(ctx, nil)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || len(ev) != 0 {
				t.Fatalf("Wait with nothing ready = %v, %v; want DeadlineExceeded", ev, err)
			}

			writers[1].Write([]byte("for 1"))
			ev = waitEvents(t, s, ev)
			if len(ev) != 1 || ev[0].Flow != readers[1] || ev[0].Kind != flow.Readable {
				t.Fatalf("Wait = %v, want flow 1 readable", ev)
			}
			// Level-triggered: still readable until read.
			ev = waitEvents(t, s, ev)
			if len(ev) != 1 || ev[0].Flow != readers[1] {
				t.Fatalf("second Wait = %v, want flow 1 again", ev)
			}
			buf := make([]byte, 16)
			if n, err := readers[1].Read(buf); err != nil || string(buf[:n]) != "for 1" {
				t.Fatalf("Read = %q, %v", buf[:n], err)
			}

			// The peer closes: Closed once everything was read.
			writers[2].Close()
			for {
				ev = waitEvents(t, s, ev)
				if len(ev) != 1 || ev[0].Flow != readers[2] {
					t.Fatalf("Wait = %v, want flow 2", ev)
				}
				if ev[0].Kind == flow.Closed {
					break
				}
				if _, err := readers[2].Read(buf); !errors.Is(err, flow.ErrClosed) {
					t.Fatalf("Read of a readable flow whose peer closed = %v, want ErrClosed", err)
				}
			}
			s.Remove(readers[2])
			if s.Len() != 2 {
				t.Fatalf("Len() = %d after Remove, want 2", s.Len())
			}
		})
	}
}

func TestSetCloseEndsWait(t *testing.T) {
	s := flow.NewSet()
	done := make(chan error, 1)
	go func() { _, err := s.Wait(context.Background(), nil); done <- err }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, flow.ErrClosed) {
			t.Fatalf("Wait across Close = %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("Close did not end Wait")
	}
}

func TestSetZeroAllocs(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			s := flow.NewSet()
			defer s.Close()
			a, b := pair(t, p.q, 16, nil)
			s.Add(b)
			a.Write([]byte("ready"))
			ctx := context.Background()
			ev := waitEvents(t, s, nil)
			allocs := testing.AllocsPerRun(100, func() {
				ev, _ = s.Wait(ctx, ev)
			})
			if allocs != 0 || len(ev) != 1 {
				t.Fatalf("Wait on a ready flow: %v allocations, %d events; want 0, 1", allocs, len(ev))
			}
		})
	}
}
