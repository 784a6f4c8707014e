package kernel

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *System)
		want string // substring of the error; "" for valid
	}{
		{"valid", func(s *System) {}, ""},
		{"duplicate name", func(s *System) { s.Rings = append(s.Rings, RingSpec{Name: "ep", Size: 4}) }, `"ep": name already used`},
		{"empty name", func(s *System) { s.Endpoints = append(s.Endpoints, ObjectSpec{}) }, "empty name"},
		{"bad ring size", func(s *System) { s.Rings[0].Size = 0 }, "size 0"},
		{"cap to nothing", func(s *System) { s.Components[0].Caps[0].Object = "nope" }, `no object "nope"`},
		{"no rights", func(s *System) { s.Components[0].Caps[0].Rights = 0 }, "rights ----"},
		{"duplicate slot", func(s *System) { s.Components[0].Caps[1].Name = "ep" }, `duplicate slot name "ep"`},
		{"unknown supervisor", func(s *System) { s.Components[2].Supervisor = "zz" }, `no supervisor "zz"`},
		{"supervisor cycle", func(s *System) { s.Components[0].Supervisor = "b"; s.Components[1].Supervisor = "a" }, "supervisor cycle"},
		{"fault endpoint not held", func(s *System) {
			s.Components[2].Supervisor = "a"
			s.Components[2].FaultEndpoint = "ep"
			s.Components[0].Caps[0].Rights = Write
		}, "holds no Read cap"},
		{"fault endpoint not an endpoint", func(s *System) { s.Components[2].Supervisor = "a"; s.Components[2].FaultEndpoint = "n" }, "not an endpoint"},
		{"negative budget", func(s *System) { s.Components[0].Budget.Bufs = -1 }, "negative budget"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := pair(AllRights)
			tc.edit(s)
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidCap) && !errors.Is(err, ErrNoBudget) {
				t.Fatalf("got %v, want it to wrap a kernel sentinel", err)
			}
		})
	}
}

func TestRender(t *testing.T) {
	s := pair(Write | GrantReply)
	s.Components[0].Caps[1].Badge = 0x2a
	s.Components[2].Supervisor = "b"
	for _, tc := range []struct {
		name string
		out  string
		want []string
	}{
		{"table", s.Table(), []string{"COMPONENT  SLOT  OBJECT  KIND", "a          ep    ep      endpoint      -W-C    -", "notification  RWGC    0x2a", "c          -"}},
		{"dot", s.Dot(), []string{"digraph system", `"a" -> "ep" [label="ep -W-C"]`, `"r" [shape=cylinder]`, `"b" -> "c" [style=dashed`, `label="n RWGC badge 0x2a"`}},
		{"mermaid", s.Mermaid(), []string{"flowchart LR", `-->|"ep -W-C"|`, `[("r")]`, "-.->|supervises|"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(tc.out, w) {
					t.Errorf("got\n%s\nwant it to contain %q", tc.out, w)
				}
			}
		})
	}
}

func TestSystemJSON(t *testing.T) {
	s := pair(Read | Write)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"rights":"RW--"`) {
		t.Fatalf("JSON: got %s, want rights as text", b)
	}
	var back System
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Components[0].Caps[0].Rights != Read|Write || back.Rings[0].Size != 8 {
		t.Fatalf("round trip: got %+v", back)
	}
}

func TestDescribeLive(t *testing.T) {
	k, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	r, err := a.NewRing(5)
	if err != nil {
		t.Fatal(err)
	}
	d := k.Describe()
	if err := d.Validate(); err != nil {
		t.Fatalf("Describe().Validate(): %v", err)
	}
	var found bool
	for _, rs := range d.Rings {
		if strings.HasPrefix(rs.Name, "a.ring") && rs.Size == 8 {
			found = true
		}
	}
	if !found {
		t.Fatalf("Describe rings: got %+v, want a.ring* of size 8 (5 rounded up)", d.Rings)
	}
	if !strings.Contains(d.Table(), "#"+itoa(int(r))) {
		t.Fatalf("Describe table: got\n%s\nwant the unnamed slot #%d", d.Table(), r)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
