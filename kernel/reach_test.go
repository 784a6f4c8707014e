package kernel

import (
	"fmt"
	"testing"
)

// nodeLike is a node's shape: the IRM serves irm.ep and holds caps to
// call and restart the IPCP; the IPCP serves ipcp.ep and calls the IRM
// with a badge; an application calls the IRM and shares a flow's ring
// and a notification with the IPCP; svc is reached only by the IRM.
func nodeLike() *System {
	return &System{
		Endpoints:     []ObjectSpec{{Name: "irm.ep"}, {Name: "ipcp.ep"}, {Name: "svc.ep"}},
		Notifications: []ObjectSpec{{Name: "n"}},
		Rings:         []RingSpec{{Name: "up", Size: 4}, {Name: "down", Size: 4}},
		Components: []ComponentSpec{
			{Name: "irm", Caps: []CapSpec{
				{Name: "ep", Object: "irm.ep", Rights: AllRights},
				{Name: "ipcp", Object: "ipcp.ep", Rights: Write | Grant | GrantReply},
				{Name: "ipcp.c", Object: "ipcp", Rights: Write},
				{Name: "svc", Object: "svc.ep", Rights: Write | GrantReply},
			}},
			{Name: "ipcp", Supervisor: "irm", Caps: []CapSpec{
				{Name: "ep", Object: "ipcp.ep", Rights: Read},
				{Name: "irm", Object: "irm.ep", Rights: Write | GrantReply, Badge: 1},
				{Name: "up", Object: "up", Rights: Read},
				{Name: "down", Object: "down", Rights: Write},
				{Name: "n", Object: "n", Rights: Read},
			}},
			{Name: "app", Caps: []CapSpec{
				{Name: "irm", Object: "irm.ep", Rights: Write | GrantReply, Badge: 2},
				{Name: "up", Object: "up", Rights: Write},
				{Name: "down", Object: "down", Rights: Read},
				{Name: "n", Object: "n", Rights: Write},
				{Name: "self", Object: "app", Rights: Write},
			}},
			{Name: "svc", Caps: []CapSpec{{Name: "ep", Object: "svc.ep", Rights: Read}}},
		},
	}
}

func TestReach(t *testing.T) {
	s := nodeLike()
	for _, tc := range []struct {
		from, to string
		want     bool
	}{
		{"app", "irm", true},  // Write on the endpoint the IRM receives on
		{"app", "ipcp", true}, // the ring it pushes into, the notification it signals
		{"ipcp", "app", true}, // the ring the app reads
		{"irm", "ipcp", true}, // its endpoint, and its component cap
		{"ipcp", "irm", true}, // its badged cap to the IRM's endpoint
		{"irm", "svc", true},  // its endpoint
		{"app", "svc", false}, // only through the IRM: not transitive
		{"svc", "irm", false}, // Read caps reach nobody
		{"app", "app", false}, // a component does not reach itself
		{"nobody", "irm", false},
	} {
		t.Run(tc.from+"->"+tc.to, func(t *testing.T) {
			if got := s.CanReach(tc.from, tc.to); got != tc.want {
				t.Fatalf("CanReach(%s, %s): got %v, want %v (reach: %+v)", tc.from, tc.to, got, tc.want, s.Reach(tc.from))
			}
		})
	}
	t.Run("no application reaches an IPCP's endpoint", func(t *testing.T) {
		var kinds []string
		for _, r := range s.Reach("app") {
			if r.To == "ipcp" {
				kinds = append(kinds, fmt.Sprintf("%s %s via %s", r.Kind, r.Object, r.Slot))
				if r.Kind == KindEndpoint {
					t.Fatalf("app reaches ipcp's endpoint %s through slot %s", r.Object, r.Slot)
				}
			}
		}
		if fmt.Sprint(kinds) != "[notification n via n ring up via up]" {
			t.Fatalf("app's ways to ipcp: got %v, want the notification and the ring", kinds)
		}
	})
	t.Run("badge and rights", func(t *testing.T) {
		rs := s.Reach("ipcp")
		if len(rs) != 2 || rs[0].To != "app" || rs[1].To != "irm" || rs[1].Badge != 1 || rs[1].Rights != Write|GrantReply || rs[1].Kind != KindEndpoint {
			t.Fatalf("Reach(ipcp): got %+v, want the ring to app, then the badged endpoint to irm", rs)
		}
	})
	t.Run("an application given the IPCP's endpoint", func(t *testing.T) {
		s := nodeLike()
		s.Components[2].Caps = append(s.Components[2].Caps, CapSpec{Name: "oops", Object: "ipcp.ep", Rights: Write | GrantReply})
		found := false
		for _, r := range s.Reach("app") {
			found = found || (r.To == "ipcp" && r.Kind == KindEndpoint && r.Slot == "oops")
		}
		if !found {
			t.Fatalf("Reach(app) with a cap to ipcp.ep: got %+v, want the endpoint listed", s.Reach("app"))
		}
	})
}

// TestReachLive checks Reach on Kernel.Describe: caps made and moved at
// run time count.
func TestReachLive(t *testing.T) {
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{
			{Name: "a", Budget: Budget{Objects: 2}, Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Write | Grant}}},
			{Name: "b", Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Read}}},
			{Name: "c"},
		},
	}
	k, pds := harness(t, sys, nil)
	a, b := pds["a"], pds["b"]
	if k.Describe().CanReach("b", "a") {
		t.Fatalf("b reaches a before any cap moved")
	}
	// a makes an endpoint, keeps Read on it and gives b a Write cap.
	ae, err := a.NewEndpoint()
	wantErr(t, "NewEndpoint", err, nil)
	aw, _ := a.Mint(ae, Write, 0)
	ch := recvAsync(b, mustSlot(t, b, "ep"))
	m := Msg{NCaps: 1}
	m.Caps[0] = aw
	wantErr(t, "Send", a.Send(mustSlot(t, a, "ep"), &m), nil)
	if r := <-ch; r.err != nil || r.m.NCaps != 1 {
		t.Fatalf("Recv: %v, %d caps", r.err, r.m.NCaps)
	}
	d := k.Describe()
	if !d.CanReach("b", "a") {
		t.Fatalf("Describe().CanReach(b, a) after a gave b a Write cap to its endpoint: got false, want true\n%s", d.Table())
	}
	if d.CanReach("c", "a") || d.CanReach("a", "c") {
		t.Fatalf("c: got reach to or from it, want none")
	}
}
