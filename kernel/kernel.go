package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	rdebug "runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/kernel/logx"
)

// Config sets a Kernel's limits. The zero value is usable.
type Config struct {
	// MaxComponents bounds how many components may exist (booted and
	// spawned); 0 means 1024.
	MaxComponents int
	// CSpaceSize bounds each CSpace's slots; 0 means 4096, at most
	// 1<<20 - 1 (a Cap keeps its slot's generation in the upper bits).
	CSpaceSize int
	// MaxBufs bounds the packet buffers all budgets together may hold; 0
	// means no node-wide bound (each budget still bounds its holder).
	MaxBufs int
	// BufSize is each packet buffer's data size after Headroom; 0 means
	// BufSize (2048), else BufSize to MaxBufSize. Budgets count buffers,
	// so a larger size makes each one hold that much more memory.
	BufSize int
	// Now is the clock for byte-rate budgets; nil means time.Now.
	Now func() time.Time
	// RestartTimeout bounds how long Restart waits for the previous
	// incarnation's program and PD.Go goroutines to return before it
	// gives up (ErrAborted); 0 means 5 seconds.
	RestartTimeout time.Duration
	// Log receives faults of unsupervised components (Warn) and other
	// events, each with the name of the component it concerns as
	// "component"; nil discards them.
	Log *slog.Logger
}

// BufTotals are the node-wide packet-buffer figures (Kernel.BufTotals).
type BufTotals struct {
	Granted int64 // buffers the booted system's budgets and rings may hold together
	Max     int   // Config.MaxBufs; 0: no node-wide bound
	Made    int   // buffers the pool has made: its high-water mark (they are reused)
	Free    int   // made and held by no one
}

// BufTotals returns the node-wide packet-buffer figures: what every
// component's use (Stats) adds up against.
func (k *Kernel) BufTotals() BufTotals {
	k.mu.Lock()
	granted := k.total
	k.mu.Unlock()
	k.pool.mu.Lock()
	defer k.pool.mu.Unlock()
	return BufTotals{Granted: granted, Max: k.cfg.MaxBufs, Made: len(k.pool.all), Free: len(k.pool.free)}
}

// Kernel runs a system of components. Create it with New, start a system
// with Boot, end everything with Stop.
type Kernel struct {
	cfg  Config
	pool bufPool

	ctx      context.Context
	cancel   context.CancelFunc
	stopping atomic.Bool
	nextBID  atomic.Uint64  // for PD.bid
	wg       sync.WaitGroup // every component goroutine and fault delivery

	// capMu guards the derivation tree (every capNode's links) and makes
	// moves between CSpaces atomic. Lock order: endpoint.mu, capMu,
	// cspace.mu.
	capMu sync.Mutex
	reapq []object // guarded by capMu: dynamic objects whose last cap is gone

	mu     sync.Mutex
	booted bool                // guarded by mu
	comps  []*component        // guarded by mu, in start order
	byName map[string]object   // guarded by mu: every object and component
	objs   map[object]struct{} // guarded by mu: endpoints, notifications, rings
	nextID uint64              // guarded by mu: for names of dynamic objects
	total  int64               // guarded by mu: buffers granted to top-level budgets
}

// New returns a kernel with cfg's limits.
func New(cfg Config) *Kernel {
	if cfg.MaxComponents <= 0 {
		cfg.MaxComponents = 1024
	}
	if cfg.CSpaceSize <= 0 {
		cfg.CSpaceSize = 4096
	}
	cfg.CSpaceSize = min(cfg.CSpaceSize, maxSlots)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RestartTimeout <= 0 {
		cfg.RestartTimeout = 5 * time.Second
	}
	cfg.BufSize = min(max(cfg.BufSize, BufSize), MaxBufSize)
	cfg.Log = logx.Or(cfg.Log)
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kernel{cfg: cfg, ctx: ctx, cancel: cancel, byName: make(map[string]object), objs: make(map[object]struct{})}
	k.pool.size = cfg.BufSize
	return k
}

