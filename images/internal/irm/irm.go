// Package irm is the node's IPC resource manager, a kernel component: it
// keeps names, bindings and registrations, and brokers flow allocation
// between programs and the IPCPs of the node's layers. It moves no data:
// each flow is a pair of kernel rings whose caps it hands to both ends.
package irm

import (
	"context"
	"errors"
	"fmt"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/rpc"
	"github.com/ouronet/ouro/kernel"
)

// Config configures an IRM.
type Config struct {
	// RingSize is the capacity of each of a flow's two rings (buffers).
	RingSize int
	// AcceptTimeout bounds how long an incoming flow waits for its program
	// to accept it before it is refused.
	AcceptTimeout time.Duration
	// QueryTimeout bounds one layer's answer to "is this name reachable".
	QueryTimeout time.Duration
	// CallTimeout bounds every other call to an IPCP (register, alloc,
	// join, management) that its caller did not bound more tightly.
	CallTimeout time.Duration
	// Backlog bounds the incoming flows waiting for Accept per session.
	Backlog int
	// AutoRegister registers a bound name in every layer (as if by "reg").
	AutoRegister bool
	// Log logs notable events, with component "irm"; nil discards them.
	Log *slog.Logger
	// Document returns the node's signed identity document (crypto/
	// identity) for the "id" command; nil: the command answers not found.
	Document func(ctx context.Context) ([]byte, error)
	// Describe returns the node's system description for management
	// ("system" command); nil if not available.
	Describe func() *kernel.System
	// ComponentStats returns a component's counters (kernel.Stats) for
	// the "components" command, with Describe listing them; nil: the
	// command answers not found.
	ComponentStats func(name string) (kernel.ComponentStats, error)
	// BufTotals returns the kernel's node-wide packet-buffer figures for
	// the "kernel" command; nil: the command answers not found.
	BufTotals func() kernel.BufTotals
	// IPCPs are the IPCP components the IRM drives, in preference order
	// for allocation.
	IPCPs []IPCPSlot
	// Children are the other components the IRM supervises (the socket
	// gateway, in-node applications).
	Children []ChildSlot
	// FaultSlot names the IRM's slot of the endpoint the kernel sends its
	// children's faults to (Read); "" means the IRM supervises nothing.
	FaultSlot string
	// Restart is the back-off of restarts after faults.
	Restart RestartPolicy
	// Epoch is put into every session badge this IRM mints, so that a cap
	// of an earlier IRM instance's session never names one of this
	// instance's (the node counts the IRM's incarnations).
	Epoch uint16
	// Fresh says this IRM replaces one that died: at start it restarts
	// every component it supervises, so that nothing of the old
	// instance's sessions, bindings and flows survives (docs/node.md).
	Fresh bool
	// Creator makes IPCPs at run time ("create"); nil: none can be made.
	Creator Creator
	// Incarnation returns how many incarnations the named component has
	// had (the kernel's count), so that a fault of an incarnation that was
	// restarted meanwhile is not acted on twice; nil: every fault counts.
	Incarnation func(component string) (uint64, bool)
}

// IPCPSlot names an IPCP component as the IRM reaches it: the slot of its
// endpoint cap in the IRM's CSpace, the slot of its component cap (Write:
// to restart it; "" if the IRM does not supervise it), and the badge its
// calls to the IRM and its fault messages carry (RoleIPCP).
type IPCPSlot struct {
	Slot      string
	Component string
	Badge     kernel.Badge
	Info      ipcp.Info
}

// ChildSlot names another component the IRM supervises: its name, the
// slot of the IRM's component cap to it (Write) and the badge of its cap
// to the IRM, which is also the badge of its fault messages.
type ChildSlot struct {
	Name      string
	Component string
	Badge     kernel.Badge
}

