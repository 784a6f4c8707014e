package unicast

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dir/flood"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast/addr"
	"github.com/ouronet/ouro/layer/unicast/ca"
	"github.com/ouronet/ouro/layer/unicast/connmgr"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/enroll"
	"github.com/ouronet/ouro/layer/unicast/fa"
	"github.com/ouronet/ouro/layer/unicast/pff"
	"github.com/ouronet/ouro/layer/unicast/routing"
)

var (
	_ ipcp.IPCP    = (*IPCP)(nil)
	_ ipcp.Manager = (*IPCP)(nil)
)

const (
	stateInit int32 = iota
	stateEnrolling
	stateOperational
	stateShutdown
)

var stateNames = [...]string{"init", "enrolling", "operational", "shutdown"}

// IPCP is a unicast IPC process. Before it is a member (bootstrapped or
// enrolled) it accepts registrations and keeps them, and answers Query
// and Alloc with flow.ErrNotFound.
//
// Goroutines: the bring-up (bind, lower registrations, bootstrap or
// enroll, connect), the accept loop for incoming N-1 flows, and once a
// member those of its parts plus, on the data path, one receive and one
// transmit goroutine per N-1 data-transfer flow and one transmit
// goroutine per N+1 flow (datapath.go). All of them, the parts' too, are
// started through Config.Runner.
type IPCP struct {
	cfg   Config
	lg    *slog.Logger // cfg.Log with the IPCP's name (log)
	up    ipcp.Upcalls
	lower flow.Broker
	reg   Registrar

	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	state  atomic.Int32
	core   atomic.Pointer[core] // set once a member
	bound  atomic.Bool          // the IPCP's name is bound in the lower broker
	// lowerMax is the smallest SDU limit among the N-1 flows (MaxSDU).
	lowerMax atomic.Int64
	pool     *dt.Pool
	timers   chan *time.Timer // free list for the data path's waits
	c        dpCounters

	opMu sync.Mutex // serialises bootstrap and enroll

	mu     sync.Mutex // guards the fields below
	names  map[string]bool
	hashes map[layer.Hash]string // of names, once the hash algorithm is known
	peers  map[layer.Addr]string // member names this IPCP learnt (enrolled, neighbours)
	claims map[layer.Addr]claim  // addresses given out while enrolling others
	conns  []string              // connect requests made before membership
	doc    []byte                // signed identity document, once made
	crl    *identity.CRL         // the newest revocation list known (Config.CRL or from a neighbour)
	crlRaw []byte                // its signed encoding, passed on to neighbours

	refused     refusals      // enrollments refused, by reason
	clockOffset atomic.Int64  // ns added to the local clock for membership checks (learnClock)
	enrolling   chan struct{} // a slot per enrollment being served (maxEnrolling)
}

// maxEnrolling bounds the enrollments an IPCP serves at once; more are
// refused as busy (and counted) before any signature is checked.
const maxEnrolling = 4

type claim struct {
	name string
	key  ed25519.PublicKey // of the member that claimed the address
	at   time.Time
}