// BufSize returns the data size of the kernel's packet buffers (after
// Headroom): Config.BufSize, or BufSize.
func (k *Kernel) BufSize() int { return k.cfg.BufSize }

// Program is a component's main. Returning ends the component: nil is a
// normal exit, an error is a fault (as is a panic).
type Program func(pd *PD) error

// compState is where a component is in its life.
type compState uint8

const (
	stateNew compState = iota
	stateRunning
	stateExited
	stateFaulted
	stateKilled
)

func (s compState) String() string {
	return [...]string{"new", "running", "exited", "faulted", "killed"}[s]
}

// initCap is a cap a component starts (and restarts) with.
type initCap struct {
	parent *capNode
	rights Rights
	badge  Badge
	name   string
}

// component is the lasting identity of a protection domain; each start
// or restart is a new incarnation (a PD).
type component struct {
	hdr
	k          *Kernel
	id         uint64
	spec       ComponentSpec
	prog       Program
	super      *component // nil: the kernel supervises
	faultEP    *endpoint
	faultBadge Badge
	budget     *budget
	init       []initCap

	mu        sync.Mutex
	cur       *PD       // guarded by mu: the current (or last) incarnation
	state     compState // guarded by mu
	incs      uint64    // guarded by mu: incarnations started
	faults    uint64    // guarded by mu: incarnations that faulted
	destroyed bool      // guarded by mu: the last cap to it is gone (spawned only)
}

func (*component) kind() Kind { return KindComponent }

// PD is a protection domain: one incarnation of a component, the handle
// its program acts through. It is safe for concurrent use by the
// component's goroutines. When the component dies or is restarted, every
// verb on the old PD fails with ErrAborted (ErrClosed after Kernel.Stop).
type PD struct {
	k      *Kernel
	c      *component
	inc    uint64
	cs     *cspace
	ctx    context.Context
	cancel context.CancelFunc
	done   <-chan struct{}
	dead   atomic.Bool

	wmu   sync.Mutex
	wfree []*waiter // guarded by wmu: idle waiters for this incarnation's threads
	wall  []*waiter // guarded by wmu: every waiter made for this incarnation

	bid       uint64        // the owner id of the buffers it holds (Buf.owner)
	running   atomic.Int32  // the program and PD.Go goroutines still running
	finished  chan struct{} // closed when running drops to 0 (the incarnation is dead by then)
	reclaimed atomic.Bool   // the buffers it held were freed (see reclaimBufs)

	resMu    sync.Mutex
	reserved int64 // guarded by resMu: buffers charged by Reserve
}

// Name returns the component's name.
func (pd *PD) Name() string { return pd.c.nm }

func (pd *PD) name() string {
	if pd == nil {
		return "kernel"
	}
	return pd.c.nm
}

// Context returns a context cancelled when this incarnation ends (exit,
// fault, kill, restart or Kernel.Stop).
func (pd *PD) Context() context.Context { return pd.ctx }

// Budget reports the component's budget and current use.
func (pd *PD) Budget() Usage {
	b := pd.c.budget
	return Usage{Limit: b.snapshot(), Bufs: int(b.bufUsed.Load() &^ mergedBit), Objects: int(b.objUsed.Load() &^ mergedBit)}
}

func (pd *PD) getWaiter() *waiter {
	pd.wmu.Lock()
	if n := len(pd.wfree); n > 0 {
		w := pd.wfree[n-1]
		pd.wfree = pd.wfree[:n-1]
		pd.wmu.Unlock()
		return w
	}
	w := newWaiter(pd)
	pd.wall = append(pd.wall, w)
	pd.wmu.Unlock()
	return w
}

func (pd *PD) putWaiter(w *waiter) {
	w.msg = nil
	w.ep.Store(nil)
	pd.wmu.Lock()
	pd.wfree = append(pd.wfree, w)
	pd.wmu.Unlock()
}

