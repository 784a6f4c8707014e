// Package irm is the node's IPC resource manager, a kernel component: it
// keeps names, bindings and registrations, and brokers flow allocation
// between programs and the IPCPs of the node's layers. It moves no data:
// each flow is a pair of kernel rings whose caps it hands to both ends.
package irm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/rpc"
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
	// Backlog bounds the incoming flows waiting for Accept per session.
	Backlog int
	// AutoRegister registers a bound name in every layer (as if by "reg").
	AutoRegister bool
	// Logf logs notable events; nil discards them.
	Logf func(format string, args ...any)
	// Describe returns the node's system description for management
	// ("system" command); nil if not available.
	Describe func() *kernel.System
	// IPCPs are the IPCP components the IRM drives, in preference order
	// for allocation.
	IPCPs []IPCPSlot
	// Creator makes IPCPs at run time ("create"); nil: none can be made.
	Creator Creator
}

// IPCPSlot names an IPCP component as the IRM reaches it: the slot of its
// endpoint cap in the IRM's CSpace, and the badge its calls to the IRM
// carry.
type IPCPSlot struct {
	Slot  string
	Badge kernel.Badge
	Info  Info
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
	if c.Backlog <= 0 {
		c.Backlog = 64
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// IRM is the IPC resource manager. Its Run method is the component's
// program; everything else is reached over its endpoint.
type IRM struct {
	cfg Config

	mu       sync.Mutex // guards everything below
	pd       *kernel.PD
	self     kernel.Cap   // the IRM's own endpoint (all rights)
	ipcps    []*ipcpEntry // preference order for allocation
	names    map[string]*nameEntry
	sessions map[sessionKey]*session
	flows    map[uint64]*flowEntry
	nextFlow uint64
	// collectAt is the flow count at which newFlow collects closed flows
	// itself instead of waiting for the sweep.
	collectAt int
}

// collectMin is the least number of flows between synchronous collections.
const collectMin = 256

type sessionKey struct {
	badge kernel.Badge
	id    uint64
}

type session struct {
	key     sessionKey
	names   map[string]bool
	pending chan *pendingFlow // incoming flows waiting for Accept
	ended   bool              // guarded by IRM.mu: no more flows are queued
}

type pendingFlow struct {
	info   flow.Info
	rx, tx kernel.Cap // the application's end, in the IRM's CSpace
	// state moves once from pendingWaiting to pendingTaken (by Accept) or
	// to pendingAbandoned (by the requester giving up, or the session
	// ending); decided is closed when it moved.
	state   atomic.Int32
	decided chan struct{}
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
	sessions []sessionKey    // bound acceptors, served round robin
	next     int             // round-robin position
	layers   map[string]bool // IPCP names it is registered with
}

type ipcpEntry struct {
	info  Info
	ipcp  *Remote
	badge kernel.Badge
	child kernel.Cap // created at run time: the component and its endpoint
	ep    kernel.Cap
}

type flowEntry struct {
	info    flow.Info
	ring1   kernel.Cap // app → IPCP
	ring2   kernel.Cap // IPCP → app
	started time.Time
}

// New returns an IRM; Run starts it as a component.
func New(cfg Config) *IRM {
	cfg.setDefaults()
	return &IRM{
		cfg:      cfg,
		names:    make(map[string]*nameEntry),
		sessions: make(map[sessionKey]*session),
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
		m.mu.Lock()
		m.pd = pd
		m.self = ep
		m.ipcps = m.ipcps[:0]
		for _, s := range m.cfg.IPCPs {
			c, err := pd.Slot(s.Slot)
			if err != nil {
				m.mu.Unlock()
				return fmt.Errorf("irm: IPCP %s: %w", s.Info.Name, err)
			}
			m.ipcps = append(m.ipcps, &ipcpEntry{info: s.Info, ipcp: NewRemote(pd, c), badge: s.Badge})
		}
		m.mu.Unlock()
		pd.Go(func() { m.sweep(pd.Context()) })
		return rpc.Serve(pd, ep, m.handle)
	}
}

func (m *IRM) handle(ctx context.Context, r *rpc.Request) (rpc.Response, error) {
	switch r.Op {
	case OpAlloc:
		var a AllocArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.alloc(ctx, r.Badge, a)
	case OpBind, OpUnbind:
		var a NameArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		if r.Op == OpBind {
			return rpc.Response{}, m.bind(ctx, sessionKey{r.Badge, a.Session}, a.Name)
		}
		return rpc.Response{}, m.unbind(ctx, sessionKey{r.Badge, a.Session}, a.Name)
	case OpAccept:
		var a SessionArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.accept(ctx, sessionKey{r.Badge, a.Session})
	case OpEndSession:
		var a SessionArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		m.endSession(ctx, sessionKey{r.Badge, a.Session})
		return rpc.Response{}, nil
	case OpJoin:
		var a JoinArgs
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.join(ctx, a)
	case OpFlowReq:
		var a AllocReq
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		return m.flowReq(ctx, r.Badge, a)
	case OpMgmt:
		var a MgmtReq
		if err := r.Decode(&a); err != nil {
			return rpc.Response{}, err
		}
		resp, err := m.mgmt(ctx, a)
		return rpc.Response{Body: resp}, err
	}
	return rpc.Response{}, fmt.Errorf("irm: unknown operation %d: %w", r.Op, flow.ErrInvalid)
}

// newFlow creates a flow's two rings and returns the caps for both ends,
// all in the IRM's CSpace. The IRM keeps the originals for accounting.
func (m *IRM) newFlow(info flow.Info) (id uint64, app, ipc [2]kernel.Cap, err error) {
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
	r1, err := pd.NewRing(m.cfg.RingSize) // app → IPCP
	if err != nil {
		return 0, app, ipc, fmt.Errorf("irm: new flow ring: %w: %w", flow.ErrBusy, err)
	}
	r2, err := pd.NewRing(m.cfg.RingSize) // IPCP → app
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
	m.flows[id] = &flowEntry{info: info, ring1: r1, ring2: r2, started: time.Now()}
	m.mu.Unlock()
	return id, [2]kernel.Cap{caps[0], caps[1]}, [2]kernel.Cap{caps[2], caps[3]}, nil
}

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

func (m *IRM) alloc(ctx context.Context, badge kernel.Badge, a AllocArgs) (rpc.Response, error) {
	if a.Name == "" {
		return rpc.Response{}, fmt.Errorf("irm: alloc: empty name: %w", flow.ErrInvalid)
	}
	m.mu.Lock()
	ipcps := append([]*ipcpEntry(nil), m.ipcps...)
	m.mu.Unlock()
	var lastErr error = fmt.Errorf("irm: alloc %q: no layers: %w", a.Name, flow.ErrNotFound)
	answers := m.queryAll(ctx, ipcps, a.Name)
	for i, e := range ipcps {
		if err := <-answers[i]; err != nil {
			if !errors.Is(err, flow.ErrNotFound) {
				lastErr = fmt.Errorf("irm: alloc %q: layer %s: %w", a.Name, e.info.Layer, err)
			}
			continue
		}
		info := flow.Info{Remote: a.Name, Layer: e.info.Layer, QoS: a.QoS}
		id, app, ipc, err := m.newFlow(info)
		if err != nil {
			return rpc.Response{}, err
		}
		info.ID = id
		// Multi-homing: if this layer fails to allocate (refused, or a
		// peer that left without the layer knowing), a later layer that
		// reaches the name is tried, so an attempt is bounded while
		// later layers remain.
		actx, acancel := ctx, context.CancelFunc(func() {})
		if i < len(ipcps)-1 {
			actx, acancel = context.WithTimeout(ctx, max(2*m.cfg.QueryTimeout, time.Second))
		}
		info.MaxSDU, err = e.ipcp.Alloc(actx, AllocReq{ID: id, Dst: a.Name, QoS: a.QoS}, ipc)
		acancel()
		if err != nil {
			// The IPCP end was moved to the IPCP only if the call went
			// through; deleting a moved slot is harmless.
			m.dropFlow(id, app[0], app[1], ipc[0], ipc[1])
			lastErr = fmt.Errorf("irm: alloc %q in layer %s: %w", a.Name, e.info.Layer, err)
			if ctx.Err() != nil {
				return rpc.Response{}, lastErr
			}
			m.cfg.Logf("irm: %v; trying the next layer", lastErr)
			continue
		}
		m.cfg.Logf("irm: flow %d allocated to %q in layer %s", id, a.Name, e.info.Layer)
		return rpc.Response{Body: info, Caps: app[:]}, nil
	}
	return rpc.Response{}, lastErr
}

// queryAll asks every layer at once whether it reaches name; answer i
// arrives on channel i. A layer that says "not here" only by staying
// silent (an Ethernet shim's name query) then costs one query timeout per
// allocation, not one per such layer; the caller still takes the first
// layer in preference order that reaches the name.
func (m *IRM) queryAll(ctx context.Context, ipcps []*ipcpEntry, name string) []chan error {
	qctx, cancel := context.WithTimeout(ctx, m.cfg.QueryTimeout)
	answers := make([]chan error, len(ipcps))
	var wg sync.WaitGroup
	for i, e := range ipcps {
		answers[i] = make(chan error, 1)
		wg.Add(1)
		m.pd.Go(func() {
			defer wg.Done()
			answers[i] <- e.ipcp.Query(qctx, name)
		})
	}
	m.pd.Go(func() { wg.Wait(); cancel() })
	return answers
}

func (m *IRM) session(k sessionKey) *session {
	s := m.sessions[k]
	if s == nil {
		s = &session{key: k, names: make(map[string]bool), pending: make(chan *pendingFlow, m.cfg.Backlog)}
		m.sessions[k] = s
	}
	return s
}

func (m *IRM) bind(ctx context.Context, k sessionKey, name string) error {
	if name == "" {
		return fmt.Errorf("irm: bind: empty name: %w", flow.ErrInvalid)
	}
	m.mu.Lock()
	s := m.session(k)
	if s.names[name] {
		m.mu.Unlock()
		return nil
	}
	s.names[name] = true
	n := m.names[name]
	if n == nil {
		n = &nameEntry{name: name, layers: make(map[string]bool)}
		m.names[name] = n
	}
	n.sessions = append(n.sessions, k)
	var reg []*ipcpEntry
	// IPCPs bind their own names (to accept N-1 flows) and register them
	// in the lower layers they choose: auto-registration would register
	// an IPCP in its own layer, or in layers above it.
	if m.cfg.AutoRegister && !m.isIPCP(k.badge) {
		for _, e := range m.ipcps {
			if !n.layers[e.info.Name] {
				reg = append(reg, e)
			}
		}
	}
	m.mu.Unlock()
	for _, e := range reg {
		if err := m.register(ctx, name, e); err != nil {
			m.cfg.Logf("irm: auto-register %q in %s: %v", name, e.info.Name, err)
		}
	}
	return nil
}

// isIPCP reports whether badge is an IPCP's; m.mu is held.
func (m *IRM) isIPCP(badge kernel.Badge) bool {
	for _, e := range m.ipcps {
		if e.badge == badge {
			return true
		}
	}
	return false
}

func (m *IRM) register(ctx context.Context, name string, e *ipcpEntry) error {
	if err := e.ipcp.Register(ctx, name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.names[name]
	if n == nil {
		n = &nameEntry{name: name, layers: make(map[string]bool)}
		m.names[name] = n
	}
	n.layers[e.info.Name] = true
	return nil
}

func (m *IRM) unbind(ctx context.Context, k sessionKey, name string) error {
	m.mu.Lock()
	s := m.sessions[k]
	if s == nil || !s.names[name] {
		m.mu.Unlock()
		return fmt.Errorf("irm: unbind %q: not bound: %w", name, flow.ErrNotFound)
	}
	delete(s.names, name)
	n := m.names[name]
	var unreg []*ipcpEntry
	if n != nil {
		for i, sk := range n.sessions {
			if sk == k {
				n.sessions = append(n.sessions[:i], n.sessions[i+1:]...)
				break
			}
		}
		if len(n.sessions) == 0 && m.cfg.AutoRegister && !m.isIPCP(k.badge) {
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
		if err := e.ipcp.Unregister(ctx, name); err != nil {
			m.cfg.Logf("irm: unregister %q from %s: %v", name, e.info.Name, err)
		}
	}
	return nil
}

func (m *IRM) endSession(ctx context.Context, k sessionKey) {
	m.mu.Lock()
	s := m.sessions[k]
	var names []string
	if s != nil {
		for n := range s.names {
			names = append(names, n)
		}
	}
	m.mu.Unlock()
	for _, n := range names {
		m.unbind(ctx, k, n)
	}
	m.mu.Lock()
	delete(m.sessions, k)
	if s != nil {
		s.ended = true
	}
	m.mu.Unlock()
	if s == nil {
		return
	}
	for {
		select {
		case p := <-s.pending:
			m.refusePending(p)
		default:
			return
		}
	}
}

// refusePending refuses a flow that was waiting for an ended session; its
// requester (flowReq) drops it and answers the IPCP.
func (m *IRM) refusePending(p *pendingFlow) {
	p.decide(pendingAbandoned)
}

func (m *IRM) accept(ctx context.Context, k sessionKey) (rpc.Response, error) {
	m.mu.Lock()
	s := m.session(k)
	m.mu.Unlock()
	for {
		select {
		case p := <-s.pending:
			if !p.decide(pendingTaken) {
				continue // the requester gave up on it already
			}
			return rpc.Response{Body: p.info, Caps: []kernel.Cap{p.rx, p.tx}}, nil
		case <-ctx.Done():
			return rpc.Response{}, fmt.Errorf("irm: accept: %w", ctx.Err())
		}
	}
}

// flowReq serves an IPCP's request for an incoming flow: it finds the
// session bound to the name and waits for it to accept.
func (m *IRM) flowReq(ctx context.Context, badge kernel.Badge, req AllocReq) (rpc.Response, error) {
	m.mu.Lock()
	var layer string
	for _, e := range m.ipcps {
		if e.badge == badge {
			layer = e.info.Layer
		}
	}
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
	info := flow.Info{Local: req.Dst, Remote: req.Src, Layer: layer, QoS: req.QoS, MaxSDU: req.MaxSDU}
	id, app, ipc, err := m.newFlow(info)
	if err != nil {
		return rpc.Response{}, err
	}
	info.ID = id
	p := &pendingFlow{info: info, rx: app[0], tx: app[1], decided: make(chan struct{})}
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
		if ended {
			return rpc.Response{}, fmt.Errorf("irm: flow to %q: its program left: %w", req.Dst, flow.ErrRefused)
		}
		return rpc.Response{}, fmt.Errorf("irm: flow to %q: backlog full: %w", req.Dst, flow.ErrBusy)
	}
	t := time.NewTimer(m.cfg.AcceptTimeout)
	defer t.Stop()
	select {
	case <-p.decided:
	case <-t.C:
	case <-ctx.Done():
	}
	// Not decided in time: give up, unless Accept takes it right now.
	p.decide(pendingAbandoned)
	if p.state.Load() == pendingTaken {
		m.cfg.Logf("irm: flow %d to %q accepted", id, req.Dst)
		return rpc.Response{Caps: ipc[:]}, nil
	}
	m.dropFlow(id, app[0], app[1], ipc[0], ipc[1])
	return rpc.Response{}, fmt.Errorf("irm: flow to %q: not accepted (program gone, or no accept in %v): %w", req.Dst, m.cfg.AcceptTimeout, flow.ErrRefused)
}

func (m *IRM) join(ctx context.Context, a JoinArgs) (rpc.Response, error) {
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
	info := flow.Info{Remote: a.Layer, Layer: a.Layer, QoS: flow.BestEffort()}
	id, app, ipc, err := m.newFlow(info)
	if err != nil {
		return rpc.Response{}, err
	}
	info.ID = id
	if info.MaxSDU, err = e.ipcp.Join(ctx, ipc); err != nil {
		m.dropFlow(id, app[0], app[1], ipc[0], ipc[1])
		return rpc.Response{}, fmt.Errorf("irm: join %q: %w", a.Layer, err)
	}
	return rpc.Response{Body: info, Caps: app[:]}, nil
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

// Joiner is an IPCP of a broadcast layer: Join attaches port as a member.
type Joiner interface {
	Join(ctx context.Context, port flow.Port) error
}

// Manager is an IPCP with management commands of its own (bootstrap,
// enroll, connect, and its tables).
type Manager interface {
	Mgmt(ctx context.Context, req MgmtReq) (MgmtResp, error)
}
