package kernel

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"strings"
)

// System describes a node's components, the objects that connect them and
// the caps each component starts with, as data (like a Microkit system
// file). All names share one namespace: components, endpoints,
// notifications and rings.
type System struct {
	Components    []ComponentSpec `json:"components" toml:"components"`
	Endpoints     []ObjectSpec    `json:"endpoints,omitempty" toml:"endpoints,omitempty"`
	Notifications []ObjectSpec    `json:"notifications,omitempty" toml:"notifications,omitempty"`
	Rings         []RingSpec      `json:"rings,omitempty" toml:"rings,omitempty"`
}

// ObjectSpec declares an endpoint or a notification.
type ObjectSpec struct {
	Name string `json:"name" toml:"name"`
}

// RingSpec declares a ring of Size slots (rounded up to a power of two),
// optionally with a byte rate. A ring of the description is its own
// account: the buffers queued in it are bounded by its size, which Boot
// counts against Config.MaxBufs. (A ring made at run time, PD.NewRingSpec,
// charges them to its creator's budget.)
type RingSpec struct {
	Name string `json:"name" toml:"name"`
	Size int    `json:"size" toml:"size"`
	// ByteRate bounds the bytes per second pushed into the ring (on top
	// of each pusher's budget rate); 0 means unlimited.
	ByteRate int64 `json:"byte_rate,omitempty" toml:"byte_rate,omitempty"`
	// Burst is the token-bucket depth in bytes for ByteRate; 0 means one
	// second's worth (at least BufSize).
	Burst int64 `json:"burst,omitempty" toml:"burst,omitempty"`
}

// ComponentSpec declares a component.
type ComponentSpec struct {
	Name string `json:"name" toml:"name"`
	// Supervisor is the component that receives this one's faults and may
	// restart it; "" means the kernel (faults are logged; Kernel.Restart
	// restarts). For Spawn it is ignored: the spawner supervises.
	Supervisor string `json:"supervisor,omitempty" toml:"supervisor,omitempty"`
	// FaultEndpoint names the endpoint the kernel sends this component's
	// faults to. In a System it names an endpoint object that the
	// Supervisor holds with Read; for Spawn it names a slot of the spawner
	// (FaultCap, if non-zero, takes precedence). "" means faults are
	// logged.
	FaultEndpoint string `json:"fault_endpoint,omitempty" toml:"fault_endpoint,omitempty"`
	// FaultCap is the spawner's slot for FaultEndpoint (Spawn only).
	FaultCap Cap `json:"-" toml:"-"`
	// FaultBadge is the badge on this component's fault messages, so the
	// supervisor can tell its children apart; 0 means the component's id.
	FaultBadge Badge `json:"fault_badge,omitempty" toml:"fault_badge,omitempty"`
	// Budget is what the component may consume. For Spawn it is carved out
	// of the spawner's budget.
	Budget Budget `json:"budget" toml:"budget"`
	// Caps are the caps the component starts (and restarts) with.
	Caps []CapSpec `json:"caps,omitempty" toml:"caps,omitempty"`
}

// CapSpec declares one initial cap.
type CapSpec struct {
	// Name is the slot's name, for PD.Slot.
	Name string `json:"name" toml:"name"`
	// Object is what the cap refers to. In a System: the name of an
	// endpoint, notification, ring or component. For Spawn: the name of a
	// slot of the spawner (Src, if non-zero, takes precedence); the child's
	// cap is minted from the spawner's.
	Object string `json:"object" toml:"object"`
	// Src is the spawner's slot to derive from (Spawn only).
	Src    Cap    `json:"-" toml:"-"`
	Rights Rights `json:"rights" toml:"rights"`
	Badge  Badge  `json:"badge,omitempty" toml:"badge,omitempty"`
}

// kinds returns every name in s with its kind.
func (s *System) kinds() map[string]Kind {
	m := make(map[string]Kind)
	for _, o := range s.Endpoints {
		m[o.Name] = KindEndpoint
	}
	for _, o := range s.Notifications {
		m[o.Name] = KindNotification
	}
	for _, o := range s.Rings {
		m[o.Name] = KindRing
	}
	for _, c := range s.Components {
		m[c.Name] = KindComponent
	}
	return m
}