func (pd *PD) deadErr(verb string) error {
	if pd.k.stopping.Load() {
		return fmt.Errorf("kernel: %s: %s: kernel stopped: %w", pd.name(), verb, ErrClosed)
	}
	return fmt.Errorf("kernel: %s: %s: component stopped: %w", pd.name(), verb, ErrAborted)
}

func isAborted(err error) bool { return errors.Is(err, ErrAborted) }

// Go starts f as a goroutine of this component: a panic in f is a fault
// of the component. f should return when Context is done: the buffers a
// dead incarnation held are freed, and Restart starts the next
// incarnation, only once its program and all its Go goroutines have
// returned, so every goroutine of a component must be started with Go.
// Once all of them have returned, Go on the dead incarnation's PD does
// nothing (no goroutine of it is left to need f).
func (pd *PD) Go(f func()) {
	for {
		r := pd.running.Load()
		if r == 0 {
			pd.k.cfg.Log.Warn("Go after all goroutines returned: not started", "component", pd.name(), "incarnation", pd.inc)
			return
		}
		if pd.running.CompareAndSwap(r, r+1) {
			break
		}
	}
	pd.k.wg.Add(1)
	go func() {
		defer pd.k.wg.Done()
		defer pd.exited()
		defer pd.recoverFault()
		f()
	}()
}

// exited is the end of one of the incarnation's goroutines: the last one
// of a dead incarnation frees the buffers it still held, since no code of
// the incarnation can touch them any more.
func (pd *PD) exited() {
	if pd.running.Add(-1) == 0 {
		// The program has returned, so die has run: the incarnation is
		// dead, and no code of it is left to touch its buffers.
		pd.reclaimBufs()
		close(pd.finished)
	}
}

func (pd *PD) recoverFault() {
	if r := recover(); r != nil {
		pd.die(stateFaulted, FaultPanic, fmt.Sprint(r), string(rdebug.Stack()))
	}
}

func (pd *PD) run(prog Program) {
	defer pd.k.wg.Done()
	defer pd.exited()
	defer pd.recoverFault()
	if err := prog(pd); err != nil {
		pd.die(stateFaulted, FaultError, err.Error(), "")
		return
	}
	pd.die(stateExited, 0, "", "")
}

// start begins a new incarnation of c. The caller holds c.mu, and the
// previous incarnation (if any) is dead.
func (c *component) startLocked() error {
	k := c.k
	if k.stopping.Load() {
		return fmt.Errorf("kernel: start %s: kernel stopped: %w", c.nm, ErrClosed)
	}
	if c.destroyed {
		return fmt.Errorf("kernel: start %s: component destroyed: %w", c.nm, ErrInvalidCap)
	}
	pd := &PD{k: k, c: c, inc: c.incs + 1, bid: k.nextBID.Add(1) + firstBufHolder, finished: make(chan struct{})}
	pd.cs = newCSpace(pd, k.cfg.CSpaceSize)
	k.capMu.Lock()
	for _, ic := range c.init {
		if !ic.parent.live {
			continue // the cap it was derived from is gone
		}
		if _, err := pd.cs.insert(ic.parent, ic.rights, ic.badge, ic.name); err != nil {
			k.capMu.Unlock()
			return err
		}
	}
	k.capMu.Unlock()
	pd.ctx, pd.cancel = context.WithCancel(k.ctx)
	pd.done = pd.ctx.Done()
	c.incs++
	c.cur, c.state = pd, stateRunning
	k.wg.Add(1)
	pd.running.Store(1)
	go pd.run(c.prog)
	return nil
}

