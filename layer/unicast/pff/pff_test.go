package pff_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

func mustNew(t testing.TB, k pff.Kind) *pff.Table {
	t.Helper()
	tb, err := pff.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestNewUnknownKind(t *testing.T) {
	if _, err := pff.New(pff.Kind(9)); err == nil {
		t.Fatal("New(9): got nil error, want one")
	}
}

func TestParseKind(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want pff.Kind
	}{{"simple", pff.Simple}, {"alternate", pff.Alternate}, {"multipath", pff.Multipath}, {"lfa", pff.Alternate}} {
		got, err := pff.ParseKind(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := pff.ParseKind("nope"); err == nil {
		t.Error(`ParseKind("nope"): got nil error`)
	}
}

func TestLookup(t *testing.T) {
	routes := pff.Routes{1: {10, 11}, 2: {20}, 3: {30, 31, 32}}
	for _, tc := range []struct {
		kind pff.Kind
		dst  layer.Addr
		want []pff.Port // acceptable answers
	}{
		{pff.Simple, 1, []pff.Port{10}},
		{pff.Simple, 3, []pff.Port{30}},
		{pff.Alternate, 1, []pff.Port{10}},
		{pff.Alternate, 2, []pff.Port{20}},
		{pff.Multipath, 3, []pff.Port{30, 31, 32}},
		{pff.Multipath, 2, []pff.Port{20}},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			tb := mustNew(t, tc.kind)
			tb.Replace(routes)
			got, ok := tb.Lookup(tc.dst, 7)
			if !ok || !slices.Contains(tc.want, got) {
				t.Fatalf("Lookup(%d) = %d, %v; want one of %v", tc.dst, got, ok, tc.want)
			}
			if _, ok := tb.Lookup(99, 7); ok {
				t.Fatal("Lookup(99): got ok, want no route")
			}
		})
	}
}

func TestReplaceCopies(t *testing.T) {
	tb := mustNew(t, pff.Simple)
	r := pff.Routes{1: {10}}
	tb.Replace(r)
	r[1][0] = 99
	if got, _ := tb.Lookup(1, 0); got != 10 {
		t.Fatalf("after caller mutated its map: Lookup = %d, want 10", got)
	}
}

func TestStoredHops(t *testing.T) {
	r := pff.Routes{1: {10, 11, 12}}
	for _, tc := range []struct {
		kind pff.Kind
		want []pff.Port
	}{
		{pff.Simple, []pff.Port{10}},
		{pff.Alternate, []pff.Port{10, 11}},
		{pff.Multipath, []pff.Port{10, 11, 12}},
	} {
		tb := mustNew(t, tc.kind)
		tb.Replace(r)
		if got := tb.NextHops(1); !slices.Equal(got, tc.want) {
			t.Errorf("%v: NextHops = %v, want %v", tc.kind, got, tc.want)
		}
	}
}

func TestAlternatePortDown(t *testing.T) {
	tb := mustNew(t, pff.Alternate)
	tb.Replace(pff.Routes{1: {10, 11}, 2: {10, 12}, 3: {11, 10}, 4: {10}})
	tb.PortDown(10)
	for _, tc := range []struct {
		dst  layer.Addr
		want pff.Port
		ok   bool
	}{{1, 11, true}, {2, 12, true}, {3, 11, true}, {4, 0, false}} {
		got, ok := tb.Lookup(tc.dst, 0)
		if got != tc.want || ok != tc.ok {
			t.Errorf("after PortDown(10): Lookup(%d) = %d, %v; want %d, %v", tc.dst, got, ok, tc.want, tc.ok)
		}
	}
	// A stale Replace from routing that still uses port 10 keeps it out.
	tb.Replace(pff.Routes{1: {10, 11}})
	if got, _ := tb.Lookup(1, 0); got != 11 {
		t.Errorf("stale Replace: Lookup(1) = %d, want 11", got)
	}
	tb.PortUp(10)
	if got, _ := tb.Lookup(1, 0); got != 10 {
		t.Errorf("after PortUp(10): Lookup(1) = %d, want 10", got)
	}
	// Routing caught up: a Replace without the port forgets the mark.
	tb.PortDown(10)
	tb.Replace(pff.Routes{1: {11}})
	tb.Replace(pff.Routes{1: {10, 11}})
	if got, _ := tb.Lookup(1, 0); got != 10 {
		t.Errorf("after Replace without port 10 then with it: Lookup(1) = %d, want 10", got)
	}
}

func TestMultipathSticky(t *testing.T) {
	tb := mustNew(t, pff.Multipath)
	tb.Replace(pff.Routes{1: {10, 11, 12, 13}})
	used := map[pff.Port]int{}
	before := map[uint64]pff.Port{}
	for h := range uint64(4000) {
		p, _ := tb.Lookup(1, h)
		if again, _ := tb.Lookup(1, h); again != p {
			t.Fatalf("flow %d: Lookup not stable: %d then %d", h, p, again)
		}
		used[p]++
		before[h] = p
	}
	for p, n := range used {
		if n < 700 || n > 1300 {
			t.Errorf("port %d carries %d of 4000 flows, want about 1000", p, n)
		}
	}
	tb.PortDown(12)
	moved := 0
	for h, was := range before {
		p, _ := tb.Lookup(1, h)
		if p == 12 {
			t.Fatalf("flow %d still on down port 12", h)
		}
		if was != 12 && p != was {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("PortDown(12) moved %d flows that were not on port 12, want 0", moved)
	}
}

func TestConcurrent(t *testing.T) {
	tb := mustNew(t, pff.Alternate)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if p, ok := tb.Lookup(1, 0); ok && p != 10 && p != 11 {
					t.Errorf("Lookup = %d, want 10 or 11", p)
					return
				}
			}
		})
	}
	for i := range 200 {
		tb.Replace(pff.Routes{1: {10, 11}})
		if i%2 == 0 {
			tb.PortDown(10)
		} else {
			tb.PortUp(10)
		}
	}
	close(stop)
	wg.Wait()
}

func TestLookupAllocs(t *testing.T) {
	for _, k := range []pff.Kind{pff.Simple, pff.Alternate, pff.Multipath} {
		tb := mustNew(t, k)
		tb.Replace(pff.Routes{1: {10, 11, 12}})
		if n := testing.AllocsPerRun(1000, func() { tb.Lookup(1, 42) }); n != 0 {
			t.Errorf("%v: Lookup allocates %v per call, want 0", k, n)
		}
	}
}

func benchTable(b *testing.B, k pff.Kind) *pff.Table {
	tb := mustNew(b, k)
	r := make(pff.Routes, 1000)
	for i := range layer.Addr(1000) {
		r[i+1] = []pff.Port{pff.Port(i%4 + 1), pff.Port((i+1)%4 + 1), pff.Port((i+2)%4 + 1)}
	}
	tb.Replace(r)
	return tb
}

func BenchmarkLookup(b *testing.B) {
	for _, k := range []pff.Kind{pff.Simple, pff.Alternate, pff.Multipath} {
		b.Run(k.String(), func(b *testing.B) {
			tb := benchTable(b, k)
			b.ReportAllocs()
			i := uint64(0)
			for b.Loop() {
				i++
				tb.Lookup(layer.Addr(i%1000+1), i)
			}
		})
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	tb := benchTable(b, pff.Multipath)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			i++
			tb.Lookup(layer.Addr(i%1000+1), i)
		}
	})
}