// New returns an IPCP in state "init". lower is where its N-1 flows come
// from (the same broker applications use); reg registers its name in
// Config.Lower (nil: nothing to register).
func New(cfg Config, up ipcp.Upcalls, lower flow.Broker, reg Registrar) (*IPCP, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if up == nil || lower == nil {
		return nil, fmt.Errorf("unicast: %s: needs upcalls and a lower broker: %w", cfg.Name, flow.ErrInvalid)
	}
	if len(cfg.Lower) > 0 && reg == nil {
		return nil, fmt.Errorf("unicast: %s: lower layers %v but no registrar: %w", cfg.Name, cfg.Lower, flow.ErrInvalid)
	}
	p := &IPCP{
		lg:  cfg.Log.With("ipcp", cfg.Name),
		cfg: cfg, up: up, reg: reg, timers: make(chan *time.Timer, 64),
		names: make(map[string]bool), hashes: make(map[layer.Hash]string),
		peers: make(map[layer.Addr]string), claims: make(map[layer.Addr]claim),
		enrolling: make(chan struct{}, maxEnrolling),
	}
	if cfg.CRL != nil {
		l, err := identity.DecodeCRL(cfg.CRL)
		if err != nil {
			return nil, fmt.Errorf("unicast: %s: %w", cfg.Name, err)
		}
		p.crl, p.crlRaw = l, cfg.CRL
	}
	p.pool = dt.NewPoolSized(cfg.Bufs, dt.BufLenFor(cfg.MaxSDU), cfg.Reserve, &p.c.bufAllocs)
	p.lowerMax.Store(int64(p.pool.MaxSDU()))
	p.lower = sduBroker{Broker: lower, min: &p.lowerMax}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

var _ ipcp.SDULimiter = (*IPCP)(nil)

// MaxSDU implements ipcp.SDULimiter: the smallest SDU limit of the N-1
// flows seen so far, less the data-transfer PCI. Over a unicast layer
// this is 19 bytes less per level of recursion.
func (p *IPCP) MaxSDU() int { return int(p.lowerMax.Load()) - dt.PCILen }

// sduBroker is the IPCP's lower broker: it records the smallest SDU
// limit of the N-1 flows it hands out.
type sduBroker struct {
	flow.Broker
	min *atomic.Int64
}

func (b sduBroker) note(info flow.Info) {
	l := int64(info.SDULimit())
	for {
		cur := b.min.Load()
		if l >= cur || b.min.CompareAndSwap(cur, l) {
			return
		}
	}
}

// Alloc implements flow.Broker.
func (b sduBroker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	port, info, err := b.Broker.Alloc(ctx, name, q)
	if err == nil {
		b.note(info)
	}
	return port, info, err
}

// Accept implements flow.Broker.
func (b sduBroker) Accept(ctx context.Context) (flow.Port, flow.Info, error) {
	port, info, err := b.Broker.Accept(ctx)
	if err == nil {
		b.note(info)
	}
	return port, info, err
}

// Start starts the bring-up in the background: bind the IPCP's name,
// register it in the lower layers, bootstrap or enroll as configured,
// then connect the neighbours. It does not wait for the network.
func (p *IPCP) Start() error {
	if !p.state.CompareAndSwap(stateInit, stateEnrolling) {
		return fmt.Errorf("unicast: %s: start in state %s: %w", p.cfg.Name, stateNames[p.state.Load()], flow.ErrInvalid)
	}
	p.wg.Add(1)
	p.cfg.Runner.Go(p.bringUp)
	return nil
}

// Stop stops every part in reverse order of starting and waits for all
// goroutines. Idempotent.
func (p *IPCP) Stop() {
	p.state.Store(stateShutdown)
	p.cancel()
	p.opMu.Lock() // waits for a bootstrap or enrollment in progress
	c := p.core.Load()
	p.opMu.Unlock()
	if c != nil {
		c.stop()
	}
	p.wg.Wait()
	if c != nil {
		c.wg.Wait()
	}
	if p.bound.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p.lower.Unbind(ctx, p.cfg.Name)
		cancel()
	}
}

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "unicast", State: stateNames[p.state.Load()]}
}

// Addr returns the IPCP's address, 0 before it is a member.
func (p *IPCP) Addr() layer.Addr {
	if c := p.core.Load(); c != nil {
		return c.self
	}
	return 0
}

// Operational reports whether the IPCP is a member of its layer.
func (p *IPCP) Operational() bool { return p.state.Load() == stateOperational }

// log is the IPCP's logger: Config.Log with the IPCP's name, made once
// in New.
func (p *IPCP) log() *slog.Logger { return logx.Or(p.lg) }

// sleep waits d or until Stop; it reports false on Stop.
func (p *IPCP) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// retry runs f until it succeeds or Stop, with jittered exponential
// backoff from 50 ms to Config.RetryMax.
func (p *IPCP) retry(what string, f func() error) bool {
	backoff := 50 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return true
		}
		if p.ctx.Err() != nil {
			return false
		}
		p.log().Info("failed, retrying", "what", what, "err", err, "delay", backoff)
		if !p.sleep(backoff/2 + rand.N(backoff/2+1)) {
			return false
		}
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
}

func (p *IPCP) bringUp() {
	defer p.wg.Done()
	ok := p.retry("bind "+p.cfg.Name, func() error {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancel()
		err := p.lower.Bind(ctx, p.cfg.Name)
		if err == nil {
			p.bound.Store(true)
		}
		return err
	})
	if !ok {
		return
	}
	p.wg.Add(1)
	p.cfg.Runner.Go(p.acceptLoop)
	for _, l := range p.cfg.Lower {
		ok := p.retry("register "+p.cfg.Name+" in "+l, func() error {
			ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
			defer cancel()
			err := p.reg.Reg(ctx, p.cfg.Name, l)
			if errors.Is(err, flow.ErrExists) {
				return nil
			}
			return err
		})
		if !ok {
			return
		}
	}
	switch {
	case p.cfg.Bootstrap:
		if err := p.bootstrap(p.cfg.LayerConfig); err != nil {
			p.log().Error("bootstrap failed", "err", err)
		}
	case p.cfg.Enroll != "":
		p.retry("enroll via "+p.cfg.Enroll, func() error {
			if p.core.Load() != nil {
				return nil // enrolled by a management command meanwhile
			}
			ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
			defer cancel()
			return p.enrollVia(ctx, p.cfg.Enroll)
		})
	}
}