// die ends incarnation pd (once): its context is cancelled, its caps are
// deleted (callers waiting on its reply caps get ErrAborted; objects left
// without caps are destroyed), senders queued on endpoints only it could
// receive from get ErrAborted, the other side of its rings is woken with
// ErrAborted, and a fault is reported to the supervisor. The buffers it
// held are freed once its goroutines have returned (see exited).
func (pd *PD) die(st compState, kind FaultKind, reason, stack string) {
	if !pd.dead.CompareAndSwap(false, true) {
		return
	}
	pd.cancel()
	pd.abortWaiters(pd.deadErr("blocked verb"))
	c, k := pd.c, pd.k
	c.mu.Lock()
	if c.cur == pd {
		c.state = st
	}
	if st == stateFaulted {
		c.faults++
	}
	c.mu.Unlock()

	var eps []*endpoint
	type ringSide struct {
		r      *ring
		rights Rights
	}
	var rings []ringSide
	k.capMu.Lock()
	cs := pd.cs
	cs.mu.Lock()
	for i := 1; i < len(cs.slots); i++ {
		s := cs.slots[i]
		switch s.kind {
		case KindEndpoint:
			if s.rights&Read != 0 {
				eps = append(eps, s.obj.(*endpoint))
			}
		case KindRing:
			rings = append(rings, ringSide{s.obj.(*ring), s.rights})
		}
		if s.kind != KindNone || s.revoked {
			cs.removeLocked(makeCap(i, s.cgen))
		}
	}
	cs.mu.Unlock()
	k.capMu.Unlock()

	why := fmt.Errorf("kernel: %s died: %w", c.nm, ErrAborted)
	if k.stopping.Load() {
		why = fmt.Errorf("kernel: %s: kernel stopped: %w", c.nm, ErrClosed)
	}
	for _, e := range eps {
		if !k.liveHolder(e, Read) {
			e.abortSenders(why)
		}
	}
	for _, rs := range rings {
		rs.r.peerDied(rs.rights)
	}
	if st == stateFaulted && !k.stopping.Load() {
		k.reportFault(c, pd.inc, kind, reason, stack)
	}
	k.reap()
	if pd.running.Load() == 0 {
		pd.reclaimBufs()
	}
}

// adopted is called after pd became the owner of bufs (alloc, pop). If
// pd's buffers were reclaimed meanwhile (possible only for a verb called
// on a dead PD from a goroutine the kernel does not know about), it frees
// those the reclaim's scan missed and returns false.
func (pd *PD) adopted(bufs []*Buf) bool {
	if !pd.reclaimed.Load() {
		return true
	}
	n := 0
	for _, b := range bufs {
		if b.owner.CompareAndSwap(pd.bid, ownerFree) {
			bufs[n] = b
			n++
		}
	}
	pd.k.recycle(pd.c.budget, bufs[:n])
	clear(bufs)
	return false
}

// reclaimBufs frees every buffer the dead incarnation still holds, and
// releases what it reserved, crediting its budget. It runs once no
// goroutine of the incarnation is left, so none of them can still be
// using a buffer; it scans every buffer the pool ever made (only when an
// incarnation dies), which keeps the data path free of any per-holder
// bookkeeping.
func (pd *PD) reclaimBufs() {
	if pd.reclaimed.Swap(true) {
		return
	}
	b := pd.c.budget
	pd.resMu.Lock()
	res := pd.reserved
	pd.reserved = 0
	pd.resMu.Unlock()
	b.releaseBufs(res)
	var batch [64]*Buf
	n, total := 0, 0
	for _, x := range pd.k.pool.registry() {
		if x.owner.Load() == pd.bid && x.owner.CompareAndSwap(pd.bid, ownerFree) {
			batch[n] = x
			if n++; n == len(batch) {
				pd.k.recycle(b, batch[:n])
				total, n = total+n, 0
			}
		}
	}
	pd.k.recycle(b, batch[:n])
	if total += n; total > 0 || res > 0 {
		pd.k.cfg.Log.Debug("freed dead incarnation's packet buffers", "component", pd.c.nm, "incarnation", pd.inc, "held", total, "reserved", res)
	}
}