func (c *Config) setDefaults() {
	if c.RingSize <= 0 {
		c.RingSize = 256
	}
	if c.AcceptTimeout <= 0 {
		c.AcceptTimeout = 10 * time.Second
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 2 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.Backlog <= 0 {
		c.Backlog = 64
	}
	c.Log = logx.Or(c.Log).With("component", "irm")
	c.Restart.setDefaults()
}

// IRM is the IPC resource manager. Its Run method is the component's
// program; everything else is reached over its endpoint.
type IRM struct {
	cfg Config

	mu       sync.Mutex // guards everything below
	pd       *kernel.PD
	self     kernel.Cap   // the IRM's own endpoint (all rights)
	fault    kernel.Cap   // the endpoint its children's faults arrive on (Read); 0: none
	ipcps    []*ipcpEntry // preference order for allocation
	children []*supervised
	names    map[string]*nameEntry
	sessions map[kernel.Badge]*session
	nextSess uint64
	flows    map[uint64]*flowEntry
	nextFlow uint64
	// collectAt is the flow count at which newFlow collects closed flows
	// itself instead of waiting for the sweep.
	collectAt int

	allocs allocHist // every allocation's layer, result and time ("allocs")
	// via remembers, by name, the IPCP the last allocation to the name
	// went through (allocIn), and when.
	via map[string]viaEntry
	// targets are the management endpoints components offered over
	// their sessions (target.go), in the order offered.
	targets []*target
}

// collectMin is the least number of flows between synchronous collections.
const collectMin = 256

// maxAccepts bounds the Accepts one session may have waiting at once.
const maxAccepts = 256

// session is one program's (or one IPCP's) use of the IRM, opened by
// OpSession and reached through the cap the IRM minted for it.
type session struct {
	badge     kernel.Badge // of the cap minted for it: the session's identity
	opener    kernel.Badge // the component that opened it (IPCP, app, gateway)
	principal string       // who it acts for: "ipcp:NAME", "app:COMPONENT", or the gateway's ("uid:N")
	mgmt      bool         // a management session
	ipcp      *ipcpEntry   // the IPCP it belongs to, if an IPCP opened it
	kept      kernel.Cap   // the IRM's original of the session cap: revoked when the session ends

	// Guarded by IRM.mu:
	names     map[string]bool
	peers     map[string][]string // per bound name: the only peers whose flows it takes (none: any)
	ended     bool
	accepting int // Accepts waiting

	pending chan *pendingFlow // incoming flows waiting for Accept
	done    chan struct{}     // closed when the session ends
}

type pendingFlow struct {
	info   flow.Info
	rx, tx kernel.Cap // the application's end, in the IRM's CSpace
	// state moves once from pendingWaiting to pendingTaken (by Accept) or
	// to pendingAbandoned (by the requester giving up, or the session
	// ending); decided is closed when it moved.
	state   atomic.Int32
	decided chan struct{}
	// answer answers the IPCP that asked for the flow: with nil, its end
	// of the flow; else err, and the flow is dropped. The Accept that
	// took the flow calls it once its program's session has the flow.
	answer func(err error)
}

// decide moves p out of pendingWaiting to st; false if it had moved.
func (p *pendingFlow) decide(st int32) bool {
	if !p.state.CompareAndSwap(pendingWaiting, st) {
		return false
	}
	close(p.decided)
	return true
}

const (
	pendingWaiting int32 = iota
	pendingTaken
	pendingAbandoned
)

type nameEntry struct {
	name     string
	sessions []kernel.Badge // bound acceptors (one principal), served round robin
	next     int            // round-robin position
	// layers are the IPCPs (by name) the name is registered in, or is to
	// be registered in once they are operational again (after a restart).
	layers map[string]bool
}

type ipcpEntry struct {
	info ipcp.Info
	ipcp *Remote
	sup  supervised
	// life ends when the current incarnation faults (calls in flight to
	// it end then); kill ends it. Guarded by IRM.mu.
	life  context.Context
	kill  context.CancelFunc
	child kernel.Cap // created at run time: the component and its endpoint
	ep    kernel.Cap
}

type flowEntry struct {
	info    flow.Info
	ring1   kernel.Cap   // app → IPCP
	ring2   kernel.Cap   // IPCP → app
	via     string       // the IPCP it runs through
	owner   kernel.Badge // the session holding the application's end
	started time.Time
}

// New returns an IRM; Run starts it as a component.
func New(cfg Config) *IRM {
	cfg.setDefaults()
	return &IRM{
		cfg:      cfg,
		names:    make(map[string]*nameEntry),
		sessions: make(map[kernel.Badge]*session),
		flows:    make(map[uint64]*flowEntry),

		collectAt: collectMin,
	}
}

// Run is the IRM component's program: it serves the endpoint in the slot
// named endpointSlot until the component stops.
func (m *IRM) Run(endpointSlot string) kernel.Program {
	return func(pd *kernel.PD) error {
		ep, err := pd.Slot(endpointSlot)
		if err != nil {
			return fmt.Errorf("irm: %w", err)
		}
		var fault kernel.Cap
		if m.cfg.FaultSlot != "" {
			if fault, err = pd.Slot(m.cfg.FaultSlot); err != nil {
				return fmt.Errorf("irm: fault endpoint: %w", err)
			}
		}
		slot := func(name string) (kernel.Cap, error) {
			if name == "" {
				return 0, nil
			}
			return pd.Slot(name)
		}
		m.mu.Lock()
		m.pd, m.self, m.fault = pd, ep, fault
		m.ipcps = m.ipcps[:0]
		m.children = m.children[:0]
		now := time.Now()
		for _, s := range m.cfg.IPCPs {
			c, err := pd.Slot(s.Slot)
			if err != nil {
				m.mu.Unlock()
				return fmt.Errorf("irm: IPCP %s: %w", s.Info.Name, err)
			}
			comp, err := slot(s.Component)
			if err != nil {
				m.mu.Unlock()
				return fmt.Errorf("irm: IPCP %s: %w", s.Info.Name, err)
			}
			e := &ipcpEntry{info: s.Info, ipcp: NewRemote(pd, c), sup: supervised{
				name: s.Info.Name, kind: "ipcp", badge: s.Badge, comp: comp, state: StateInit, backoff: NewBackoff(m.cfg.Restart, now),
			}}
			e.newLife()
			m.ipcps = append(m.ipcps, e)
		}
		for _, s := range m.cfg.Children {
			comp, err := slot(s.Component)
			if err != nil {
				m.mu.Unlock()
				return fmt.Errorf("irm: %s: %w", s.Name, err)
			}
			m.children = append(m.children, &supervised{name: s.Name, kind: "component", badge: s.Badge, comp: comp, state: StateRunning, backoff: NewBackoff(m.cfg.Restart, now)})
		}
		m.mu.Unlock()
		if m.cfg.Fresh {
			pd.Go(m.restartAll) // they call the IRM as they start: serve meanwhile
		}
		pd.Go(func() { m.sweep(pd.Context()) })
		if fault != 0 {
			pd.Go(func() { m.superviseLoop(pd.Context(), fault) })
		}
		return rpc.Serve(pd, ep, m.handle)
	}
}

// errRights is the error of a call the caller's role does not allow.
func errRights(op string, badge kernel.Badge, why string) error {
	return fmt.Errorf("irm: %s by %s: %s: %w", op, describeBadge(badge), why, kernel.ErrRights)
}

func (m *IRM) handle(ctx context.Context, r *rpc.Request) (rpc.Response, error) {
	if r.Op == OpTarget {
		// The one operation that takes a cap: a management target's
		// endpoint, kept or deleted by offerTarget.
		return m.offerTarget(r)
	}
	// No other operation on the IRM's endpoint takes caps: any that came
	// along are not kept (they would fill the IRM's CSpace).
	for _, c := range r.Caps {
		m.pd.Delete(c)
	}
	role := RoleOf(r.Badge)
	switch r.Op {
	case OpSession:
		var a SessionReq
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.openSession(r.Badge, a)
	case OpHello:
		if role != RoleIPCP {
			return rpc.Response{}, errRights("hello", r.Badge, "only IPCPs say hello")
		}
		var a ipcp.Info
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return rpc.Response{}, m.hello(ctx, r.Badge, a)
	case OpFlowReq:
		if role != RoleIPCP {
			return rpc.Response{}, errRights("flow request", r.Badge, "only IPCPs request flows")
		}
		var a ipcp.AllocReq
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.flowReq(ctx, r, a)
	}
	if role != RoleSession && role != RoleMgmtSession {
		return rpc.Response{}, errRights(fmt.Sprintf("operation %d", r.Op), r.Badge, "needs a session cap (open one with OpSession)")
	}
	s, err := m.sessionOf(r.Badge)
	if err != nil {
		return rpc.Response{}, err
	}
	switch r.Op {
	case OpAlloc:
		var a AllocArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.alloc(ctx, s, a)
	case OpBind, OpUnbind:
		var a NameArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		if r.Op == OpBind {
			return rpc.Response{}, m.bind(ctx, s, a.Name, a.Peers)
		}
		return rpc.Response{}, m.unbind(ctx, s, a.Name)
	case OpAccept:
		return m.accept(ctx, s)
	case OpEndSession:
		m.endSession(s)
		return rpc.Response{}, nil
	case OpJoin:
		var a JoinArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.join(ctx, s, a)
	case OpMgmt:
		var a ipcp.MgmtReq
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		resp, err := m.mgmt(ctx, s, a)
		return rpc.Response{Body: resp}, err
	}
	return rpc.Response{}, fmt.Errorf("irm: unknown operation %d: %w", r.Op, flow.ErrInvalid)
}

// newFlow creates a flow's two rings and returns the caps for both ends,
// all in the IRM's CSpace. The IRM keeps the originals for accounting,
// and to close the flow if the IPCP it runs through (via) faults.
func (m *IRM) newFlow(info flow.Info, via string, owner kernel.Badge) (id uint64, app, ipc [2]kernel.Cap, err error) {
	pd := m.pd
	m.mu.Lock()
	n := len(m.flows)
	m.mu.Unlock()
	if n >= m.collectAt {
		// Many flows since the last sweep (fast churn): forget the closed
		// ones now, so their caps do not pile up in the IRM's CSpace.
		m.collect()
		m.mu.Lock()
		m.collectAt = 2*len(m.flows) + collectMin
		m.mu.Unlock()
	}
	// A spec with a bandwidth gets it as a byte rate on both rings: what
	// is pushed beyond it (after a burst of a second's worth) is refused
	// to the writer (flow.ErrBusy) or dropped and counted by the IPCP.
	spec := kernel.RingSpec{Size: m.cfg.RingSize, ByteRate: RingRate(info.QoS)}
	r1, err := pd.NewRingSpec(spec) // app → IPCP
	if err != nil {
		return 0, app, ipc, fmt.Errorf("irm: new flow ring: %w: %w", flow.ErrBusy, err)
	}
	r2, err := pd.NewRingSpec(spec) // IPCP → app
	if err != nil {
		pd.Delete(r1)
		return 0, app, ipc, fmt.Errorf("irm: new flow ring: %w: %w", flow.ErrBusy, err)
	}
	var caps [4]kernel.Cap
	mints := [4]struct {
		src    kernel.Cap
		rights kernel.Rights
	}{{r2, kernel.Read}, {r1, kernel.Write}, {r1, kernel.Read}, {r2, kernel.Write}}
	for i, mt := range mints {
		c, err := pd.Mint(mt.src, mt.rights, 0)
		if err != nil {
			for _, d := range caps[:i] {
				pd.Delete(d)
			}
			pd.Delete(r1)
			pd.Delete(r2)
			return 0, app, ipc, fmt.Errorf("irm: mint flow caps: %w", err)
		}
		caps[i] = c
	}
	m.mu.Lock()
	m.nextFlow++
	id = m.nextFlow
	info.ID = id
	m.flows[id] = &flowEntry{info: info, ring1: r1, ring2: r2, via: via, owner: owner, started: time.Now()}
	m.mu.Unlock()
	return id, [2]kernel.Cap{caps[0], caps[1]}, [2]kernel.Cap{caps[2], caps[3]}, nil
}

// RingRate is the byte rate of a flow's rings for spec q: its bandwidth
// (bit/s) in bytes per second; 0 (unlimited) when it asks for none.
func RingRate(q flow.QoS) int64 { return int64(q.Bandwidth / 8) }

// dropFlow closes and forgets a flow whose allocation failed; caps not yet
// handed out are deleted.
func (m *IRM) dropFlow(id uint64, unsent ...kernel.Cap) {
	pd := m.pd
	for _, c := range unsent {
		if c != 0 {
			pd.Delete(c)
		}
	}
	m.mu.Lock()
	f := m.flows[id]
	delete(m.flows, id)
	m.mu.Unlock()
	if f != nil {
		pd.CloseRing(f.ring1)
		pd.CloseRing(f.ring2)
		pd.Revoke(f.ring1)
		pd.Revoke(f.ring2)
		pd.Delete(f.ring1)
		pd.Delete(f.ring2)
	}
}

// closeFlows closes both rings of every flow that match selects: both ends
// see the flow end (ErrClosed) at once. The sweep forgets them later.
func (m *IRM) closeFlows(match func(f *flowEntry) bool) int {
	m.mu.Lock()
	var rings []kernel.Cap
	for _, f := range m.flows {
		if match(f) {
			rings = append(rings, f.ring1, f.ring2)
		}
	}
	pd := m.pd
	m.mu.Unlock()
	for _, r := range rings {
		pd.CloseRing(r)
	}
	return len(rings) / 2
}

// callCtx bounds a call to IPCP e: by ctx, by CallTimeout, and by e's
// incarnation (ipcpCtx).
func (m *IRM) callCtx(ctx context.Context, e *ipcpEntry) (context.Context, context.CancelFunc) {
	return m.ipcpCtx(ctx, e, m.cfg.CallTimeout)
}

// ipcpCtx bounds a call to IPCP e: by ctx, by d, and by e's current
// incarnation: a call in flight when it faults ends as soon as the IRM
// learns of the fault, not at its deadline.
func (m *IRM) ipcpCtx(ctx context.Context, e *ipcpEntry, d time.Duration) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithTimeout(ctx, d)
	m.mu.Lock()
	life := e.life
	m.mu.Unlock()
	if life == nil {
		return cctx, cancel
	}
	stop := context.AfterFunc(life, cancel)
	return cctx, func() { stop(); cancel() }
}