// acceptLoop takes incoming N-1 flows to the IPCP's name and dispatches
// them by their Open: enrollment here, adjacencies to the connection
// manager.
func (p *IPCP) acceptLoop() {
	defer p.wg.Done()
	for {
		port, _, err := p.lower.Accept(p.ctx)
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, flow.ErrClosed) {
				return
			}
			p.log().Warn("accept failed", "err", err)
			if !p.sleep(50 * time.Millisecond) {
				return
			}
			continue
		}
		p.wg.Add(1)
		p.cfg.Runner.Go(func() {
			defer p.wg.Done()
			p.incoming(port)
		})
	}
}

func (p *IPCP) incoming(port flow.Port) {
	dl := time.Now().Add(5 * time.Second)
	// Stop closes the port while it is still ours.
	release := context.AfterFunc(p.ctx, func() { port.Close() })
	defer release()
	o, err := connmgr.ReadOpen(port, dl)
	if err != nil {
		port.Close()
		return
	}
	c := p.core.Load()
	if c == nil || p.state.Load() != stateOperational {
		connmgr.Reply(port, connmgr.OpenResp{Result: connmgr.Refused, Msg: "not a member yet", Name: p.cfg.Name}, dl)
		port.Close()
		return
	}
	if o.Purpose != connmgr.PurposeEnroll {
		if !release() {
			return // stopped: closed already
		}
		c.cm.Accept(port, o)
		return
	}
	defer port.Close()
	if o.Layer != p.cfg.Layer {
		connmgr.Reply(port, connmgr.OpenResp{Result: connmgr.Refused, Msg: "wrong layer", Name: p.cfg.Name}, dl)
		return
	}
	select {
	case p.enrolling <- struct{}{}:
		defer func() { <-p.enrolling }()
	default:
		// Each enrollment costs signature checks: a flood of them must
		// not take the IPCP's CPU from its members' traffic.
		p.refused.busy.Add(1)
		connmgr.Reply(port, connmgr.OpenResp{Result: connmgr.Refused, Msg: "busy: too many enrollments at once", Name: p.cfg.Name}, dl)
		return
	}
	if connmgr.Reply(port, connmgr.OpenResp{Result: connmgr.OK, Name: p.cfg.Name, Addr: c.self}, dl) != nil {
		return
	}
	buf := make([]byte, flow.MaxSDU)
	n, err := port.Read(buf, dl)
	if err != nil {
		return
	}
	ctx, cancel := context.WithDeadline(p.ctx, dl)
	defer cancel()
	cred, err := p.credentials(ctx)
	if err != nil {
		p.log().Warn("enrolling a member failed", "peer", o.Name, "err", err)
		return
	}
	req, a, err := enroll.Serve(ctx, port, buf[:n], c, cred)
	if err != nil {
		if errors.Is(err, flow.ErrRefused) {
			p.refused.count(err)
		}
		p.log().Warn("enrolling a member failed", "peer", o.Name, "err", err)
		return
	}
	c.enrolled.Add(1)
	p.log().Info("member enrolled", "peer", req.Name, "addr", a)
	// Wait for the new member's Ack to be read before closing (the port
	// drains what was written before reporting the close).
}

// bootstrap makes this IPCP the first member of its layer.
func (p *IPCP) bootstrap(lc enroll.Config) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if p.core.Load() != nil {
		return fmt.Errorf("unicast: %s: bootstrap: already a member: %w", p.cfg.Name, flow.ErrExists)
	}
	if p.ctx.Err() != nil {
		return fmt.Errorf("unicast: %s: bootstrap: %w", p.cfg.Name, flow.ErrClosed)
	}
	lc = layerDefaults(lc, p.cfg.Layer, p.cfg.Directories)
	if err := lc.Validate(); err != nil {
		return fmt.Errorf("unicast: %s: bootstrap: %w", p.cfg.Name, err)
	}
	a, err := p.assign(lc, nil)
	if err != nil {
		return fmt.Errorf("unicast: %s: bootstrap: %w", p.cfg.Name, err)
	}
	if err := p.operate(lc, a); err != nil {
		return fmt.Errorf("unicast: %s: bootstrap: %w", p.cfg.Name, err)
	}
	p.log().Info("layer bootstrapped", "layer", lc.Layer, "addr", a, "config", fmt.Sprintf("%+v", lc))
	return nil
}

