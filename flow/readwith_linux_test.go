package flow_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// notInPlace hides what a port is beyond a BatchPort: a Flow over it
// cannot read it in place (nor directly), and reads through its receive
// loop's queue instead.
type notInPlace struct{ flow.BatchPort }

// TestFlowReadWithInPlace: a raw Flow over a program's shared rings
// hands ReadWith's use each SDU where it lies in the ring, intact, and
// counts it. The slot stays the program's while use runs: with the ring
// full, the node cannot write until use returned (a copy out of the
// ring, then use, would have freed the slot first).
func TestFlowReadWithInPlace(t *testing.T) {
	f, node := directPair(t)
	sizes := []int{1, 64, 1000, flow.MaxSDU}
	for i, size := range sizes {
		if err := node.Write(sdu(i, size), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	f.SetReadDeadline(time.Now().Add(5 * time.Second))
	total := 0
	for i, size := range sizes {
		var got []byte
		if err := f.ReadWith(func(p []byte) { got = append(got, p...) }); err != nil {
			t.Fatalf("ReadWith %d: %v", i, err)
		}
		if want := sdu(i, size); !bytes.Equal(got, want) {
			t.Fatalf("ReadWith %d: got %d bytes, want %d (seq %d)", i, len(got), len(want), i)
		}
		total += size
	}
	if s := f.Stats(); s.RecvSDUs != uint64(len(sizes)) || s.RecvBytes != uint64(total) {
		t.Errorf("Stats = %d SDUs, %d bytes; want %d, %d", s.RecvSDUs, s.RecvBytes, len(sizes), total)
	}

	run := make([][]byte, 16)
	for i := range run {
		run[i] = sdu(i, 100)
	}
	if n, err := node.WriteBatch(run, time.Now().Add(time.Second)); n != 16 || err != nil {
		t.Fatalf("WriteBatch of a ring's worth = %d, %v", n, err)
	}
	var during error
	if err := f.ReadWith(func([]byte) {
		during = node.Write(sdu(16, 100), time.Now().Add(50*time.Millisecond))
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(during, flow.ErrTimeout) {
		t.Fatalf("the node's write into a full ring while use held the first slot = %v, want ErrTimeout (the SDU was copied out of the ring)", during)
	}
	if err := node.Write(sdu(16, 100), time.Now().Add(time.Second)); err != nil {
		t.Fatalf("the node's write once ReadWith returned = %v", err)
	}
}

// TestFlowReadWithFallback: where the SDU cannot be read in place (a
// port that is not an InPlacePort; a flow over shared rings that a Set
// watches, read through a queue; a flow with FRCT) ReadWith reads it into
// a buffer of the Flow's and use gets the same SDU, counted.
func TestFlowReadWithFallback(t *testing.T) {
	cases := []struct {
		name string
		mk   func(t *testing.T) (*flow.Flow, func(p []byte) error)
	}{
		{"not in place", func(t *testing.T) (*flow.Flow, func([]byte) error) {
			prog, node := flow.ShmPair(t, 16)
			f, err := flow.New(notInPlace{prog.(flow.BatchPort)}, flow.Info{ID: 1, QoS: flow.Raw()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f, func(p []byte) error { return node.Write(p, time.Now().Add(time.Second)) }
		}},
		{"in a set", func(t *testing.T) (*flow.Flow, func([]byte) error) {
			f, node := directPair(t)
			s := flow.NewSet()
			t.Cleanup(func() { s.Close() })
			if err := s.Add(f); err != nil {
				t.Fatal(err)
			}
			return f, func(p []byte) error { return node.Write(p, time.Now().Add(time.Second)) }
		}},
		{"frct", func(t *testing.T) (*flow.Flow, func([]byte) error) {
			a, b := pair(t, flow.Data(), 64, nil)
			return b, func(p []byte) error { _, err := a.Write(p); return err }
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, send := c.mk(t)
			f.SetReadDeadline(time.Now().Add(5 * time.Second))
			sizes := []int{1, 64, 1000, f.MaxSDU()}
			total := 0
			for i, size := range sizes {
				if err := send(sdu(i, size)); err != nil {
					t.Fatal(err)
				}
				var got []byte
				if err := f.ReadWith(func(p []byte) { got = append(got, p...) }); err != nil {
					t.Fatalf("ReadWith %d: %v", i, err)
				}
				if want := sdu(i, size); !bytes.Equal(got, want) {
					t.Fatalf("ReadWith %d: got %d bytes, want %d", i, len(got), len(want))
				}
				total += size
			}
			if s := f.Stats(); s.RecvSDUs != uint64(len(sizes)) || s.RecvBytes != uint64(total) {
				t.Errorf("Stats = %d SDUs, %d bytes; want %d, %d", s.RecvSDUs, s.RecvBytes, len(sizes), total)
			}
		})
	}
}

// TestFlowReadWithDeadline: ReadWith of an empty flow ends when the
// read deadline passes, with Read's error and without calling use; a
// deadline set while it waits (in the past, or ahead) wakes it as it
// wakes Read, in place and through the queue alike.
func TestFlowReadWithDeadline(t *testing.T) {
	for _, inSet := range []bool{false, true} {
		name := map[bool]string{false: "in place", true: "in a set"}[inSet]
		t.Run(name+"/expires", func(t *testing.T) {
			f, _ := directPair(t)
			if inSet {
				s := flow.NewSet()
				defer s.Close()
				s.Add(f)
			}
			f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			start := time.Now()
			err := f.ReadWith(func([]byte) { t.Error("use called without an SDU") })
			if !errors.Is(err, flow.ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadWith after its deadline = %v, want ErrTimeout", err)
			}
			if took := time.Since(start); took < 40*time.Millisecond {
				t.Errorf("ReadWith returned after %v, before its deadline", took)
			}
		})
		for _, c := range []struct {
			name string
			dl   time.Duration
		}{{"past", -time.Second}, {"future", 80 * time.Millisecond}} {
			t.Run(name+"/moved "+c.name, func(t *testing.T) {
				f, _ := directPair(t)
				if inSet {
					s := flow.NewSet()
					defer s.Close()
					s.Add(f)
				}
				blockedSeesDeadline(t, f, c.dl, "ReadWith", func() error { return f.ReadWith(func([]byte) {}) })
			})
		}
	}
}

// TestFlowReadWithClosed: after Close, and for a ReadWith blocked when
// Close comes, the error wraps ErrClosed and net.ErrClosed; once the
// node closed the flow and what it sent was read, ErrClosed and io.EOF.
func TestFlowReadWithClosed(t *testing.T) {
	t.Run("blocked", func(t *testing.T) {
		f, _ := directPair(t)
		done := make(chan error, 1)
		go func() { done <- f.ReadWith(func([]byte) { t.Error("use called without an SDU") }) }()
		time.Sleep(30 * time.Millisecond) // ReadWith waits in the ring
		f.Close()
		select {
		case err := <-done:
			if !errors.Is(err, flow.ErrClosed) || !errors.Is(err, net.ErrClosed) {
				t.Fatalf("blocked ReadWith at Close = %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not wake a blocked ReadWith")
		}
		if err := f.ReadWith(func([]byte) {}); !errors.Is(err, flow.ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadWith after Close = %v, want ErrClosed", err)
		}
	})
	t.Run("by the node", func(t *testing.T) {
		f, node := directPair(t)
		if err := node.Write([]byte("last"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		node.Close()
		f.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got string
		if err := f.ReadWith(func(p []byte) { got = string(p) }); err != nil || got != "last" {
			t.Fatalf("ReadWith of what was sent before the close = %q, %v", got, err)
		}
		if err := f.ReadWith(func([]byte) {}); !errors.Is(err, flow.ErrClosed) || !errors.Is(err, io.EOF) {
			t.Fatalf("ReadWith once drained = %v, want ErrClosed and io.EOF", err)
		}
	})
}

// TestFlowReadWithZeroAllocs: ReadWith of one SDU (and the node's write
// of it) allocates nothing, in place and through the Flow's buffer.
// Run it without -race.
func TestFlowReadWithZeroAllocs(t *testing.T) {
	for _, inPlace := range []bool{true, false} {
		t.Run(map[bool]string{true: "in place", false: "not in place"}[inPlace], func(t *testing.T) {
			prog, node := flow.ShmPair(t, 16)
			if !inPlace {
				prog = notInPlace{prog.(flow.BatchPort)}
			}
			f, err := flow.New(prog, flow.Info{ID: 1, QoS: flow.Raw()})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			msg := sdu(1, 100)
			var n int
			use := func(p []byte) { n = len(p) }
			round := func() {
				if err := node.Write(msg, time.Time{}); err != nil {
					t.Fatal(err)
				}
				if err := f.ReadWith(use); n != len(msg) || err != nil {
					t.Fatal(n, err)
				}
			}
			for range 100 {
				round()
			}
			if allocs := testing.AllocsPerRun(1000, round); allocs != 0 {
				t.Errorf("got %v allocations per SDU written and read, want 0", allocs)
			}
		})
	}
}