func (m *IRM) alloc(ctx context.Context, s *session, a AllocArgs) (rpc.Response, error) {
	start := time.Now()
	resp, layer, err := m.allocIn(ctx, s, a)
	m.allocs.observe(layer, time.Since(start), err)
	return resp, err
}

// allocIn is alloc's work; layer is the layer that allocated the flow
// ("" when none did).
func (m *IRM) allocIn(ctx context.Context, s *session, a AllocArgs) (resp rpc.Response, layer string, err error) {
	if a.Name == "" {
		return rpc.Response{}, "", fmt.Errorf("irm: alloc: empty name: %w", flow.ErrInvalid)
	}
	m.mu.Lock()
	ipcps := append([]*ipcpEntry(nil), m.ipcps...)
	m.mu.Unlock()
	var lastErr error = fmt.Errorf("irm: alloc %q: no layers: %w", a.Name, flow.ErrNotFound)
	tried := -1 // the layer remembered, tried first and failed
	if len(ipcps) > 1 {
		if i := m.viaOf(a.Name, ipcps); i >= 0 {
			// The layer the last allocation to the name went through is
			// asked to allocate at once, without a query to every layer
			// first (its Alloc says "not here" itself); should it fail,
			// the others are queried as for a name not seen before.
			resp, err := m.allocVia(ctx, s, a, ipcps[i], i < len(ipcps)-1)
			if err == nil {
				m.rememberVia(a.Name, ipcps[i].info.Name)
				return resp, ipcps[i].info.Layer, nil
			}
			m.forgetVia(a.Name)
			lastErr, tried = err, i
			if ctx.Err() != nil {
				return rpc.Response{}, "", lastErr
			}
			m.cfg.Log.Info("allocation failed, asking the other layers", "dst", a.Name, "layer", ipcps[i].info.Layer, "err", err)
		}
	}
	var answers []chan error
	if len(ipcps) == 1 {
		// One layer: nothing to choose, and its Alloc says "not here"
		// itself; a query first would only add a call to the IPCP.
		answers = []chan error{make(chan error, 1)}
		answers[0] <- m.ready(ipcps[0])
	} else {
		answers = m.queryAll(ctx, ipcps, a.Name)
	}
	for i, e := range ipcps {
		if err := <-answers[i]; err != nil || i == tried {
			if err != nil && !errors.Is(err, flow.ErrNotFound) {
				lastErr = fmt.Errorf("irm: alloc %q: layer %s: %w", a.Name, e.info.Layer, err)
			}
			continue
		}
		resp, err := m.allocVia(ctx, s, a, e, i < len(ipcps)-1)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return rpc.Response{}, "", lastErr
			}
			m.cfg.Log.Info("allocation failed, trying the next layer", "dst", a.Name, "layer", e.info.Layer, "err", err)
			continue
		}
		if len(ipcps) > 1 {
			m.rememberVia(a.Name, e.info.Name)
		}
		return resp, e.info.Layer, nil
	}
	return rpc.Response{}, "", lastErr
}

