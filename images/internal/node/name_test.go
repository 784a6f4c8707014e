package node

import (
	"regexp"
	"strings"
	"testing"
)

// nameRE is what validName implements.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"", false},
		{"a", true},
		{"9", true},
		{"echo.armory", true},
		{"vm-1_b.uni", true},
		{".a", false},
		{"-a", false},
		{"_a", false},
		{"a b", false},
		{"a/b", false},
		{"a\n", false},
		{"é", false},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
	} {
		if got := validName(tc.s); got != tc.want {
			t.Errorf("validName(%q) = %v, want %v", tc.s, got, tc.want)
		}
		if got := nameRE.MatchString(tc.s); got != tc.want {
			t.Errorf("the regular expression matches %q: %v, want %v", tc.s, got, tc.want)
		}
	}
}

// FuzzValidName: validName accepts exactly what the regular expression
// it replaces matches.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"", "a", "echo.armory", ".a", "a\n", strings.Repeat("b", 64), strings.Repeat("b", 65), "a-b_c.d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameRE.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, the regular expression says %v", s, got, want)
		}
	})
}
