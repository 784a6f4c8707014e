package kernel

import "sort"

// Reach is one way a component can act on another through a cap it
// holds in a system description.
type Reach struct {
	From, To string // components
	// Slot is From's slot holding the cap; Object the object it names:
	// an endpoint or notification To holds Read on, a ring To reads, or
	// To itself (a component cap, for Restart, Kill, GrantBudget).
	Slot, Object string
	Kind         Kind
	Rights       Rights // of From's cap
	Badge        Badge  // of From's cap: how To tells the caller apart
}

// Reach returns every way component from can reach another component
// directly: through a cap with Write to an endpoint another holds Read
// on (Send, Call), to a notification another holds Read on (Signal), to
// a ring another holds Read on (Push), or with Write on another's
// component cap. It follows caps only, not what a component might pass
// on (so it is not transitive), and describes what the description says:
// call it on Kernel.Describe for the live system, caps made and moved at
// run time included. The result is sorted by To, then Slot.
func (s *System) Reach(from string) []Reach {
	var src *ComponentSpec
	for i := range s.Components {
		if s.Components[i].Name == from {
			src = &s.Components[i]
		}
	}
	if src == nil {
		return nil
	}
	kinds := s.kinds()
	readers := make(map[string][]string) // object -> components holding Read on it
	for _, c := range s.Components {
		seen := make(map[string]bool)
		for _, cp := range c.Caps {
			if cp.Rights&Read != 0 && !seen[cp.Object] {
				seen[cp.Object] = true
				readers[cp.Object] = append(readers[cp.Object], c.Name)
			}
		}
	}
	var out []Reach
	for _, cp := range src.Caps {
		if cp.Rights&Write == 0 {
			continue
		}
		r := Reach{From: from, Slot: cp.Name, Object: cp.Object, Kind: kinds[cp.Object], Rights: cp.Rights, Badge: cp.Badge}
		switch r.Kind {
		case KindComponent:
			if cp.Object != from {
				r.To = cp.Object
				out = append(out, r)
			}
		case KindEndpoint, KindNotification, KindRing:
			for _, to := range readers[cp.Object] {
				if to != from {
					r.To = to
					out = append(out, r)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].To != out[j].To {
			return out[i].To < out[j].To
		}
		return out[i].Slot < out[j].Slot
	})
	return out
}

// CanReach reports whether component from holds a cap that reaches
// component to (see Reach).
func (s *System) CanReach(from, to string) bool {
	for _, r := range s.Reach(from) {
		if r.To == to {
			return true
		}
	}
	return false
}