// allocVia allocates the flow a asks for through e: a new flow, e's
// IPCP's Alloc, with a bound on the call when a later layer remains to
// be tried (multi-homing: a refusal, or a peer that left without the
// layer knowing, must not cost the whole call timeout while others might
// reach the name).
func (m *IRM) allocVia(ctx context.Context, s *session, a AllocArgs, e *ipcpEntry, more bool) (rpc.Response, error) {
	info := flow.Info{Remote: a.Name, Layer: e.info.Layer, QoS: a.QoS}
	id, app, ipc, err := m.newFlow(info, e.info.Name, s.badge)
	if err != nil {
		return rpc.Response{}, err
	}
	info.ID = id
	timeout := m.cfg.CallTimeout
	if more {
		timeout = min(timeout, max(2*m.cfg.QueryTimeout, time.Second))
	}
	actx, acancel := m.ipcpCtx(ctx, e, timeout)
	err = m.ready(e)
	if err == nil {
		var res ipcp.AllocResult
		res, err = e.ipcp.Alloc(actx, ipcp.AllocReq{ID: id, Dst: a.Name, QoS: a.QoS}, ipc)
		info.MaxSDU, info.Peer = res.MaxSDU, res.Peer
		if err == nil && a.QoS.Sealed && res.Peer == nil {
			// An IPCP that ignored the request: the flow is not
			// what the program asked for.
			err = fmt.Errorf("layer %s does not seal flows: %w", e.info.Layer, flow.ErrRefused)
		}
	}
	acancel()
	if err != nil {
		// The IPCP end was moved to the IPCP only if the call went
		// through; deleting a moved slot is harmless.
		m.dropFlow(id, app[0], app[1], ipc[0], ipc[1])
		return rpc.Response{}, fmt.Errorf("irm: alloc %q in layer %s: %w", a.Name, e.info.Layer, err)
	}
	m.mu.Lock()
	if f := m.flows[id]; f != nil { // what the layer said of the flow: for `ouro flows`
		f.info.Peer, f.info.MaxSDU = info.Peer, info.MaxSDU
	}
	m.mu.Unlock()
	m.cfg.Log.Debug("flow allocated", "flow", id, "dst", a.Name, "layer", e.info.Layer)
	return rpc.Response{Body: info, Caps: app[:], Undelivered: func() { m.dropFlow(id) }}, nil
}

