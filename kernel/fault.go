package kernel

// FaultLabel is the Label of a fault message the kernel sends to a
// supervisor's fault endpoint.
const FaultLabel uint64 = 0xFA17

// FaultKind says how a component failed.
type FaultKind uint64

// Fault kinds.
const (
	FaultPanic FaultKind = 1 // a goroutine of the component panicked
	FaultError FaultKind = 2 // the component's Program returned an error
)

// Fault describes a component's failure.
type Fault struct {
	Component   string
	Kind        FaultKind
	Incarnation uint64 // 1 for the first start, +1 per restart
	Reason      string // the panic value or the error text
	Stack       string // the panicking goroutine's stack (truncated to fit)
}

// A fault message, as received on the fault endpoint: Label FaultLabel;
// the badge is the child's ComponentSpec.FaultBadge (or its component id if
// that is 0); Words[0] the FaultKind, Words[1] the incarnation, Words[2]
// and Words[3] the lengths of the component name and the reason; Payload
// the name, the reason and the stack, concatenated and cut to MaxPayload.
// DecodeFault decodes it.
func encodeFault(m *Msg, f Fault) {
	m.Label = FaultLabel
	m.Words = [MaxWords]uint64{uint64(f.Kind), f.Incarnation, uint64(len(f.Component)), uint64(len(f.Reason))}
	p := make([]byte, 0, MaxPayload)
	p = append(p, f.Component...)
	p = append(p, f.Reason...)
	p = append(p, f.Stack...)
	m.Payload = p[:min(len(p), MaxPayload)]
	m.NCaps = 0
}

// DecodeFault decodes a fault message; ok is false if m is not one.
func DecodeFault(m *Msg) (f Fault, ok bool) {
	if m.Label != FaultLabel {
		return Fault{}, false
	}
	p := m.Payload
	nl, rl := m.Words[2], m.Words[3]
	cut := func(n uint64) string {
		k := min(uint64(len(p)), n)
		s := string(p[:k])
		p = p[k:]
		return s
	}
	f = Fault{Kind: FaultKind(m.Words[0]), Incarnation: m.Words[1]}
	f.Component = cut(nl)
	f.Reason = cut(rl)
	f.Stack = string(p)
	return f, true
}

// reportFault sends c's fault to its supervisor's fault endpoint, from a
// kernel goroutine that waits for the supervisor to receive it (or for
// Stop); without a fault endpoint the fault is logged.
func (k *Kernel) reportFault(c *component, inc uint64, kind FaultKind, reason, stack string) {
	f := Fault{Component: c.nm, Kind: kind, Incarnation: inc, Reason: reason, Stack: stack}
	if c.faultEP == nil {
		k.cfg.Log.Warn("component faulted", "component", c.nm, "incarnation", inc, "reason", reason)
		return
	}
	m := new(Msg)
	encodeFault(m, f)
	badge := c.faultBadge
	if badge == 0 {
		badge = Badge(c.id)
	}
	e := c.faultEP
	w := newWaiter(nil)
	w.msg, w.badge = m, badge
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		e.mu.Lock()
		if e.gone != nil {
			e.mu.Unlock()
			k.cfg.Log.Warn("component faulted, fault endpoint gone", "component", c.nm, "incarnation", inc, "reason", reason)
			return
		}
		if r := e.recvq.pop(); r != nil {
			e.deliver(w, r)
			e.mu.Unlock()
			r.wake()
			return
		}
		e.sendq.push(w)
		e.mu.Unlock()
		select {
		case <-w.ch:
			return
		case <-k.ctx.Done():
		}
		e.mu.Lock()
		if w.queued {
			e.sendq.remove(w)
			e.mu.Unlock()
			return
		}
		e.mu.Unlock()
		<-w.ch
	}()
}