// Validate checks the description: names present and unique, ring sizes,
// caps naming existing objects with valid rights and unique slot names,
// supervisors that exist without cycles, fault endpoints that are
// endpoints the supervisor can receive on, and non-negative budgets. It
// reports every problem it finds.
func (s *System) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("kernel: system: "+format+": %w", append(args, ErrInvalidCap)...))
	}
	seen := make(map[string]string)
	name := func(n, what string) {
		if n == "" {
			bad("%s with an empty name", what)
			return
		}
		if prev, ok := seen[n]; ok {
			bad("%s %q: name already used by a %s", what, n, prev)
			return
		}
		seen[n] = what
	}
	for _, o := range s.Endpoints {
		name(o.Name, "endpoint")
	}
	for _, o := range s.Notifications {
		name(o.Name, "notification")
	}
	for _, o := range s.Rings {
		name(o.Name, "ring")
		if o.Size <= 0 || o.Size > maxRing {
			bad("ring %q: size %d out of range [1, %d]", o.Name, o.Size, maxRing)
		}
		if o.ByteRate < 0 || o.Burst < 0 {
			bad("ring %q: negative byte rate %d or burst %d", o.Name, o.ByteRate, o.Burst)
		}
	}
	comps := make(map[string]*ComponentSpec)
	for i := range s.Components {
		c := &s.Components[i]
		name(c.Name, "component")
		comps[c.Name] = c
	}
	kinds := s.kinds()
	for i := range s.Components {
		c := &s.Components[i]
		slots := make(map[string]bool)
		for _, cp := range c.Caps {
			if cp.Name == "" {
				bad("component %q: cap to %q with an empty slot name", c.Name, cp.Object)
			} else if slots[cp.Name] {
				bad("component %q: duplicate slot name %q", c.Name, cp.Name)
			}
			slots[cp.Name] = true
			if _, ok := kinds[cp.Object]; !ok {
				bad("component %q: slot %q: no object %q", c.Name, cp.Name, cp.Object)
			}
			if cp.Rights == 0 || cp.Rights&^AllRights != 0 {
				bad("component %q: slot %q: rights %s", c.Name, cp.Name, cp.Rights)
			}
		}
		b := c.Budget
		if b.Bufs < 0 || b.ByteRate < 0 || b.Burst < 0 || b.Objects < 0 {
			errs = append(errs, fmt.Errorf("kernel: system: component %q: negative budget %+v: %w", c.Name, b, ErrNoBudget))
		}
		if c.Supervisor != "" {
			sup, ok := comps[c.Supervisor]
			if !ok {
				bad("component %q: no supervisor %q", c.Name, c.Supervisor)
			} else if c.FaultEndpoint != "" {
				if kinds[c.FaultEndpoint] != KindEndpoint {
					bad("component %q: fault endpoint %q is not an endpoint", c.Name, c.FaultEndpoint)
				} else if !holds(sup, c.FaultEndpoint, Read) {
					bad("component %q: supervisor %q holds no Read cap to fault endpoint %q", c.Name, sup.Name, c.FaultEndpoint)
				}
			}
		} else if c.FaultEndpoint != "" {
			bad("component %q: fault endpoint %q without a supervisor", c.Name, c.FaultEndpoint)
		}
	}
	// Supervisor cycles.
	for i := range s.Components {
		c := &s.Components[i]
		steps := 0
		for x := c; x != nil && x.Supervisor != ""; x = comps[x.Supervisor] {
			if steps++; steps > len(s.Components) {
				bad("component %q: supervisor cycle", c.Name)
				break
			}
		}
	}
	return errors.Join(errs...)
}

func holds(c *ComponentSpec, object string, rights Rights) bool {
	for _, cp := range c.Caps {
		if cp.Object == object && cp.Rights&rights == rights {
			return true
		}
	}
	return false
}