// Reserve charges n packet buffers to the component's budget without
// handing any out: for a pool of buffers the component keeps of its own
// (outside the kernel's), so that the pool counts against its budget like
// buffers it holds. All or nothing: ErrNoBudget if fewer than n are
// free. What the incarnation still has reserved when it dies is released
// once its goroutines have returned, like the buffers it held.
func (pd *PD) Reserve(n int) error {
	if n < 0 {
		return fmt.Errorf("kernel: %s: reserve %d buffers: %w", pd.name(), n, ErrNoBudget)
	}
	pd.resMu.Lock()
	defer pd.resMu.Unlock()
	if pd.dead.Load() || pd.reclaimed.Load() {
		return pd.deadErr("reserve")
	}
	b := pd.c.budget
	if got := b.reserveBufs(n); got < n {
		b.releaseBufs(int64(got))
		return fmt.Errorf("kernel: %s: reserve %d buffers: %d free of %d: %w", pd.name(), n, got, b.bufLimit.Load()&^mergedBit, ErrNoBudget)
	}
	pd.reserved += int64(n)
	return nil
}

// Unreserve releases n buffers reserved by Reserve, crediting the
// budget. Releasing more than the incarnation reserved is ErrInvalidCap.
func (pd *PD) Unreserve(n int) error {
	pd.resMu.Lock()
	defer pd.resMu.Unlock()
	if n < 0 || int64(n) > pd.reserved {
		return fmt.Errorf("kernel: %s: unreserve %d buffers with %d reserved: %w", pd.name(), n, pd.reserved, ErrInvalidCap)
	}
	pd.reserved -= int64(n)
	pd.c.budget.releaseBufs(int64(n))
	return nil
}

// liveHolder reports whether a running component holds a cap to o with
// all of rights.
func (k *Kernel) liveHolder(o object, rights Rights) bool {
	k.mu.Lock()
	comps := append([]*component(nil), k.comps...)
	k.mu.Unlock()
	for _, c := range comps {
		c.mu.Lock()
		pd := c.cur
		c.mu.Unlock()
		if pd == nil || pd.dead.Load() {
			continue
		}
		pd.cs.mu.Lock()
		for _, s := range pd.cs.slots {
			if s.obj == o && s.rights&rights == rights {
				pd.cs.mu.Unlock()
				return true
			}
		}
		pd.cs.mu.Unlock()
	}
	return false
}

// moveCaps moves the caps in src (slots of from) into new slots of to,
// writing their numbers to dst; it returns how many moved. Empty source
// slots are skipped; when to is full the rest stay with the sender.
func (k *Kernel) moveCaps(from *cspace, src []Cap, to *cspace, dst []Cap) int {
	k.capMu.Lock()
	defer k.capMu.Unlock()
	from.mu.Lock()
	if to != from {
		to.mu.Lock()
		defer to.mu.Unlock()
	}
	defer from.mu.Unlock()
	n := 0
	for _, c := range src {
		if s := from.refLocked(c); s == nil || s.kind == KindNone {
			continue
		}
		tc, ok := to.allocLocked()
		if !ok {
			break
		}
		moveSlotLocked(from, c, to, tc)
		dst[n] = tc
		n++
	}
	return n
}

// Stop kills every component (their blocked verbs return ErrClosed) and
// waits for all component goroutines to return. Goroutines that ignore
// their Context keep Stop waiting.
func (k *Kernel) Stop() {
	k.stopping.Store(true)
	k.cancel()
	k.mu.Lock()
	comps := append([]*component(nil), k.comps...)
	k.mu.Unlock()
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		c.mu.Lock()
		pd := c.cur
		c.mu.Unlock()
		if pd != nil {
			pd.die(stateKilled, 0, "", "")
		}
	}
	k.wg.Wait()
}

// lookupComponent returns the named component.
func (k *Kernel) lookupComponent(name string) (*component, error) {
	k.mu.Lock()
	o := k.byName[name]
	k.mu.Unlock()
	c, ok := o.(*component)
	if !ok {
		return nil, fmt.Errorf("kernel: no component %q: %w", name, ErrInvalidCap)
	}
	return c, nil
}

// Restart restarts the named component with its initial caps, killing
// the running incarnation first if there is one, and waiting until the
// previous incarnation's program and PD.Go goroutines have returned (see
// PD.Restart). It is the kernel's own supervisor action (for components
// whose Supervisor is ""); components use PD.Restart.
func (k *Kernel) Restart(name string) error {
	c, err := k.lookupComponent(name)
	if err != nil {
		return err
	}
	return c.restart()
}