func (p *IPCP) assign(lc enroll.Config, members enroll.Members) (layer.Addr, error) {
	if lc.Protected() {
		return p.assignProtected(lc, members)
	}
	// Without a static address, the one the key and the IPCP's name
	// derive (at random only if another member has it): a member
	// restarted with the same key comes back at the same address, and
	// its names and routes with it; two IPCPs of one node in the layer
	// get two.
	kind := addr.Keyed
	if p.cfg.Addr != 0 {
		kind = addr.Static
	}
	as, err := addr.New(addr.Config{Kind: kind, Width: int(lc.AddrWidth), Entropy: p.cfg.Entropy, Addr: p.cfg.Addr,
		Layer: lc.Layer, Key: p.cfg.Signer.Public(), Name: p.cfg.Name})
	if err != nil {
		return 0, err
	}
	if members == nil {
		members = addr.Set(nil)
	}
	return as.Assign(members)
}

// enrollVia enrolls through the member named via and, once a member,
// connects the configured neighbours (or via itself).
func (p *IPCP) enrollVia(ctx context.Context, via string) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if p.core.Load() != nil {
		return fmt.Errorf("unicast: %s: enroll: already a member: %w", p.cfg.Name, flow.ErrExists)
	}
	start := time.Now()
	port, _, err := connmgr.Dial(ctx, p.lower, via, flow.Raw(), connmgr.Open{Purpose: connmgr.PurposeEnroll, Layer: p.cfg.Layer, Name: p.cfg.Name})
	if err != nil {
		return fmt.Errorf("unicast: %s: enroll via %s: %w", p.cfg.Name, via, err)
	}
	defer port.Close()
	cred, err := p.credentials(ctx)
	if err != nil {
		return err
	}
	res, err := enroll.Enroll(ctx, port, enroll.Req{Name: p.cfg.Name, Layer: p.cfg.Layer}, cred, func(lc enroll.Config, m enroll.Members) (layer.Addr, error) {
		if err := p.supports(lc); err != nil {
			return 0, err
		}
		return p.assign(lc, m)
	})
	if err != nil {
		return fmt.Errorf("unicast: %s: enroll via %s: %w", p.cfg.Name, via, err)
	}
	p.mu.Lock()
	p.peers[res.MemberAddr] = res.Member
	p.mu.Unlock()
	p.learnClock(res)
	if err := p.operate(res.Config, res.Addr); err != nil {
		return fmt.Errorf("unicast: %s: enroll via %s: %w", p.cfg.Name, via, err)
	}
	p.log().Info("enrolled", "layer", res.Config.Layer, "via", via, "took", time.Since(start).Round(time.Microsecond), "addr", res.Addr)
	if len(p.cfg.Neighbours) == 0 {
		p.Connect(via)
	}
	return nil
}

// supports checks that this IPCP has the policies lc names, and that the
// layer's admission policy is the one this IPCP was told to expect, if
// any (Config.LayerConfig.Admission on a member that enrolls: its trust
// anchor against an enroller that hands out a weaker policy).
func (p *IPCP) supports(lc enroll.Config) error {
	if want := p.cfg.LayerConfig.Admission; !p.cfg.Bootstrap && want.Mode != admission.ModeNone && want.String() != lc.Admission.String() {
		return fmt.Errorf("unicast: layer %s admits %q, this IPCP expects %q: %w", lc.Layer, lc.Admission, want, flow.ErrRefused)
	}
	if lc.Dir != flood.Policy && p.cfg.Directories[lc.Dir] == nil {
		return fmt.Errorf("unicast: directory policy %q not available here: %w", lc.Dir, flow.ErrRefused)
	}
	return nil
}

// Connect makes the IPCP keep an adjacency with the member named name. Before the
// IPCP is a member the request is remembered.
func (p *IPCP) Connect(name string) error {
	c := p.core.Load()
	if c == nil {
		p.mu.Lock()
		if !slices.Contains(p.conns, name) {
			p.conns = append(p.conns, name)
		}
		p.mu.Unlock()
		return nil
	}
	return c.cm.Connect(name)
}

// operate builds and starts the member's parts; opMu is held.
func (p *IPCP) operate(lc enroll.Config, self layer.Addr) (err error) {
	if err := p.supports(lc); err != nil {
		return err
	}
	c, err := newCore(p, lc, self)
	if err != nil {
		return err
	}
	if err := c.start(); err != nil {
		return err
	}
	p.mu.Lock()
	p.hashes = make(map[layer.Hash]string, len(p.names))
	names := make([]string, 0, len(p.names))
	for n := range p.names {
		p.hashes[layer.HashName(lc.Hash, n)] = n
		names = append(names, n)
	}
	p.peers[self] = p.cfg.Name
	conns := append(slices.Clone(p.cfg.Neighbours), p.conns...)
	p.conns = nil
	// Under mu, with the snapshot of the names: a Register after it sees
	// the core and publishes its name itself; one before it is in names.
	// (Stored after the unlock, a name registered in between was
	// published by neither: it never reached the directory.)
	p.core.Store(c)
	p.mu.Unlock()
	if !p.state.CompareAndSwap(stateEnrolling, stateOperational) {
		c.stop()
		p.core.Store(nil)
		return fmt.Errorf("unicast: %s: stopped: %w", p.cfg.Name, flow.ErrClosed)
	}
	for _, n := range names {
		p.wg.Add(1)
		p.cfg.Runner.Go(func() {
			defer p.wg.Done()
			p.publish(n)
		})
	}
	for _, n := range conns {
		if err := c.cm.Connect(n); err != nil {
			p.log().Warn("connect failed", "peer", n, "err", err)
		}
	}
	return nil
}