// Table renders the description as a table: one row per cap, with the
// component, slot, object, kind, rights and badge, then one row per
// object nobody holds.
func (s *System) Table() string {
	kinds := s.kinds()
	var b strings.Builder
	rows := [][]string{{"COMPONENT", "SLOT", "OBJECT", "KIND", "RIGHTS", "BADGE"}}
	held := make(map[string]bool)
	for _, c := range s.Components {
		if len(c.Caps) == 0 {
			rows = append(rows, []string{c.Name, "-", "-", "-", "-", "-"})
		}
		for _, cp := range c.Caps {
			held[cp.Object] = true
			badge := "-"
			if cp.Badge != 0 {
				badge = fmt.Sprintf("%#x", uint64(cp.Badge))
			}
			rows = append(rows, []string{c.Name, cp.Name, cp.Object, kinds[cp.Object].String(), cp.Rights.String(), badge})
		}
	}
	var orphans []string
	for n, k := range kinds {
		if !held[n] && k != KindComponent {
			orphans = append(orphans, n)
		}
	}
	sort.Strings(orphans)
	for _, n := range orphans {
		rows = append(rows, []string{"-", "-", n, kinds[n].String(), "-", "-"})
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, f := range r {
			width[i] = max(width[i], len(f))
		}
	}
	for _, r := range rows {
		for i, f := range r {
			if i == len(r)-1 {
				b.WriteString(f)
			} else {
				fmt.Fprintf(&b, "%-*s  ", width[i], f)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Dot renders who can reach whom as a Graphviz digraph: components are
// boxes, endpoints ellipses, notifications diamonds, rings cylinders;
// an edge from a component to an object is labelled with the slot's
// rights (and badge); a dashed edge goes from a supervisor to its child.
func (s *System) Dot() string {
	var b strings.Builder
	b.WriteString("digraph system {\n\trankdir=LR;\n")
	shape := map[Kind]string{KindEndpoint: "ellipse", KindNotification: "diamond", KindRing: "cylinder", KindComponent: "box"}
	kinds := s.kinds()
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\t%q [shape=%s];\n", n, shape[kinds[n]])
	}
	for _, c := range s.Components {
		for _, cp := range c.Caps {
			fmt.Fprintf(&b, "\t%q -> %q [label=%q];\n", c.Name, cp.Object, edgeLabel(cp))
		}
		if c.Supervisor != "" {
			fmt.Fprintf(&b, "\t%q -> %q [style=dashed, label=\"supervises\"];\n", c.Supervisor, c.Name)
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func edgeLabel(cp CapSpec) string {
	l := cp.Name + " " + cp.Rights.String()
	if cp.Badge != 0 {
		l += fmt.Sprintf(" badge %#x", uint64(cp.Badge))
	}
	return l
}

// Mermaid renders the same graph as Dot as a Mermaid flowchart.
func (s *System) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	kinds := s.kinds()
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	ids := make(map[string]string)
	for i, n := range names {
		id := fmt.Sprintf("n%d", i)
		ids[n] = id
		q := strings.ReplaceAll(n, `"`, "#quot;")
		switch kinds[n] {
		case KindComponent:
			fmt.Fprintf(&b, "\t%s[\"%s\"]\n", id, q)
		case KindEndpoint:
			fmt.Fprintf(&b, "\t%s([\"%s\"])\n", id, q)
		case KindNotification:
			fmt.Fprintf(&b, "\t%s{\"%s\"}\n", id, q)
		case KindRing:
			fmt.Fprintf(&b, "\t%s[(\"%s\")]\n", id, q)
		}
	}
	for _, c := range s.Components {
		for _, cp := range c.Caps {
			if ids[cp.Object] == "" {
				continue
			}
			fmt.Fprintf(&b, "\t%s -->|\"%s\"| %s\n", ids[c.Name], strings.ReplaceAll(edgeLabel(cp), `"`, "#quot;"), ids[cp.Object])
		}
		if c.Supervisor != "" && ids[c.Supervisor] != "" {
			fmt.Fprintf(&b, "\t%s -.->|supervises| %s\n", ids[c.Supervisor], ids[c.Name])
		}
	}
	return b.String()
}

// Boot validates sys, creates its objects, fills each component's CSpace
// and starts the components in the order given, each running
// progs[name]. On error nothing is started. Boot may be called once.
func (k *Kernel) Boot(sys *System, progs map[string]Program) error {
	if err := sys.Validate(); err != nil {
		return err
	}
	for _, c := range sys.Components {
		if progs[c.Name] == nil {
			return fmt.Errorf("kernel: boot: no program for component %q: %w", c.Name, ErrInvalidCap)
		}
	}
	k.mu.Lock()
	if k.booted || k.stopping.Load() {
		k.mu.Unlock()
		return fmt.Errorf("kernel: boot: already booted or stopped: %w", ErrClosed)
	}
	if len(sys.Components)+len(k.comps) > k.cfg.MaxComponents {
		k.mu.Unlock()
		return fmt.Errorf("kernel: boot: %d components > MaxComponents %d: %w", len(sys.Components), k.cfg.MaxComponents, ErrNoBudget)
	}
	var total int64
	for _, c := range sys.Components {
		total += int64(c.Budget.Bufs)
	}
	for _, r := range sys.Rings {
		total += int64(1) << bits.Len(uint(r.Size-1)) // what it can queue
	}
	if k.cfg.MaxBufs > 0 && total > int64(k.cfg.MaxBufs) {
		k.mu.Unlock()
		return fmt.Errorf("kernel: boot: budgets and rings total %d buffers > MaxBufs %d: %w", total, k.cfg.MaxBufs, ErrNoBudget)
	}
	for _, c := range sys.Components {
		if _, ok := k.byName[c.Name]; ok {
			k.mu.Unlock()
			return fmt.Errorf("kernel: boot: name %q already in use: %w", c.Name, ErrInvalidCap)
		}
	}
	k.booted = true
	k.total = total
	k.mu.Unlock()

	objs := make(map[string]object)
	for _, o := range sys.Endpoints {
		objs[o.Name] = k.newEndpoint(o.Name)
	}
	for _, o := range sys.Notifications {
		objs[o.Name] = newNotification(o.Name)
	}
	for _, o := range sys.Rings {
		objs[o.Name] = newRing(o.Name, o, nil, k.cfg.Now)
	}
	comps := make([]*component, len(sys.Components))
	for i, spec := range sys.Components {
		c := k.newComponent(spec, progs[spec.Name])
		comps[i] = c
		objs[spec.Name] = c
	}
	for i, spec := range sys.Components {
		c := comps[i]
		if spec.Supervisor != "" {
			c.super = objs[spec.Supervisor].(*component)
		}
		if spec.FaultEndpoint != "" {
			c.faultEP = objs[spec.FaultEndpoint].(*endpoint)
		}
		for _, cp := range spec.Caps {
			c.init = append(c.init, initCap{parent: rootOf(objs[cp.Object]), rights: cp.Rights, badge: cp.Badge, name: cp.Name})
		}
	}
	for _, o := range objs {
		if err := k.register(o); err != nil {
			return err
		}
	}
	k.mu.Lock()
	k.comps = append(k.comps, comps...)
	k.mu.Unlock()
	for _, c := range comps {
		c.mu.Lock()
		err := c.startLocked()
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func (k *Kernel) newComponent(spec ComponentSpec, prog Program) *component {
	k.mu.Lock()
	k.nextID++
	id := k.nextID
	k.mu.Unlock()
	spec.Caps = append([]CapSpec(nil), spec.Caps...)
	c := &component{k: k, id: id, spec: spec, prog: prog, faultBadge: spec.FaultBadge, budget: newBudget(spec.Name, spec.Budget, k.cfg.Now)}
	c.nm = spec.Name
	c.root = &capNode{obj: c, live: true}
	return c
}

// Spawn starts a child component at run time. Its caps are minted from
// the spawner's (CapSpec.Src, or the slot named CapSpec.Object, with equal
// or fewer rights), its budget is carved out of the spawner's (plus one
// object for the child itself), its supervisor is the spawner, and its
// faults go to the spawner's endpoint named by FaultCap/FaultEndpoint.
// Spawn returns an AllRights cap to the child (for Restart and Kill).
func (pd *PD) Spawn(spec ComponentSpec, prog Program) (Cap, error) {
	if pd.dead.Load() {
		return 0, pd.deadErr("spawn")
	}
	k := pd.k
	fail := func(format string, args ...any) (Cap, error) {
		return 0, fmt.Errorf("kernel: %s: spawn %q: "+format, append([]any{pd.name(), spec.Name}, args...)...)
	}
	if spec.Name == "" || prog == nil {
		return fail("needs a name and a program: %w", ErrInvalidCap)
	}
	var inits []initCap
	resolve := func(src Cap, name string) (slot, error) {
		if src == 0 {
			c, err := pd.Slot(name)
			if err != nil {
				return slot{}, err
			}
			src = c
		}
		return pd.cs.get(src, "spawn")
	}
	for _, cp := range spec.Caps {
		s, err := resolve(cp.Src, cp.Object)
		if err != nil {
			return fail("cap %q: %w", cp.Name, err)
		}
		if s.kind == KindReply {
			return fail("cap %q: reply caps cannot be derived: %w", cp.Name, ErrRights)
		}
		if cp.Rights&^s.rights != 0 {
			return fail("cap %q: rights %s from %s: %w", cp.Name, cp.Rights, s.rights, ErrRights)
		}
		badge := cp.Badge
		if s.badge != 0 {
			if badge != 0 && badge != s.badge {
				return fail("cap %q: already badged %#x: %w", cp.Name, s.badge, ErrRights)
			}
			badge = s.badge
		}
		inits = append(inits, initCap{parent: s.node, rights: cp.Rights, badge: badge, name: cp.Name})
	}
	var faultEP *endpoint
	if spec.FaultCap != 0 || spec.FaultEndpoint != "" {
		s, err := resolve(spec.FaultCap, spec.FaultEndpoint)
		if err != nil {
			return fail("fault endpoint: %w", err)
		}
		if s.kind != KindEndpoint {
			return fail("fault endpoint is a %s: %w", s.kind, ErrInvalidCap)
		}
		faultEP = s.obj.(*endpoint)
	}
	k.mu.Lock()
	n := len(k.comps)
	k.mu.Unlock()
	if n >= k.cfg.MaxComponents {
		return fail("MaxComponents %d reached: %w", k.cfg.MaxComponents, ErrNoBudget)
	}
	pb := pd.c.budget
	if !pb.reserveObject() {
		return fail("object budget of %d used: %w", pb.objLimit.Load()&^mergedBit, ErrNoBudget)
	}
	if err := pb.take(spec.Budget); err != nil {
		pb.releaseObject()
		return fail("%w", err)
	}
	spec.Supervisor = pd.name()
	c := k.newComponent(spec, prog)
	c.super, c.faultEP, c.init = pd.c, faultEP, inits
	c.creator = pb
	if err := k.register(c); err != nil {
		pb.give(spec.Budget)
		pb.releaseObject()
		return fail("%w", err)
	}
	k.mu.Lock()
	k.comps = append(k.comps, c)
	k.mu.Unlock()
	k.capMu.Lock()
	cc, err := pd.cs.insert(c.root, AllRights, 0, "")
	k.capMu.Unlock()
	if err != nil {
		k.destroy(c) // never started: unregisters it and returns its budget
		return fail("%w", err)
	}
	c.mu.Lock()
	err = c.startLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return cc, nil
}

// GrantBudget moves part of the caller's budget to the child component
// that child names (a component cap with Write).
func (pd *PD) GrantBudget(child Cap, more Budget) error {
	s, err := pd.lookup(child, KindComponent, Write, "grant budget")
	if err != nil {
		return err
	}
	if err := pd.c.budget.take(more); err != nil {
		return fmt.Errorf("kernel: %s: grant budget on cap %d: %w", pd.name(), child, err)
	}
	s.obj.(*component).budget.give(more)
	return nil
}

// Describe returns the live system: every component (booted or spawned)
// with the caps its current incarnation holds (slots without a name are
// shown as "#<slot>"; reply caps are left out) and every object,
// including those created at run time.
func (k *Kernel) Describe() *System {
	k.mu.Lock()
	comps := append([]*component(nil), k.comps...)
	k.mu.Unlock()
	sys := &System{}
	for _, c := range comps {
		spec := c.spec
		spec.Caps = nil
		spec.FaultCap = 0
		spec.Budget = c.budget.snapshot()
		if c.faultEP != nil {
			spec.FaultEndpoint = c.faultEP.nm
		}
		if c.super != nil {
			spec.Supervisor = c.super.nm
		}
		c.mu.Lock()
		pd := c.cur
		c.mu.Unlock()
		if pd != nil {
			pd.cs.mu.Lock()
			for i, s := range pd.cs.slots {
				if s.kind == KindNone || s.kind == KindReply {
					continue
				}
				n := s.name
				if n == "" {
					n = fmt.Sprintf("#%d", makeCap(i, s.cgen))
				}
				spec.Caps = append(spec.Caps, CapSpec{Name: n, Object: s.obj.name(), Rights: s.rights, Badge: s.badge})
			}
			pd.cs.mu.Unlock()
		}
		sys.Components = append(sys.Components, spec)
	}
	for _, o := range k.objectsByKind(KindEndpoint) {
		sys.Endpoints = append(sys.Endpoints, ObjectSpec{Name: o.name()})
	}
	for _, o := range k.objectsByKind(KindNotification) {
		sys.Notifications = append(sys.Notifications, ObjectSpec{Name: o.name()})
	}
	for _, o := range k.objectsByKind(KindRing) {
		r := o.(*ring)
		rs := RingSpec{Name: o.name(), Size: len(r.slots)}
		if r.rate != nil {
			rs.ByteRate, rs.Burst = r.rate.get()
		}
		sys.Rings = append(sys.Rings, rs)
	}
	return sys
}
