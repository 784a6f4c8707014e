package irm

import (
	"context"
	"errors"
	"fmt"
	"github.com/ouronet/ouro/layer/ipcp"
	"strconv"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

// How the IRM supervises (docs/node.md):
//
//   - The kernel sends a fault message to the IRM's fault endpoint when a
//     supervised component (an IPCP, the gateway, an in-node app) panics
//     or its program returns an error; the badge says which.
//   - An IPCP that faults is marked faulted at once: every call to it
//     fails at once with an error naming it (ready). The flows brokered
//     through it are closed (both rings), and the sessions it had opened
//     for its own N-1 flows end.
//   - It is restarted with its initial caps and configuration (PD.Restart
//     on the IRM's component cap): at once after a first fault, then
//     after a back-off that doubles while it keeps faulting within
//     RestartPolicy.Stable of its last start. A restarted IPCP is
//     "restarting" until it says hello; then the IRM registers again the
//     names it had registered there.
//   - The gateway and apps are restarted the same way; the sessions they
//     had opened end.

// Supervision states of a component, as "ouro ipcps" and "ouro stats"
// show them.
const (
	StateInit        = "init"        // started, not yet said hello (IPCPs)
	StateOperational = "operational" // an IPCP that said hello
	StateRunning     = "running"     // a supervised component that is not an IPCP
	StateFaulted     = "faulted"     // faulted; restart pending (back-off)
	StateRestarting  = "restarting"  // restarted, not yet said hello (IPCPs)
)

// RestartPolicy is the back-off of restarts after faults.
type RestartPolicy struct {
	// Min is the delay of the second restart in a row (default 100ms);
	// the first restart after a stable run is immediate.
	Min time.Duration
	// Max bounds the delay (default 30s).
	Max time.Duration
	// Stable is how long a component must have run since its last start
	// for its next fault to count as a first one again (default 10s).
	Stable time.Duration
}

// Backoff is the restart back-off of one component under a policy: the
// delay before the next restart. The zero value (after Started) gives an
// immediate first restart.
type Backoff struct {
	policy    RestartPolicy
	delay     time.Duration
	startedAt time.Time
}

// NewBackoff returns a back-off under p (zero fields: the defaults), for
// a component started at start.
func NewBackoff(p RestartPolicy, start time.Time) Backoff {
	p.setDefaults()
	return Backoff{policy: p, startedAt: start}
}

// Fault returns the delay before restarting a component that faulted at
// now: 0 if it had run for Stable, else the previous delay doubled
// (Min at least, Max at most).
func (b *Backoff) Fault(now time.Time) time.Duration {
	if now.Sub(b.startedAt) >= b.policy.Stable {
		b.delay = 0
	}
	d := b.delay
	b.delay = min(max(2*b.delay, b.policy.Min), b.policy.Max)
	return d
}

// Started records a (re)start at now.
func (b *Backoff) Started(now time.Time) { b.startedAt = now }

func (p *RestartPolicy) setDefaults() {
	if p.Min <= 0 {
		p.Min = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Max < p.Min {
		p.Max = p.Min
	}
	if p.Stable <= 0 {
		p.Stable = 10 * time.Second
	}
}

// supervised is the IRM's record of a component it supervises. Guarded by
// IRM.mu.
type supervised struct {
	name  string
	kind  string       // "ipcp" or "component"
	badge kernel.Badge // its cap's badge to the IRM = its fault badge
	comp  kernel.Cap   // Write cap to the component: Restart; 0: not supervised

	state       string
	restarts    int
	lastFault   string
	lastFaultAt time.Time
	backoff     Backoff
	gen         uint64 // bumped at each fault: a pending restart of an older one is dropped
}

// newLife starts the life of e's next incarnation (ipcpEntry.life); the
// caller holds IRM.mu or is the only one to know e.
func (e *ipcpEntry) newLife() {
	e.life, e.kill = context.WithCancel(context.Background())
}

// ready returns nil if calls to e may go through, else the error they
// fail with at once: e is faulted or restarting (or not started yet).
func (m *IRM) ready(e *ipcpEntry) error {
	m.mu.Lock()
	st, reason, at := e.sup.state, e.sup.lastFault, e.sup.lastFaultAt
	m.mu.Unlock()
	switch st {
	case StateOperational:
		return nil
	case StateInit:
		return fmt.Errorf("irm: IPCP %s has not started yet: %w", e.info.Name, kernel.ErrAborted)
	}
	return fmt.Errorf("irm: IPCP %s is %s after a fault %v ago (%s): %w",
		e.info.Name, st, time.Since(at).Round(time.Millisecond), reason, kernel.ErrAborted)
}

// hello registers again the names the IPCP behind badge is to have, and
// then marks it operational: until then calls to it fail at once as
// while it restarts. The IPCP serves its endpoint while it waits for the
// answer.
func (m *IRM) hello(ctx context.Context, badge kernel.Badge, info ipcp.Info) error {
	e := m.ipcpByBadge(badge)
	if e == nil {
		return errRights("hello", badge, "unknown IPCP")
	}
	done := make(map[string]bool)
	// pending returns the names recorded for e not registered yet; m.mu
	// is held. Names recorded while the others are being registered are
	// found on the next round, so none is left behind when e becomes
	// operational.
	pending := func() []string {
		var names []string
		for n, ne := range m.names {
			if ne.layers[e.info.Name] && !done[n] {
				names = append(names, n)
			}
		}
		return names
	}
	m.mu.Lock()
	prev, gen := e.sup.state, e.sup.gen
	for round := 0; ; round++ {
		names := pending()
		if len(names) == 0 {
			break // with m.mu held
		}
		m.mu.Unlock()
		if round == 0 {
			m.cfg.Log.Info("IPCP said hello, registering its names again", "ipcp", e.info.Name, "kind", info.Kind, "names", len(names))
		}
		for _, n := range names {
			done[n] = true
			cctx, cancel := m.callCtx(ctx, e)
			err := e.ipcp.Register(cctx, n)
			cancel()
			if err != nil && !errors.Is(err, flow.ErrExists) {
				m.cfg.Log.Warn("register again failed", "name", n, "ipcp", e.info.Name, "err", err)
			}
		}
		m.mu.Lock()
	}
	if prev != StateInit && len(done) == 0 {
		m.cfg.Log.Info("IPCP said hello again", "ipcp", e.info.Name, "kind", info.Kind)
	}
	defer m.mu.Unlock()
	if e.sup.gen != gen || e.sup.state == StateFaulted {
		return fmt.Errorf("irm: hello from %s: faulted meanwhile: %w", e.info.Name, kernel.ErrAborted)
	}
	e.sup.state = StateOperational
	return nil
}

// superviseLoop receives fault messages on the fault endpoint until the
// IRM stops. Only the kernel sends on it: no component holds a cap to
// send on it.
func (m *IRM) superviseLoop(ctx context.Context, ep kernel.Cap) {
	msg := kernel.Msg{Payload: make([]byte, 0, kernel.MaxPayload)}
	for {
		msg.Payload = msg.Payload[:0]
		info, err := m.pd.RecvCtx(ctx, ep, &msg)
		if err != nil && !errors.Is(err, kernel.ErrTruncated) {
			if ctx.Err() == nil {
				m.cfg.Log.Error("fault endpoint failed", "err", err)
			}
			return
		}
		f, ok := kernel.DecodeFault(&msg)
		if !ok {
			continue
		}
		m.onFault(info.Badge, f)
	}
}

// onFault handles the fault of the component whose fault badge is badge.
func (m *IRM) onFault(badge kernel.Badge, f kernel.Fault) {
	var sup *supervised
	var e *ipcpEntry
	m.mu.Lock()
	for _, x := range m.ipcps {
		if x.sup.badge == badge {
			e, sup = x, &x.sup
		}
	}
	for _, c := range m.children {
		if c.badge == badge {
			sup = c
		}
	}
	if sup == nil {
		m.mu.Unlock()
		m.cfg.Log.Warn("fault of unknown component", "faulted", f.Component, "badge", fmt.Sprintf("%#x", uint64(badge)), "reason", f.Reason)
		return
	}
	if m.cfg.Incarnation != nil {
		if cur, ok := m.cfg.Incarnation(f.Component); ok && f.Incarnation < cur {
			m.mu.Unlock()
			m.cfg.Log.Info("fault of an old incarnation, restarted since", "faulted", sup.name, "incarnation", f.Incarnation, "now", cur, "reason", f.Reason)
			return
		}
	}
	now := time.Now()
	delay := sup.backoff.Fault(now)
	sup.state = StateFaulted
	sup.lastFault = faultReason(f)
	sup.lastFaultAt = now
	sup.gen++
	gen := sup.gen
	if e != nil {
		// Calls in flight to the dead incarnation end now; the next one
		// gets a life of its own.
		e.kill()
		e.newLife()
	}
	// What the rest reads of sup, read under the lock: create sets comp
	// once Spawn returns, and a child can fault before that.
	comp, reason, restarts := sup.comp, sup.lastFault, sup.restarts
	m.mu.Unlock()

	m.cfg.Log.Warn(sup.kind+" faulted", "faulted", sup.name, "incarnation", f.Incarnation,
		"reason", reason, "restart", restarts+1, "delay", delay)
	closed := 0
	if e != nil {
		// Its flows: the ones it carried, and its own N-1 flows.
		closed = m.closeFlows(func(fl *flowEntry) bool { return fl.via == e.info.Name })
	}
	ended := m.endSessionsOf(badge)
	if closed > 0 || ended > 0 {
		m.cfg.Log.Info("closed the faulted component's flows and sessions", "faulted", sup.name, "flows", closed, "sessions", ended)
	}
	if comp == 0 {
		return
	}
	m.later(delay, func() { m.restart(sup, gen) })
}

// faultReason is the one-line reason of a fault: the panic value or the
// program's error.
func faultReason(f kernel.Fault) string {
	r := f.Reason
	if len(r) > 200 {
		r = r[:197] + "..."
	}
	if f.Kind == kernel.FaultPanic {
		return "panic: " + r
	}
	return r
}

// restart restarts sup if no later fault or destroy superseded the one
// this restart is for.
func (m *IRM) restart(sup *supervised, gen uint64) {
	m.mu.Lock()
	if sup.gen != gen || sup.state != StateFaulted || !m.supervises(sup) {
		m.mu.Unlock()
		return
	}
	sup.restarts++
	sup.backoff.Started(time.Now())
	if sup.kind == "ipcp" {
		sup.state = StateRestarting
	} else {
		sup.state = StateRunning
	}
	pd, comp := m.pd, sup.comp
	m.mu.Unlock()
	// Restart waits (boundedly) for the old incarnation's goroutines.
	err := pd.Restart(comp)
	if err == nil || pd.Context().Err() != nil {
		return
	}
	// Not restarted (its old incarnation did not end in time): try again
	// after a back-off, as after a fault.
	m.mu.Lock()
	if sup.gen != gen {
		m.mu.Unlock()
		return
	}
	sup.state = StateFaulted
	sup.lastFault = "restart: " + err.Error()
	sup.lastFaultAt = time.Now()
	sup.gen++
	gen = sup.gen
	delay := sup.backoff.Fault(time.Now())
	m.mu.Unlock()
	m.cfg.Log.Warn("restart failed, retrying", "faulted", sup.name, "err", err, "delay", delay)
	m.later(delay, func() { m.restart(sup, gen) })
}

// later runs f after delay in a goroutine of the IRM's component, unless
// the IRM stops first.
func (m *IRM) later(delay time.Duration, f func()) {
	pd := m.pd
	pd.Go(func() {
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-pd.Context().Done():
				return
			}
		}
		f()
	})
}