// publish registers name in the directory, retrying until it is done or
// withdrawn.
func (p *IPCP) publish(name string) {
	p.retry("register "+name+" in the directory", func() error {
		c := p.core.Load()
		p.mu.Lock()
		reg := p.names[name]
		p.mu.Unlock()
		if c == nil || !reg {
			return nil
		}
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancel()
		return c.dir.Register(ctx, layer.HashName(c.lc.Hash, name), c.self)
	})
}

// Register implements ipcp.IPCP: name is published in the layer's
// directory (at once if a member, else once it is one).
func (p *IPCP) Register(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("unicast: register: empty name: %w", flow.ErrInvalid)
	}
	p.mu.Lock()
	if p.names[name] {
		p.mu.Unlock()
		return fmt.Errorf("unicast: register %q: %w", name, flow.ErrExists)
	}
	p.names[name] = true
	c := p.core.Load()
	if c != nil {
		p.hashes[layer.HashName(c.lc.Hash, name)] = name
	}
	p.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := c.dir.Register(ctx, layer.HashName(c.lc.Hash, name), c.self); err != nil {
		p.log().Info("register failed, retrying", "name", name, "err", err)
		p.wg.Add(1)
		p.cfg.Runner.Go(func() {
			defer p.wg.Done()
			p.publish(name)
		})
	}
	return nil
}

// Unregister implements ipcp.IPCP.
func (p *IPCP) Unregister(ctx context.Context, name string) error {
	p.mu.Lock()
	if !p.names[name] {
		p.mu.Unlock()
		return fmt.Errorf("unicast: unregister %q: %w", name, flow.ErrNotFound)
	}
	delete(p.names, name)
	c := p.core.Load()
	if c != nil {
		delete(p.hashes, layer.HashName(c.lc.Hash, name))
	}
	p.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := c.dir.Unregister(ctx, layer.HashName(c.lc.Hash, name), c.self); err != nil && !errors.Is(err, flow.ErrNotFound) {
		return fmt.Errorf("unicast: unregister %q: %w", name, err)
	}
	return nil
}

// Query implements ipcp.IPCP: the directory is asked.
func (p *IPCP) Query(ctx context.Context, name string) error {
	c := p.core.Load()
	if c == nil {
		return fmt.Errorf("unicast: %s: query %q: not a member yet: %w", p.cfg.Name, name, flow.ErrNotFound)
	}
	if _, err := c.dir.Lookup(ctx, layer.HashName(c.lc.Hash, name)); err != nil {
		return fmt.Errorf("unicast: query %q: %w", name, err)
	}
	return nil
}

// Alloc implements ipcp.IPCP: the directory gives the destination's
// addresses, the flow allocator asks them in turn.
func (p *IPCP) Alloc(ctx context.Context, req ipcp.AllocReq, port flow.Port) error {
	_, err := p.AllocPeer(ctx, req, port)
	return err
}

// AllocPeer implements ipcp.PeerAllocator: Alloc that also returns, for a
// sealed flow, the peer's verified identity and the flow's smaller SDU.
func (p *IPCP) AllocPeer(ctx context.Context, req ipcp.AllocReq, port flow.Port) (ipcp.AllocResult, error) {
	c := p.core.Load()
	if c == nil || p.state.Load() != stateOperational {
		return ipcp.AllocResult{}, fmt.Errorf("unicast: %s: alloc %q: not a member: %w", p.cfg.Name, req.Dst, flow.ErrNotFound)
	}
	if port == nil {
		return ipcp.AllocResult{}, fmt.Errorf("unicast: alloc %q: nil port: %w", req.Dst, flow.ErrInvalid)
	}
	h := layer.HashName(c.lc.Hash, req.Dst)
	dsts, err := c.dir.Lookup(ctx, h)
	if err != nil {
		return ipcp.AllocResult{}, fmt.Errorf("unicast: alloc %q: %w", req.Dst, err)
	}
	f, err := c.fa.Alloc(ctx, dsts, h, req, port)
	if err != nil {
		return ipcp.AllocResult{}, fmt.Errorf("unicast: %w", err)
	}
	res := ipcp.AllocResult{MaxSDU: p.MaxSDU()}
	if f.Sealer != nil {
		res.MaxSDU, res.Peer = c.fa.SealedMaxSDU(), f.Peer
	}
	return res, nil
}