// Kill stops the named component without reporting a fault.
func (k *Kernel) Kill(name string) error {
	c, err := k.lookupComponent(name)
	if err != nil {
		return err
	}
	c.kill()
	return nil
}

// State returns the named component's state: "running", "exited",
// "faulted" or "killed", and how many incarnations it has had.
func (k *Kernel) State(name string) (state string, incarnations int, err error) {
	c, err := k.lookupComponent(name)
	if err != nil {
		return "", 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.String(), int(c.incs), nil
}

// ComponentStats is what the kernel counts of one component.
type ComponentStats struct {
	State        string // as State reports it
	Incarnations int    // incarnations started (restarts are one less)
	Faults       int    // incarnations that faulted (a kill or Kernel.Stop is not a fault)
	Budget       Usage  // its budget and what it uses now
}

// Stats returns the named component's counters: for management and
// metrics, read at the moment they are asked for.
func (k *Kernel) Stats(name string) (ComponentStats, error) {
	c, err := k.lookupComponent(name)
	if err != nil {
		return ComponentStats{}, err
	}
	b := c.budget
	s := ComponentStats{Budget: Usage{Limit: b.snapshot(), Bufs: int(b.bufUsed.Load() &^ mergedBit), Objects: int(b.objUsed.Load() &^ mergedBit)}}
	c.mu.Lock()
	s.State, s.Incarnations, s.Faults = c.state.String(), int(c.incs), int(c.faults)
	c.mu.Unlock()
	return s, nil
}

func (c *component) kill() {
	c.mu.Lock()
	pd := c.cur
	c.mu.Unlock()
	if pd != nil {
		pd.die(stateKilled, 0, "", "")
	}
}

// restart kills the current incarnation, waits for its goroutines, and
// starts the next one.
func (c *component) restart() error {
	c.mu.Lock()
	first := c.cur
	c.mu.Unlock()
	for {
		c.mu.Lock()
		pd := c.cur
		if pd != nil && pd != first && !pd.dead.Load() {
			c.mu.Unlock()
			return nil // someone else restarted it meanwhile
		}
		if pd == nil || pd.running.Load() == 0 {
			err := c.startLocked()
			c.mu.Unlock()
			return err
		}
		c.mu.Unlock()
		pd.die(stateKilled, 0, "", "")
		if err := pd.awaitFinished(); err != nil {
			return err
		}
	}
}

// awaitFinished waits until the (dead) incarnation's program and PD.Go
// goroutines have all returned, for at most Config.RestartTimeout.
func (pd *PD) awaitFinished() error {
	k := pd.k
	t := time.NewTimer(k.cfg.RestartTimeout)
	defer t.Stop()
	select {
	case <-pd.finished:
		return nil
	case <-k.ctx.Done():
		return fmt.Errorf("kernel: restart %s: kernel stopped: %w", pd.c.nm, ErrClosed)
	case <-t.C:
		return fmt.Errorf("kernel: restart %s: incarnation %d still has %d goroutines running %v after it was stopped: %w",
			pd.c.nm, pd.inc, pd.running.Load(), k.cfg.RestartTimeout, ErrAborted)
	}
}

// Restart restarts the child component child names (a component cap with
// Write) with its initial caps, killing the running incarnation first.
// The new incarnation starts only once the previous one's program and
// all its PD.Go goroutines have returned (so that it finds free whatever
// they held outside the kernel, such as a socket's port): Restart waits
// for them up to Config.RestartTimeout and then fails with ErrAborted
// naming the component, leaving it dead; a later Restart waits again.
// A component's goroutine calling Restart on its own component would
// wait for itself: it fails after the timeout.
func (pd *PD) Restart(child Cap) error {
	s, err := pd.lookup(child, KindComponent, Write, "restart")
	if err != nil {
		return err
	}
	if err := s.obj.(*component).restart(); err != nil {
		return fmt.Errorf("kernel: %s: restart on cap %d: %w", pd.name(), child, err)
	}
	return nil
}

// Kill stops the child component child names (a component cap with
// Write) without reporting a fault.
func (pd *PD) Kill(child Cap) error {
	s, err := pd.lookup(child, KindComponent, Write, "kill")
	if err != nil {
		return err
	}
	s.obj.(*component).kill()
	return nil
}

// newName returns an unused name for a runtime object.
func (k *Kernel) newName(prefix string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	for {
		k.nextID++
		n := fmt.Sprintf("%s%d", prefix, k.nextID)
		if _, ok := k.byName[n]; !ok {
			return n
		}
	}
}

func (k *Kernel) register(o object) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.byName[o.name()]; ok {
		return fmt.Errorf("kernel: duplicate name %q: %w", o.name(), ErrInvalidCap)
	}
	k.byName[o.name()] = o
	if _, ok := o.(*component); !ok {
		k.objs[o] = struct{}{}
	}
	return nil
}

