package impair

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/layertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder collects what a stage sends, in order.
type recorder struct {
	mu  sync.Mutex
	got []byte // first byte of each packet
}

func (r *recorder) send(b []byte, _ int) error {
	r.mu.Lock()
	r.got = append(r.got, b[0])
	r.mu.Unlock()
	return nil
}

func (r *recorder) snapshot() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func run(t *testing.T, cfg Config, n int) ([]byte, Stats) {
	t.Helper()
	r := &recorder{}
	cfg.Runner = layertest.Runner{}
	s, err := NewStage(cfg, r.send)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		if err := s.Write([]byte{byte(i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for what is held to come out.
	want := n - int(s.Stats().Dropped) + int(s.Stats().Duplicated) - int(s.Stats().Overflow)
	for deadline := time.Now().Add(2 * time.Second); len(r.snapshot()) < want; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("got %d packets, want %d", len(r.snapshot()), want)
		}
	}
	return r.snapshot(), s.Stats()
}

func TestImpairments(t *testing.T) {
	const n = 200
	for _, tc := range []struct {
		name  string
		cfg   Config
		check func(t *testing.T, got []byte, st Stats)
	}{
		{"none", Config{}, func(t *testing.T, got []byte, st Stats) {
			if len(got) != n || !slices.IsSorted(got) {
				t.Errorf("got %d packets (sorted %v), want %d in order", len(got), slices.IsSorted(got), n)
			}
		}},
		{"loss", Config{Seed: 1, Loss: 30}, func(t *testing.T, got []byte, st Stats) {
			if st.Dropped < 30 || st.Dropped > 90 || len(got) != n-int(st.Dropped) {
				t.Errorf("dropped %d of %d at 30%%, delivered %d", st.Dropped, n, len(got))
			}
		}},
		{"duplicate", Config{Seed: 1, Duplicate: 20}, func(t *testing.T, got []byte, st Stats) {
			if st.Duplicated == 0 || len(got) != n+int(st.Duplicated) {
				t.Errorf("duplicated %d, delivered %d", st.Duplicated, len(got))
			}
		}},
		{"reorder", Config{Seed: 1, Reorder: 20, ReorderDelay: 5 * time.Millisecond}, func(t *testing.T, got []byte, st Stats) {
			if st.Reordered == 0 || slices.IsSorted(got) || len(got) != n {
				t.Errorf("reordered %d, sorted %v, delivered %d", st.Reordered, slices.IsSorted(got), len(got))
			}
		}},
		{"delay", Config{Seed: 1, Delay: 10 * time.Millisecond}, func(t *testing.T, got []byte, st Stats) {
			if st.Delayed != n || !slices.IsSorted(got) {
				t.Errorf("delayed %d, sorted %v", st.Delayed, slices.IsSorted(got))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, st := run(t, tc.cfg, n)
			tc.check(t, got, st)
		})
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 42, Loss: 25, Duplicate: 10}
	a, _ := run(t, cfg, 300)
	b, _ := run(t, cfg, 300)
	if !slices.Equal(a, b) {
		t.Fatal("equal seeds gave different packet sequences")
	}
	cfg.Seed = 43
	if c, _ := run(t, cfg, 300); slices.Equal(a, c) {
		t.Fatal("different seeds gave the same sequence")
	}
}

func TestDelayTakesTime(t *testing.T) {
	start := time.Now()
	done := make(chan time.Time, 1)
	s, err := NewStage(Config{Delay: 20 * time.Millisecond, Runner: layertest.Runner{}}, func([]byte, int) error { done <- time.Now(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte{1}, 0)
	if got := (<-done).Sub(start); got < 20*time.Millisecond {
		t.Fatalf("delivered after %v, want >= 20ms", got)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Loss: -1}, {Loss: 101}, {Duplicate: 200}, {Delay: -1}} {
		if err := c.Validate(); !errors.Is(err, flow.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", c, err)
		}
	}
	if (Config{Seed: 9}).Enabled() {
		t.Error("a seed alone impairs nothing")
	}
	if _, err := NewStage(Config{Loss: 1}, func([]byte, int) error { return nil }); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("stage without a runner: got %v, want ErrInvalid", err)
	}
}

func TestCloseDropsHeld(t *testing.T) {
	s, err := NewStage(Config{Delay: time.Hour, Runner: layertest.Runner{}}, func([]byte, int) error { t.Error("sent after close"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte{1}, 0)
	s.Close()
	s.Close()
	if err := s.Write([]byte{1}, 0); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("write after close: got %v, want ErrClosed", err)
	}
}

// fakeConn is a PacketConn that records writes.
type fakeConn struct {
	PacketConn
	n int
}

func (f *fakeConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	f.n++
	return len(b), nil
}
func (f *fakeConn) Close() error { return nil }

func TestWrapUDP(t *testing.T) {
	fc := &fakeConn{}
	c, err := WrapUDP(fc, Config{Seed: 5, Loss: 100, Runner: layertest.Runner{}})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if n, err := c.WriteToUDPAddrPort([]byte{1}, netip.AddrPort{}); n != 1 || err != nil {
			t.Fatalf("got %d, %v", n, err)
		}
	}
	c.Close()
	if fc.n != 0 || c.Stats().Dropped != 10 {
		t.Fatalf("100%% loss let %d through, counted %d drops", fc.n, c.Stats().Dropped)
	}
}