// core is the IPCP as a member: its parts, built once it has an address.
type core struct {
	p    *IPCP
	lc   enroll.Config
	self layer.Addr

	pff    *pff.Table
	fwd    *dt.Forwarder
	ca     *ca.CA
	router *routing.Router
	cm     *connmgr.Manager
	fa     *fa.Allocator
	dir    dir.Directory

	ctlq       chan ctlMsg
	ctlStop    chan struct{}
	recheck    chan struct{}  // the membership loop should check the neighbours now
	wg         sync.WaitGroup // data-path goroutines and the control loop
	since      time.Time
	enrolled   atomic.Uint64
	discovered atomic.Uint64 // neighbours connected to by discovery (Config.Discover)
	forgotten  atomic.Uint64 // of those, given up once no longer heard
	reinc      reincarnations

	portsMu sync.Mutex // serialises writers of ports
	ports   atomic.Pointer[map[pff.Port]*nport]
	members atomic.Pointer[[]layer.Addr] // last membership given to the directory

	loops dt.Loops // the ports' receive and transmit loops; c is their Host

	delivering atomic.Int64 // buffers the delivery queues hold (deliver.go)
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func newCore(p *IPCP, lc enroll.Config, self layer.Addr) (*core, error) {
	c := &core{p: p, lc: lc, self: self, ctlq: make(chan ctlMsg, 1024), ctlStop: make(chan struct{}), since: time.Now(),
		recheck: make(chan struct{}, 1)}
	empty := map[pff.Port]*nport{}
	c.ports.Store(&empty)
	c.loops = dt.Loops{Pool: p.pool, Host: c, Capture: &p.c.capt, KeepAlive: p.cfg.KeepAlive, Truncated: &p.c.truncated, TxErrors: &p.c.txErrors}
	kind, err := pff.ParseKind(lc.Routing)
	if err != nil {
		return nil, err
	}
	if c.pff, err = pff.New(kind); err != nil {
		return nil, err
	}
	if c.fwd, err = dt.NewForwarder(dt.ForwarderConfig{Self: self, PFF: c.pff}); err != nil {
		return nil, err
	}
	cak := ca.Nop
	if lc.CA == "mb-ecn" || lc.CA == "mb-ecn-local" {
		cak = ca.MultiBitECN
	}
	if c.ca, err = ca.New(ca.Config{Kind: cak, Local: lc.CA == "mb-ecn-local"}); err != nil {
		return nil, err
	}
	if c.router, err = routing.New(routing.Config{
		Self: self, Policy: kind, Flooder: c, PFF: c.pff, Clock: realClock{},
		Tick: p.cfg.RoutingTick, MaxMsg: dir.MaxMsg, Runner: p.cfg.Runner,
		Layer: lc.Layer, Name: p.cfg.Name, Signer: p.cfg.Signer, Bound: c.bound,
	}); err != nil {
		return nil, err
	}
	hello := time.Duration(lc.Hello) * time.Millisecond
	cred, err := p.credentials(p.ctx)
	if err != nil {
		return nil, err
	}
	if c.cm, err = connmgr.New(connmgr.Config{
		Layer: lc.Layer, Name: p.cfg.Name, Broker: p.lower, Hooks: c,
		Hello: hello, Dead: int(lc.Dead), BackoffMax: p.cfg.RetryMax, Log: p.log().With("part", "connmgr"),
		Runner: p.cfg.Runner,
		Cred:   connmgr.Credentials{Signer: cred.Signer, Doc: cred.Doc, Cert: cred.Cert},
		Check:  c.checkPeer,
	}); err != nil {
		return nil, err
	}
	if c.fa, err = fa.New(fa.Config{
		Self: self, Transport: c, Hooks: c, Upcalls: p.up, Registry: c, CA: c.ca,
		KeepAlive: p.cfg.KeepAlive, FlowTimeout: p.cfg.FlowTimeout, Log: p.log().With("part", "fa"),
		Runner: p.cfg.Runner, Seal: p.sealConfig(lc.Layer),
	}); err != nil {
		return nil, err
	}
	dcfg := dir.Config{Env: c, Layer: lc.Layer, Log: p.log().With("part", "dir"), Runner: p.cfg.Runner, Signer: p.cfg.Signer, Bound: c.bound}
	if lc.Admission.Mode == admission.ModeAuthority {
		dcfg.Names = p.namesPolicy(lc)
	}
	if lc.Dir == flood.Policy {
		c.dir = flood.New(dcfg)
	} else if c.dir, err = p.cfg.Directories[lc.Dir](dcfg); err != nil {
		return nil, fmt.Errorf("directory %q: %w", lc.Dir, err)
	}
	return c, nil
}

// start starts the parts in dependency order, unwinding on failure.
func (c *core) start() error {
	c.wg.Add(2)
	c.p.cfg.Runner.Go(c.ctlLoop)
	c.p.cfg.Runner.Go(c.memberLoop)
	if c.p.cfg.Discover {
		c.wg.Add(1)
		c.p.cfg.Runner.Go(c.discoverLoop)
	}
	steps := []struct {
		start func() error
		stop  func()
	}{
		{c.router.Start, c.router.Stop},
		{c.fa.Start, c.fa.Stop},
		{c.dir.Start, c.dir.Stop},
		{func() error { return c.cm.Start(c.self) }, c.cm.Stop},
	}
	for i, s := range steps {
		if err := s.start(); err != nil {
			for j := i - 1; j >= 0; j-- {
				steps[j].stop()
			}
			close(c.ctlStop)
			c.wg.Wait()
			return err
		}
	}
	return nil
}

// stop stops the parts in reverse order.
func (c *core) stop() {
	c.cm.Stop() // adjacencies down: N-1 receive loops end
	c.fa.Stop() // flows closed: N+1 transmit loops end
	c.dir.Stop()
	c.router.Stop()
	close(c.ctlStop)
	c.wg.Wait()
}

// Up implements connmgr.Hooks.
func (c *core) Up(n connmgr.Neighbour) {
	np, err := c.addPort(n)
	if err != nil {
		c.p.log().Warn("neighbour refused", "peer", n.Name, "err", err)
		return
	}
	c.p.mu.Lock()
	c.p.peers[n.Addr] = n.Name
	c.p.mu.Unlock()
	if err := c.router.NeighbourUp(routing.Neighbour{Addr: n.Addr, Port: n.Port, Metric: 1}); err != nil {
		c.p.log().Warn("neighbour refused", "peer", n.Name, "err", err)
		c.removePort(np)
		return
	}
	c.p.log().Info("neighbour up", "peer", n.Name, "addr", n.Addr, "port", n.Port)
	c.p.mu.Lock()
	crl := c.p.crlRaw
	c.p.mu.Unlock()
	if crl != nil {
		c.cm.Send(n.Addr, connmgr.MsgCRL, crl) // the new neighbour learns the newest list
	}
}

// LastReceived implements connmgr.Receiver: when n's dt flow last
// delivered a batch, so that a neighbour whose data still arrives is not
// declared dead for hellos lost behind it.
func (c *core) LastReceived(n connmgr.Neighbour) time.Time {
	if np := (*c.ports.Load())[n.Port]; np != nil {
		if t := np.LastRx.Load(); t != 0 {
			return time.Unix(0, t)
		}
	}
	return time.Time{}
}

// Down implements connmgr.Hooks: routing moves traffic to alternates at
// once (pff.PortDown) and recomputes at its next tick.
func (c *core) Down(n connmgr.Neighbour) {
	c.router.NeighbourDown(n.Addr)
	if np := (*c.ports.Load())[n.Port]; np != nil {
		c.removePort(np)
	}
	c.p.log().Info("neighbour down", "peer", n.Name, "addr", n.Addr)
}

// Message implements connmgr.Hooks.
func (c *core) Message(from connmgr.Neighbour, typ uint8, body []byte) {
	switch typ {
	case connmgr.MsgLSU:
		c.router.HandleMessage(from.Addr, body)
	case connmgr.MsgCRL:
		c.takeCRL(from, body)
	}
}

// Flood implements routing.Flooder: link-state messages go on the
// management N-1 flow.
func (c *core) Flood(to routing.Neighbour, msg []byte) {
	c.cm.Send(to.Addr, connmgr.MsgLSU, msg)
}

// SendFA implements fa.Transport.
func (c *core) SendFA(dst layer.Addr, msg []byte) error {
	return c.sendCtl(dst, EIDFlowAlloc, flow.CubeVoice, msg)
}

// Started implements fa.Hooks.
func (c *core) Started(f *fa.Flow) {
	d := newDelivery()
	f.Data.Store(d)
	c.wg.Add(2)
	c.p.cfg.Runner.Go(func() { c.deliverLoop(f, d) })
	c.p.cfg.Runner.Go(func() {
		c.flowTx(f)
		close(d.done)
	})
}

// Name implements fa.Registry.
func (c *core) Name(h layer.Hash) (string, bool) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	n, ok := c.p.hashes[h]
	return n, ok
}