// viaTTL is how long the IRM allocates to a name through the layer its
// last allocation to it went through without asking every layer first:
// a layer earlier in the preference order that starts to reach the name
// meanwhile is chosen once this has passed (or the layer remembered
// fails). maxVia bounds the names remembered.
const (
	viaTTL = 5 * time.Second
	maxVia = 1024
)

type viaEntry struct {
	ipcp string    // the IPCP's name
	at   time.Time // when an allocation through it last succeeded
}

// viaOf returns the index in ipcps of the IPCP the last allocation to
// name went through, if it was less than viaTTL ago; -1 if none.
func (m *IRM) viaOf(name string, ipcps []*ipcpEntry) int {
	m.mu.Lock()
	v, ok := m.via[name]
	m.mu.Unlock()
	if !ok || time.Since(v.at) >= viaTTL {
		return -1
	}
	for i, e := range ipcps {
		if e.info.Name == v.ipcp {
			return i
		}
	}
	return -1
}

// rememberVia notes that an allocation to name went through the IPCP
// named ipcp.
func (m *IRM) rememberVia(name, ipcp string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.via == nil {
		m.via = make(map[string]viaEntry)
	}
	if _, ok := m.via[name]; !ok && len(m.via) >= maxVia {
		for k := range m.via { // one, any: the map's order is random
			delete(m.via, k)
			break
		}
	}
	m.via[name] = viaEntry{ipcp: ipcp, at: time.Now()}
}

// forgetVia drops what rememberVia noted of name.
func (m *IRM) forgetVia(name string) {
	m.mu.Lock()
	delete(m.via, name)
	m.mu.Unlock()
}

// queryAll asks every layer at once whether it reaches name; answer i
// arrives on channel i. A layer that says "not here" only by staying
// silent (an Ethernet shim's name query) then costs one query timeout per
// allocation, not one per such layer; the caller still takes the first
// layer in preference order that reaches the name. A layer whose IPCP is
// not operational (faulted, restarting) answers at once with its error.
func (m *IRM) queryAll(ctx context.Context, ipcps []*ipcpEntry, name string) []chan error {
	answers := make([]chan error, len(ipcps))
	for i, e := range ipcps {
		answers[i] = make(chan error, 1)
		if err := m.ready(e); err != nil {
			answers[i] <- err
			continue
		}
		qctx, cancel := m.ipcpCtx(ctx, e, m.cfg.QueryTimeout)
		m.pd.Go(func() {
			defer cancel()
			answers[i] <- e.ipcp.Query(qctx, name)
		})
	}
	return answers
}

// openSession opens a session for the caller: it mints a cap to the
// IRM's endpoint badged for the session alone and hands the caller a copy.
// The IRM keeps the original, to revoke the session's every cap when it
// ends.
func (m *IRM) openSession(caller kernel.Badge, req SessionReq) (rpc.Response, error) {
	s := &session{opener: caller, names: make(map[string]bool), done: make(chan struct{})}
	switch RoleOf(caller) {
	case RoleIPCP:
		e := m.ipcpByBadge(caller)
		if e == nil {
			return rpc.Response{}, errRights("open session", caller, "unknown IPCP")
		}
		s.principal, s.ipcp = "ipcp:"+e.info.Name, e
	case RoleApp, RoleManager:
		who := describeBadge(caller)
		if c := m.childByBadge(caller); c != nil {
			who = c.name
		}
		s.principal, s.mgmt = "app:"+who, RoleOf(caller) == RoleManager
		if req.Mgmt && !s.mgmt {
			return rpc.Response{}, errRights("open management session", caller, "an application component has no management authority")
		}
	case RoleGateway:
		if req.Principal == "" || strings.HasPrefix(req.Principal, "ipcp:") || strings.HasPrefix(req.Principal, "app:") {
			return rpc.Response{}, fmt.Errorf("irm: open session: principal %q: %w", req.Principal, flow.ErrInvalid)
		}
		s.principal, s.mgmt = req.Principal, req.Mgmt
	default:
		return rpc.Response{}, errRights("open session", caller, "a session cannot open sessions")
	}
	role := RoleSession
	if s.mgmt {
		role = RoleMgmtSession
	}
	m.mu.Lock()
	m.nextSess++
	id := uint64(m.cfg.Epoch)<<40 | m.nextSess&(1<<40-1)
	s.badge = MakeBadge(role, id)
	pd, self := m.pd, m.self
	m.mu.Unlock()
	s.pending = make(chan *pendingFlow, m.cfg.Backlog)
	kept, err := pd.Mint(self, kernel.Write|kernel.Grant|kernel.GrantReply, s.badge)
	if err != nil {
		return rpc.Response{}, fmt.Errorf("irm: open session: %w: %w", flow.ErrBusy, err)
	}
	give, err := pd.Copy(kept)
	if err != nil {
		pd.Delete(kept)
		return rpc.Response{}, fmt.Errorf("irm: open session: %w: %w", flow.ErrBusy, err)
	}
	s.kept = kept
	m.mu.Lock()
	m.sessions[s.badge] = s
	m.mu.Unlock()
	return rpc.Response{
		Body:        SessionInfo{ID: id, Principal: s.principal, Mgmt: s.mgmt},
		Caps:        []kernel.Cap{give},
		Undelivered: func() { m.endSession(s) },
	}, nil
}

