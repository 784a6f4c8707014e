package irm

import (
	"errors"
	"strings"
	"testing"

	"github.com/ouronet/ouro/flow"
)

func TestTargetArgsCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    TargetArgs
		ok   bool
	}{
		{"a bridge", TargetArgs{Kind: TargetIPNet, Name: "ip.n"}, true},
		{"longest name", TargetArgs{Kind: TargetIPNet, Name: strings.Repeat("n", maxTargetName)}, true},
		{"unknown kind", TargetArgs{Kind: "ipcp", Name: "ip.n"}, false},
		{"no name", TargetArgs{Kind: TargetIPNet}, false},
		{"long name", TargetArgs{Kind: TargetIPNet, Name: strings.Repeat("n", maxTargetName+1)}, false},
		{"space", TargetArgs{Kind: TargetIPNet, Name: "ip n"}, false},
		{"control", TargetArgs{Kind: TargetIPNet, Name: "ip\x1b[2Jn"}, false},
		{"not ASCII", TargetArgs{Kind: TargetIPNet, Name: "ip\u00a0n"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.a.Check()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, flow.ErrInvalid)) {
				t.Fatalf("Check(%+v) = %v, want ok %v (else ErrInvalid)", tc.a, err, tc.ok)
			}
		})
	}
}

// FuzzTargetArgs: no OpTarget body crashes the IRM's decoder (the node's
// control codec, with its limits) or Check; what Check takes encodes
// back to a body that decodes to the same.
func FuzzTargetArgs(f *testing.F) {
	codec := flow.NewCodec()
	for _, a := range []TargetArgs{{Kind: TargetIPNet, Name: "ip.n"}, {Kind: "x", Name: ""}} {
		b, err := codec.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x82, 0x65})
	f.Fuzz(func(t *testing.T, body []byte) {
		var a TargetArgs
		if codec.Unmarshal(body, &a) != nil || a.Check() != nil {
			return
		}
		b, err := codec.Marshal(a)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", a, err)
		}
		var again TargetArgs
		if err := codec.Unmarshal(b, &again); err != nil || again != a {
			t.Fatalf("%+v re-encoded decodes to %+v, %v", a, again, err)
		}
	})
}