// Self implements dir.Env.
func (c *core) Self() layer.Addr { return c.self }

// Send implements dir.Env.
func (c *core) Send(dst layer.Addr, msg []byte) error {
	if len(msg) > dir.MaxMsg {
		return fmt.Errorf("unicast: directory message of %d bytes: %w", len(msg), flow.ErrTooBig)
	}
	return c.sendCtl(dst, EIDDir, flow.CubeRaw, msg)
}

// Members implements dir.Env.
func (c *core) Members() []layer.Addr {
	db := c.router.Database()
	out := make([]layer.Addr, 0, len(db))
	for _, l := range db {
		out = append(out, l.Origin)
	}
	return out // Database is ascending by origin and includes self
}

// Offer implements enroll.Member. The addresses in use it lists leave
// out those of req's own key (an earlier incarnation of the same member,
// see Claim): the new member may take them back.
func (c *core) Offer(req enroll.Req) enroll.Resp {
	if req.Layer != c.lc.Layer {
		return enroll.Resp{Result: enroll.Refused, Msg: "wrong layer", Name: c.p.cfg.Name}
	}
	key := ed25519.PublicKey(req.PubKey)
	ms := slices.DeleteFunc(c.Members(), func(a layer.Addr) bool { return a != c.self && c.ownedBy(a, key) })
	c.p.mu.Lock()
	for a, cl := range c.p.claims {
		if time.Since(cl.at) > time.Minute {
			delete(c.p.claims, a)
			continue
		}
		if !cl.key.Equal(key) {
			ms = append(ms, a)
		}
	}
	c.p.mu.Unlock()
	slices.Sort(ms)
	return enroll.Resp{Result: enroll.OK, Config: c.lc, Members: slices.Compact(ms), Name: c.p.cfg.Name, Addr: c.self}
}

