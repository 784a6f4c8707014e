package faultinject

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     []byte
		panic bool
	}{
		{"empty", nil, false},
		{"clean", []byte("an ordinary packet, longer than the magic"), false},
		{"prefix only", []byte(Poison[:15]), false},
		{"exact", []byte(Poison), true},
		{"inside", []byte("xx" + Poison + "yy"), true},
		{"at the end", []byte(strings.Repeat("\xf0", 40) + Poison), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got any
			func() {
				defer func() { got = recover() }()
				Check("test/site", tc.b)
			}()
			want := tc.panic && Enabled
			if (got != nil) != want {
				t.Fatalf("got panic %v, want panic %v (Enabled %v)", got, want, Enabled)
			}
			if got != nil && !strings.Contains(got.(string), "test/site") {
				t.Fatalf("panic %q does not name the site", got)
			}
		})
	}
}

func TestCheckAllocs(t *testing.T) {
	b := []byte(strings.Repeat("ouro \xf0\x0d", 200))
	if n := testing.AllocsPerRun(100, func() { Check("x", b) }); n != 0 {
		t.Fatalf("got %v allocations per check, want 0", n)
	}
}