// sessionOf returns the live session whose cap carries badge.
func (m *IRM) sessionOf(badge kernel.Badge) (*session, error) {
	m.mu.Lock()
	s := m.sessions[badge]
	m.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("irm: session %#x has ended: %w", idOf(badge), flow.ErrClosed)
	}
	return s, nil
}

func (m *IRM) ipcpByBadge(b kernel.Badge) *ipcpEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.ipcps {
		if e.sup.badge == b {
			return e
		}
	}
	return nil
}

func (m *IRM) childByBadge(b kernel.Badge) *supervised {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.children {
		if c.badge == b {
			return c
		}
	}
	return nil
}

func (m *IRM) bind(ctx context.Context, s *session, name string, peers []string) error {
	if name == "" {
		return fmt.Errorf("irm: bind: empty name: %w", flow.ErrInvalid)
	}
	if err := CheckPeers(peers); err != nil {
		return err
	}
	m.mu.Lock()
	if s.ended {
		m.mu.Unlock()
		return fmt.Errorf("irm: bind %q: session ended: %w", name, flow.ErrClosed)
	}
	if s.names[name] {
		s.setPeers(name, peers) // binding again changes the list
		m.mu.Unlock()
		return nil
	}
	// An IPCP's own name reaches that IPCP (enrollment, adjacencies):
	// nobody else may take flows to it.
	for _, e := range m.ipcps {
		if e.info.Name == name && s.ipcp != e {
			m.mu.Unlock()
			return fmt.Errorf("irm: bind %q: the name of IPCP %s, which alone may bind it: %w", name, e.info.Name, kernel.ErrRights)
		}
	}
	n := m.names[name]
	if n != nil {
		// Load sharing: more sessions of the same principal may bind a
		// name; another principal may not take (some of) its flows.
		for _, b := range n.sessions {
			if o := m.sessions[b]; o != nil && o.principal != s.principal {
				m.mu.Unlock()
				return fmt.Errorf("irm: bind %q: bound by another program (%s): %w", name, o.principal, flow.ErrExists)
			}
		}
	} else {
		n = &nameEntry{name: name, layers: make(map[string]bool)}
		m.names[name] = n
	}
	s.names[name] = true
	s.setPeers(name, peers)
	n.sessions = append(n.sessions, s.badge)
	var reg []*ipcpEntry
	// IPCPs bind their own names (to accept N-1 flows) and register them
	// in the lower layers they choose: auto-registration would register
	// an IPCP in its own layer, or in layers above it.
	if m.cfg.AutoRegister && s.ipcp == nil {
		for _, e := range m.ipcps {
			if !n.layers[e.info.Name] {
				reg = append(reg, e)
			}
		}
	}
	m.mu.Unlock()
	for _, e := range reg {
		if err := m.register(ctx, name, e); err != nil {
			m.cfg.Log.Warn("auto-register failed", "name", name, "ipcp", e.info.Name, "err", err)
		}
	}
	return nil
}

// setPeers records which peers' flows to name s takes (empty: any); m.mu
// is held.
func (s *session) setPeers(name string, peers []string) {
	if len(peers) == 0 {
		delete(s.peers, name)
		return
	}
	if s.peers == nil {
		s.peers = make(map[string][]string)
	}
	s.peers[name] = slices.Clone(peers)
}

// errPending says a registration is recorded, to be made when the IPCP
// says hello (it has not started yet, or is restarting).
var errPending = errors.New("registration recorded")

// register registers name with e, bounded by CallTimeout. While e is not
// operational the registration is recorded and made when it says hello
// again, and the error (errPending) says why it is not made now.
func (m *IRM) register(ctx context.Context, name string, e *ipcpEntry) error {
	// The check and the record are one step: hello, which registers the
	// recorded names, sees this one either way (it looks again before it
	// marks e operational).
	m.mu.Lock()
	if e.sup.state != StateOperational {
		m.nameEntry(name).layers[e.info.Name] = true
		m.mu.Unlock()
		return fmt.Errorf("%w: %w", errPending, m.ready(e))
	}
	m.mu.Unlock()
	cctx, cancel := m.callCtx(ctx, e)
	err := e.ipcp.Register(cctx, name)
	cancel()
	if err != nil && !errors.Is(err, flow.ErrExists) {
		return err
	}
	m.mu.Lock()
	m.nameEntry(name).layers[e.info.Name] = true
	m.mu.Unlock()
	return err
}

// nameEntry returns name's entry, made if needed; m.mu is held.
func (m *IRM) nameEntry(name string) *nameEntry {
	n := m.names[name]
	if n == nil {
		n = &nameEntry{name: name, layers: make(map[string]bool)}
		m.names[name] = n
	}
	return n
}

