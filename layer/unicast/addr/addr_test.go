package addr_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/addr"
)

// seeded is a deterministic entropy source for tests.
type seeded struct{ r *rand.ChaCha8 }

func (s seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

func newSeeded(seed byte) seeded { return seeded{rand.NewChaCha8([32]byte{seed})} }

func TestRandomNoCollisions(t *testing.T) {
	for _, width := range []int{4, 8} {
		a, err := addr.New(addr.Config{Kind: addr.Random, Width: width, Entropy: newSeeded(1)})
		if err != nil {
			t.Fatal(err)
		}
		members := addr.Set{}
		for range 2000 {
			got, err := a.Assign(members)
			if err != nil {
				t.Fatal(err)
			}
			if got == 0 || members.Has(got) {
				t.Fatalf("width %d: Assign = %#x: zero or taken", width, uint64(got))
			}
			if width == 4 && got>>32 != 0 {
				t.Fatalf("width 4: Assign = %#x, wider than 32 bits", uint64(got))
			}
			members[got] = struct{}{}
		}
	}
}

func TestRandomSkipsZeroAndTaken(t *testing.T) {
	// Entropy yields 0, then 5 (taken), then 7.
	src := bytes.NewReader([]byte{
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 5,
		0, 0, 0, 0, 0, 0, 0, 7,
	})
	a, _ := addr.New(addr.Config{Kind: addr.Random, Entropy: src})
	got, err := a.Assign(addr.Set{5: {}})
	if err != nil || got != 7 {
		t.Fatalf("Assign = %d, %v; want 7, nil", got, err)
	}
	// Entropy runs dry: the error says so.
	if _, err := a.Assign(nil); err == nil {
		t.Fatal("Assign with no entropy left: got nil error")
	}
}

type all struct{}

func (all) Has(layer.Addr) bool { return true }

func TestRandomExhausted(t *testing.T) {
	a, _ := addr.New(addr.Config{Kind: addr.Random, Entropy: newSeeded(2)})
	if _, err := a.Assign(all{}); !errors.Is(err, addr.ErrExhausted) {
		t.Fatalf("Assign with every address taken: %v, want ErrExhausted", err)
	}
}

func TestStatic(t *testing.T) {
	a, err := addr.New(addr.Config{Kind: addr.Static, Addr: 42})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Assign(addr.Set{1: {}}); got != 42 || err != nil {
		t.Fatalf("Assign = %d, %v; want 42, nil", got, err)
	}
	if _, err := a.Assign(addr.Set{42: {}}); !errors.Is(err, addr.ErrCollision) {
		t.Fatalf("Assign of a taken static address: %v, want ErrCollision", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]addr.Config{
		"random without entropy": {Kind: addr.Random},
		"static zero":            {Kind: addr.Static},
		"static too wide":        {Kind: addr.Static, Width: 4, Addr: 1 << 40},
		"width 2":                {Kind: addr.Static, Width: 2, Addr: 1},
		"unknown kind":           {Kind: 9},
	} {
		if _, err := addr.New(cfg); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

func TestFromKey(t *testing.T) {
	k1 := make([]byte, 32)
	k2 := make([]byte, 32)
	k2[0] = 1
	a := addr.FromKey("uni", 4, k1)
	if a == 0 || uint64(a) >= 1<<32 {
		t.Fatalf("FromKey width 4 = %#x, want non-zero below 2^32", a)
	}
	if addr.FromKey("uni", 4, k1) != a {
		t.Fatal("FromKey is not deterministic")
	}
	if addr.FromKey("uni", 4, k2) == a || addr.FromKey("other", 4, k1) == a {
		t.Fatal("FromKey ignores the key or the layer")
	}
	if b := addr.FromKey("uni", 8, k1); uint64(b)&(1<<32-1) != uint64(a) {
		t.Fatalf("width 8 address %#x does not extend the width 4 one %#x", b, a)
	}
}

// TestKeyed: the key's address first, the same for every Assigner of the
// same key and layer (a restarted member asks for its old address), and
// at random only once another member has it.
func TestKeyed(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, width := range []int{4, 8} {
		want := addr.FromKey("net", width, key)
		for seed := range byte(3) {
			a, err := addr.New(addr.Config{Kind: addr.Keyed, Width: width, Entropy: newSeeded(seed), Layer: "net", Key: key})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := a.Assign(addr.Set{1: {}}); got != want || err != nil {
				t.Fatalf("width %d seed %d: Assign = %#x, %v; want the key's %#x", width, seed, uint64(got), err, uint64(want))
			}
		}
		a, _ := addr.New(addr.Config{Kind: addr.Keyed, Width: width, Entropy: newSeeded(9), Layer: "net", Key: key})
		got, err := a.Assign(addr.Set{want: {}})
		if err != nil || got == want || got == 0 || (width == 4 && got>>32 != 0) {
			t.Fatalf("width %d: key's address taken: Assign = %#x, %v; want another address", width, uint64(got), err)
		}
		if other := addr.FromKey("other", width, key); other == want {
			t.Fatalf("width %d: the same address in two layers", width)
		}
	}
	// With a name: another address per name, the same for the same name.
	named := func(name string) layer.Addr {
		a, err := addr.New(addr.Config{Kind: addr.Keyed, Entropy: newSeeded(4), Layer: "net", Key: key, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Assign(nil)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if x, y, x2 := named("a.net"), named("b.net"), named("a.net"); x == y || x != x2 || x != addr.FromKeyName("net", 8, key, "a.net") || x == addr.FromKey("net", 8, key) {
		t.Fatalf("named addresses: a %#x, b %#x, a again %#x", uint64(x), uint64(y), uint64(x2))
	}
	if _, err := addr.New(addr.Config{Kind: addr.Keyed, Entropy: newSeeded(1)}); err == nil {
		t.Fatal("keyed without a key: got nil error")
	}
	if _, err := addr.New(addr.Config{Kind: addr.Keyed, Key: key}); err == nil {
		t.Fatal("keyed without entropy: got nil error")
	}
}