// supervises reports whether sup is still one of the IRM's; m.mu is held.
func (m *IRM) supervises(sup *supervised) bool {
	for _, e := range m.ipcps {
		if &e.sup == sup {
			return true
		}
	}
	for _, c := range m.children {
		if c == sup {
			return true
		}
	}
	return false
}

// restartAll restarts every component the IRM supervises: a fresh IRM
// (after its predecessor died) starts from a clean node, not from the
// sessions, bindings and flows only the old instance knew.
func (m *IRM) restartAll() {
	m.mu.Lock()
	var sups []*supervised
	for _, e := range m.ipcps {
		sups = append(sups, &e.sup)
	}
	sups = append(sups, m.children...)
	comps := make([]kernel.Cap, len(sups))
	for i, s := range sups {
		s.backoff.Started(time.Now())
		if s.kind == "ipcp" {
			s.state = StateRestarting
		}
		comps[i] = s.comp // under the lock: create sets it as it spawns
	}
	pd := m.pd
	m.mu.Unlock()
	m.cfg.Log.Info("new IRM instance, restarting every component for a clean node", "components", len(sups))
	for i, s := range sups {
		if comps[i] == 0 {
			continue
		}
		// Killed first, so that the sessions its old incarnation may have
		// opened with this IRM meanwhile end before the new one opens its
		// own.
		pd.Kill(comps[i])
		m.endSessionsOf(s.badge)
		if s.kind == "ipcp" {
			m.closeFlows(func(f *flowEntry) bool { return f.via == s.name })
		}
		if err := pd.Restart(comps[i]); err != nil {
			m.cfg.Log.Error("restart failed", "faulted", s.name, "err", err)
		}
	}
}

// supervisionRows returns e's supervision counters as rows of a counter
// table ("ouro stats").
func (m *IRM) supervisionRows(e *ipcpEntry) [][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	last := "-"
	if e.sup.lastFault != "" {
		last = fmt.Sprintf("%s (%v ago)", e.sup.lastFault, time.Since(e.sup.lastFaultAt).Round(time.Millisecond))
	}
	return [][]string{
		{"supervisor.state", e.sup.state},
		{"supervisor.restarts", strconv.Itoa(e.sup.restarts)},
		{"supervisor.last_fault", last},
	}
}