func (m *IRM) unbind(ctx context.Context, s *session, name string) error {
	m.mu.Lock()
	if !s.names[name] {
		m.mu.Unlock()
		return fmt.Errorf("irm: unbind %q: not bound in this session: %w", name, flow.ErrNotFound)
	}
	delete(s.names, name)
	delete(s.peers, name)
	n := m.names[name]
	var unreg []*ipcpEntry
	if n != nil {
		for i, b := range n.sessions {
			if b == s.badge {
				n.sessions = append(n.sessions[:i], n.sessions[i+1:]...)
				break
			}
		}
		if len(n.sessions) == 0 && m.cfg.AutoRegister && s.ipcp == nil {
			for _, e := range m.ipcps {
				if n.layers[e.info.Name] {
					unreg = append(unreg, e)
					delete(n.layers, e.info.Name)
				}
			}
		}
		if len(n.sessions) == 0 && len(n.layers) == 0 {
			delete(m.names, name)
		}
	}
	m.mu.Unlock()
	for _, e := range unreg {
		if m.ready(e) != nil {
			continue // restarts without it
		}
		cctx, cancel := m.callCtx(ctx, e)
		err := e.ipcp.Unregister(cctx, name)
		cancel()
		if err != nil {
			m.cfg.Log.Warn("unregister failed", "name", name, "ipcp", e.info.Name, "err", err)
		}
	}
	return nil
}

// endSession ends s once: its names are unbound, the flows waiting for
// it refused, its Accepts end, and every cap to it is revoked, so it
// cannot be used (or brought back) again.
func (m *IRM) endSession(s *session) {
	m.mu.Lock()
	if s.ended {
		m.mu.Unlock()
		return
	}
	s.ended = true
	delete(m.sessions, s.badge)
	close(s.done)
	names := make([]string, 0, len(s.names))
	for n := range s.names {
		names = append(names, n)
	}
	pd := m.pd
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(pd.Context(), m.cfg.CallTimeout)
	defer cancel()
	for _, n := range names {
		m.unbind(ctx, s, n)
	}
	if len(names) > 0 {
		// A program's names going is worth a line; the tools' sessions,
		// which bind nothing, are not.
		slices.Sort(names)
		m.cfg.Log.Info("session ended, its names unbound", "principal", s.principal, "names", names)
	}
drain:
	for {
		select {
		case p := <-s.pending:
			m.refusePending(p)
		default:
			break drain
		}
	}
	m.dropTargets(s)
	pd.Revoke(s.kept)
	pd.Delete(s.kept)
}

// endSessionsOf ends every session the component with badge opened.
func (m *IRM) endSessionsOf(opener kernel.Badge) int {
	m.mu.Lock()
	var ss []*session
	for _, s := range m.sessions {
		if s.opener == opener {
			ss = append(ss, s)
		}
	}
	m.mu.Unlock()
	for _, s := range ss {
		m.endSession(s)
	}
	return len(ss)
}

// refusePending refuses a flow that was waiting for an ended session; its
// requester (flowReq) drops it and answers the IPCP.
func (m *IRM) refusePending(p *pendingFlow) {
	p.decide(pendingAbandoned)
}

// accept waits for an incoming flow to one of s's names, until the caller
// gives up (ctx) or the session ends.
func (m *IRM) accept(ctx context.Context, s *session) (rpc.Response, error) {
	m.mu.Lock()
	if s.ended {
		m.mu.Unlock()
		return rpc.Response{}, fmt.Errorf("irm: accept: session ended: %w", flow.ErrClosed)
	}
	if s.accepting >= maxAccepts {
		m.mu.Unlock()
		return rpc.Response{}, fmt.Errorf("irm: accept: %d Accepts already waiting in this session: %w", maxAccepts, flow.ErrBusy)
	}
	s.accepting++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		s.accepting--
		m.mu.Unlock()
	}()
	for {
		select {
		case p := <-s.pending:
			if !p.decide(pendingTaken) {
				continue // the requester gave up on it already
			}
			// The IPCP hears once the session has the flow. Answered
			// after the session's reply, its goroutine is the last
			// readied, which the runtime runs first: the requester's
			// answer leaves this node before the session hands the
			// flow to its program (docs/benchmarks.md, "Allocation").
			return rpc.Response{Body: p.info, Caps: []kernel.Cap{p.rx, p.tx},
				Delivered: func() { p.answer(nil) },
				Undelivered: func() {
					p.answer(fmt.Errorf("irm: flow to %q: its program's session left as it accepted: %w", p.info.Local, flow.ErrRefused))
				}}, nil
		case <-s.done:
			return rpc.Response{}, fmt.Errorf("irm: accept: session ended: %w", flow.ErrClosed)
		case <-ctx.Done():
			return rpc.Response{}, fmt.Errorf("irm: accept: %w", ctx.Err())
		}
	}
}