// unregister removes a destroyed object (or component) from the kernel's
// tables, so Describe no longer shows it and its name is free.
func (k *Kernel) unregister(o object) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byName[o.name()] == o {
		delete(k.byName, o.name())
	}
	delete(k.objs, o)
	if c, ok := o.(*component); ok {
		for i, x := range k.comps {
			if x == c {
				k.comps = append(k.comps[:i], k.comps[i+1:]...)
				break
			}
		}
	}
}

// liveObjects returns how many endpoints, notifications and rings exist.
func (k *Kernel) liveObjects() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.objs)
}

// reap destroys the objects whose last cap was deleted (queued by
// removeLocked). It is called with no lock held, after every verb that
// may delete caps; destroying a component deletes its caps in turn, which
// may queue more.
func (k *Kernel) reap() {
	for {
		k.capMu.Lock()
		q := k.reapq
		k.reapq = nil
		k.capMu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, o := range q {
			k.destroy(o)
		}
	}
}

// destroy ends a dynamic object that no cap refers to any more, as seL4
// does when the last cap to an object is deleted: IPC blocked on it is
// cancelled, a ring is closed and the buffers still queued in it are
// freed to their budgets, a component is killed and what is left of its
// budget returns to its creator; then the creator's object budget is
// credited.
func (k *Kernel) destroy(o object) {
	switch o := o.(type) {
	case *endpoint:
		o.destroy(fmt.Errorf("kernel: endpoint %s destroyed (its last cap was deleted): %w", o.nm, ErrAborted))
	case *notification:
		o.destroy()
	case *ring:
		k.freeDetached(o.destroy())
	case *component:
		o.mu.Lock()
		o.destroyed = true
		pd := o.cur
		o.mu.Unlock()
		if pd != nil {
			pd.die(stateKilled, 0, "", "")
		}
		k.rehome(o.budget, o.creator)
	}
	k.unregister(o)
	h := o.header()
	if c, ok := o.(*component); ok {
		c.budget.merge(h.creator)
	}
	h.creator.releaseObject()
}

// freeDetached frees the buffers taken out of a destroyed ring, crediting
// the ring's account (its creator's budget; nil for a ring of the system
// description).
func (k *Kernel) freeDetached(bufs []*Buf, acct *budget) {
	for _, b := range bufs {
		b.owner.Store(ownerFree)
	}
	if acct == nil {
		k.pool.put(bufs)
		return
	}
	k.recycle(acct, bufs)
}

// rehome moves the rings a destroyed component created, and the charge
// of what they queue, to the budget its own is merged into, before the
// merge: otherwise a push into such a ring would find a merged budget,
// and buffers charged to it after the merge could not be told from those
// charged before.
func (k *Kernel) rehome(from, to *budget) {
	to = to.live()
	for _, o := range k.objectsByKind(KindRing) {
		if r := o.(*ring); r.acct.Load() == from {
			r.rehome(from, to)
		}
	}
}