// ownedBy reports whether routing knows a as the address of key.
func (c *core) ownedBy(a layer.Addr, key ed25519.PublicKey) bool {
	k := c.router.KeyOf(a)
	return k != nil && k.Equal(key)
}

// Claim implements enroll.Member. An address in use is refused unless
// routing knows it as the address of the same key: the member restarted
// (or its IPCP was), proved its key again, and takes its address back;
// the membership of its earlier incarnation is replaced (reincarnate).
// Any other key asking for it is refused, as is a claim another key made
// less than a minute ago.
func (c *core) Claim(req enroll.Req, a layer.Addr) bool {
	key := ed25519.PublicKey(req.PubKey)
	if c.lc.Protected() && a != addr.FromKey(c.lc.Layer, int(c.lc.AddrWidth), key) {
		return false // in a protected layer, only the key's own address
	}
	if a == c.self || (c.lc.AddrWidth == 4 && a>>32 != 0) {
		return false
	}
	again := slices.Contains(c.Members(), a)
	if again && !c.ownedBy(a, key) {
		return false
	}
	c.p.mu.Lock()
	if cl, ok := c.p.claims[a]; ok && !cl.key.Equal(key) && time.Since(cl.at) < time.Minute {
		c.p.mu.Unlock()
		return false
	}
	c.p.claims[a] = claim{name: req.Name, key: slices.Clone(key), at: time.Now()}
	c.p.peers[a] = req.Name
	c.p.mu.Unlock()
	if again {
		c.reincarnate(a, req.Name)
	}
	return true
}

// bound reports whether key may speak for address a in this layer: any
// key in an open layer (addresses are not bound to keys there), else only
// the key the address derives from (addr.FromKey).
func (c *core) bound(a layer.Addr, key ed25519.PublicKey) bool {
	if !c.lc.Protected() {
		return true
	}
	return a == addr.FromKey(c.lc.Layer, int(c.lc.AddrWidth), key)
}

// namesPolicy is the directory's names policy in a layer admitted by
// authority: the layer's authorities and hash, its revocation list as
// this member has it now, and this member's certificate if it lists
// names (one without is not worth its bytes on every record).
func (p *IPCP) namesPolicy(lc enroll.Config) *dir.NamesPolicy {
	np := &dir.NamesPolicy{
		Authorities: lc.Admission.Authorities, Hash: lc.Hash, Certified: lc.Names == enroll.NamesCertified,
		Revoked: func(c identity.Cert) bool {
			crl := p.currentCRL()
			return crl != nil && crl.Revoked(c)
		},
	}
	if c, err := identity.DecodeCert(p.cfg.Cert); err == nil && len(c.Names) > 0 {
		np.Cert = p.cfg.Cert
	}
	return np
}