// flowReq serves an IPCP's request for an incoming flow: it finds the
// session bound to the name and waits for it to accept. The IPCP is the
// one the caller's badge names, whatever the request says.
//
// Once the flow is queued for the program, the answer to the IPCP goes
// through r.Later: the Accept that takes the flow sends it as soon as its
// session has the flow (one goroutine wake-up less on the path of every
// allocation; a session gone meanwhile refuses it); flowReq's goroutine
// waits only to refuse a flow nobody took in time.
func (m *IRM) flowReq(ctx context.Context, r *rpc.Request, req ipcp.AllocReq) (rpc.Response, error) {
	badge := r.Badge
	e := m.ipcpByBadge(badge)
	if e == nil {
		return rpc.Response{}, errRights("flow request", badge, "unknown IPCP")
	}
	m.mu.Lock()
	n := m.names[req.Dst]
	var s *session
	if n != nil && len(n.sessions) > 0 {
		k := n.sessions[n.next%len(n.sessions)]
		n.next++
		s = m.sessions[k]
	}
	m.mu.Unlock()
	if s == nil {
		return rpc.Response{}, fmt.Errorf("irm: flow to %q: no program bound: %w", req.Dst, flow.ErrNotFound)
	}
	if req.QoS.Sealed && req.Peer == nil {
		return rpc.Response{}, fmt.Errorf("irm: flow to %q: asks to be sealed, and layer %s did not seal it: %w", req.Dst, e.info.Layer, flow.ErrRefused)
	}
	m.mu.Lock()
	allowed := s.peers[req.Dst]
	m.mu.Unlock()
	if len(allowed) > 0 && (req.Peer == nil || !slices.Contains(allowed, req.Peer.ID)) {
		who := "an unsealed flow (no verified peer)"
		if req.Peer != nil {
			who = fmt.Sprintf("node %s (%q)", req.Peer.ID, req.Peer.Name)
		}
		m.cfg.Log.Warn("flow refused: not among the peers its program accepts", "dst", req.Dst, "from", who)
		return rpc.Response{}, fmt.Errorf("irm: flow to %q from %s: not among the peers its program accepts: %w", req.Dst, who, flow.ErrRefused)
	}
	info := flow.Info{Local: req.Dst, Remote: req.Src, Layer: e.info.Layer, QoS: req.QoS, MaxSDU: req.MaxSDU, Peer: req.Peer}
	id, app, ipc, err := m.newFlow(info, e.info.Name, s.badge)
	if err != nil {
		return rpc.Response{}, err
	}
	info.ID = id
	later := r.Later()
	p := &pendingFlow{info: info, rx: app[0], tx: app[1], decided: make(chan struct{}), answer: func(err error) {
		if err != nil {
			m.dropFlow(id, ipc[0], ipc[1]) // the application's end went with the Accept's reply
			later.Send(rpc.Response{}, err)
			return
		}
		m.cfg.Log.Debug("flow accepted", "flow", id, "dst", req.Dst)
		later.Send(rpc.Response{Caps: ipc[:], Undelivered: func() { m.dropFlow(id) }}, nil)
	}}
	m.mu.Lock()
	queued := false
	if !s.ended {
		select {
		case s.pending <- p:
			queued = true
		default:
		}
	}
	ended := s.ended
	m.mu.Unlock()
	if !queued {
		m.dropFlow(id, app[0], app[1], ipc[0], ipc[1])
		err := fmt.Errorf("irm: flow to %q: backlog full: %w", req.Dst, flow.ErrBusy)
		if ended {
			err = fmt.Errorf("irm: flow to %q: its program left: %w", req.Dst, flow.ErrRefused)
		}
		later.Send(rpc.Response{}, err)
		return rpc.Response{}, nil
	}
	t := time.NewTimer(m.cfg.AcceptTimeout)
	defer t.Stop()
	select {
	case <-p.decided:
	case <-t.C:
	case <-ctx.Done():
	}
	// Not decided in time: give up, unless Accept takes it right now
	// (then it answers the IPCP).
	p.decide(pendingAbandoned)
	if p.state.Load() != pendingTaken {
		m.dropFlow(id, app[0], app[1], ipc[0], ipc[1])
		later.Send(rpc.Response{}, fmt.Errorf("irm: flow to %q: not accepted (program gone, or no accept in %v): %w", req.Dst, m.cfg.AcceptTimeout, flow.ErrRefused))
	}
	return rpc.Response{}, nil
}

func (m *IRM) join(ctx context.Context, s *session, a JoinArgs) (rpc.Response, error) {
	m.mu.Lock()
	var e *ipcpEntry
	for _, x := range m.ipcps {
		if x.info.Layer == a.Layer {
			e = x
			break
		}
	}
	m.mu.Unlock()
	if e == nil {
		return rpc.Response{}, fmt.Errorf("irm: join %q: %w", a.Layer, flow.ErrNoLayer)
	}
	if err := m.ready(e); err != nil {
		return rpc.Response{}, fmt.Errorf("irm: join %q: %w", a.Layer, err)
	}
	info := flow.Info{Remote: a.Layer, Layer: a.Layer, QoS: flow.BestEffort()}
	id, app, ipc, err := m.newFlow(info, e.info.Name, s.badge)
	if err != nil {
		return rpc.Response{}, err
	}
	info.ID = id
	cctx, cancel := m.callCtx(ctx, e)
	info.MaxSDU, err = e.ipcp.Join(cctx, ipc)
	cancel()
	if err != nil {
		m.dropFlow(id, app[0], app[1], ipc[0], ipc[1])
		return rpc.Response{}, fmt.Errorf("irm: join %q: %w", a.Layer, err)
	}
	return rpc.Response{Body: info, Caps: app[:], Undelivered: func() { m.dropFlow(id) }}, nil
}

// sweep forgets flows whose rings both ends have closed, every second.
func (m *IRM) sweep(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.collect()
		}
	}
}

func (m *IRM) collect() {
	m.mu.Lock()
	pd := m.pd
	var dead []uint64
	for id, f := range m.flows {
		i1, err1 := pd.Inspect(f.ring1)
		i2, err2 := pd.Inspect(f.ring2)
		if err1 != nil || err2 != nil || (i1.Closed && i2.Closed) {
			dead = append(dead, id)
		}
	}
	m.mu.Unlock()
	for _, id := range dead {
		m.dropFlow(id)
	}
}