// recycle returns free buffers (ownerFree) charged to b to the pool and
// credits b: one atomic operation per batch.
func (k *Kernel) recycle(b *budget, bufs []*Buf) {
	if len(bufs) == 0 {
		return
	}
	b.releaseBufs(int64(len(bufs)))
	k.pool.put(bufs)
}

// newObject creates an object charged to pd's budget and gives pd an
// AllRights cap to it.
func (pd *PD) newObject(verb string, make func(name string) object, prefix string) (Cap, error) {
	if pd.dead.Load() {
		return 0, pd.deadErr(verb)
	}
	b := pd.c.budget
	if !b.reserveObject() {
		return 0, fmt.Errorf("kernel: %s: %s: object budget of %d used: %w", pd.name(), verb, b.objLimit.Load()&^mergedBit, ErrNoBudget)
	}
	o := make(pd.k.newName(pd.name() + "." + prefix))
	o.header().creator = b
	if err := pd.k.register(o); err != nil {
		b.releaseObject()
		return 0, err
	}
	pd.k.capMu.Lock()
	c, err := pd.cs.insert(rootOf(o), AllRights, 0, "")
	pd.k.capMu.Unlock()
	if err != nil {
		pd.k.destroy(o) // no cap was made: nobody can have used it
	}
	return c, err
}

func rootOf(o object) *capNode {
	switch o := o.(type) {
	case *endpoint:
		return o.root
	case *notification:
		return o.root
	case *ring:
		return o.root
	case *component:
		return o.root
	}
	panic("kernel: unknown object")
}

func (k *Kernel) newEndpoint(name string) *endpoint {
	e := &endpoint{k: k}
	e.nm = name
	e.root = &capNode{obj: e, live: true}
	return e
}

// NewEndpoint creates an endpoint (charged to the object budget) and
// returns an AllRights cap to it.
func (pd *PD) NewEndpoint() (Cap, error) {
	return pd.newObject("new endpoint", func(n string) object { return pd.k.newEndpoint(n) }, "ep")
}

// NewNotification creates a notification (charged to the object budget)
// and returns an AllRights cap to it.
func (pd *PD) NewNotification() (Cap, error) {
	return pd.newObject("new notification", func(n string) object { return newNotification(n) }, "ntfn")
}

// NewRing creates a ring of size slots, rounded up to a power of two
// (charged to the object budget), and returns an AllRights cap to it.
// Buffers queued in it are charged to the caller's buffer budget (see
// Push).
func (pd *PD) NewRing(size int) (Cap, error) {
	return pd.NewRingSpec(RingSpec{Size: size})
}

// NewRingSpec is NewRing with a byte rate: spec.ByteRate bounds the bytes
// per second pushed into the ring (a token bucket of spec.Burst bytes; 0
// means one second's worth, at least BufSize), on top of the pusher's own
// budget rate. spec.Name must be empty: objects made at run time are named
// by the kernel.
func (pd *PD) NewRingSpec(spec RingSpec) (Cap, error) {
	if spec.Name != "" {
		return 0, fmt.Errorf("kernel: %s: new ring named %q: run-time objects are named by the kernel: %w", pd.name(), spec.Name, ErrInvalidCap)
	}
	if spec.Size <= 0 || spec.Size > maxRing {
		return 0, fmt.Errorf("kernel: %s: new ring of size %d: %w", pd.name(), spec.Size, ErrNoBudget)
	}
	if spec.ByteRate < 0 || spec.Burst < 0 {
		return 0, fmt.Errorf("kernel: %s: new ring with byte rate %d, burst %d: %w", pd.name(), spec.ByteRate, spec.Burst, ErrNoBudget)
	}
	acct := pd.c.budget
	return pd.newObject("new ring", func(n string) object { return newRing(n, spec, acct, pd.k.cfg.Now) }, "ring")
}

// objectsByKind returns the registered objects of kind, sorted by name.
func (k *Kernel) objectsByKind(kind Kind) []object {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []object
	for o := range k.objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name() < out[j].name() })
	return out
}
