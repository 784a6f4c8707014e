// Package routing is the link-state routing component of a unicast IPCP:
// it floods link-state updates, keeps the link-state database, computes
// shortest paths, loop-free alternates and equal-cost sets, and installs
// the result in a forwarding table. It forwards no packets (package dt
// does) and discovers no neighbours (the connection manager tells it).
package routing

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// Timer defaults, after Ouroboros' link-state policy (LS_UPDATE_TIME,
// LS_TIMEO).
const (
	DefaultRefresh = 15 * time.Second       // re-originate own LSU
	DefaultMaxAge  = 60 * time.Second       // forget an LSU not refreshed for this long
	DefaultTick    = 250 * time.Millisecond // flood pacing and recomputation
)

// Neighbour is an adjacent IPCP as the connection manager reports it.
type Neighbour struct {
	Addr   layer.Addr
	Port   pff.Port // the N-1 data-transfer flow to it
	Metric uint32   // cost of sending to it, >= 1
}

// Flooder sends link-state messages to neighbours; the IPCP implements it
// over its management N-1 flows. Flood must not block for long and must
// not call back into the Router; it owns msg after the call. It is called
// from one goroutine at a time.
type Flooder interface {
	Flood(to Neighbour, msg []byte)
}

// Installer takes the computed forwarding table; *pff.Table implements it.
type Installer interface {
	Replace(pff.Routes)
}

// PortDowner is an optional Installer operation: when a neighbour goes
// down the Router calls PortDown at once so traffic moves to alternates
// before the next recomputation. *pff.Table implements it.
type PortDowner interface {
	PortDown(pff.Port)
}

var (
	_ Installer  = (*pff.Table)(nil)
	_ PortDowner = (*pff.Table)(nil)
)

// Clock is the Router's time source; routingtest has a fake.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has passed, as time.After does.
	After(d time.Duration) <-chan time.Time
}

// Config configures a Router.
type Config struct {
	Self    layer.Addr
	Policy  pff.Kind  // which next hops to install: Simple, Alternate (with LFAs) or Multipath (ECMP)
	Flooder Flooder   // required
	PFF     Installer // required
	Clock   Clock     // required

	Refresh time.Duration // 0: DefaultRefresh
	MaxAge  time.Duration // 0: DefaultMaxAge; must exceed Refresh
	Tick    time.Duration // 0: DefaultTick; Start's timer period
	MaxMsg  int           // largest message sent; 0: flow.MaxSDU

	// Runner starts the Tick timer's goroutine (in a node, the IPCP
	// component's kernel PD); required.
	Runner layer.Runner

	// Layer is the layer's name, inside every LSU's signature.
	Layer string
	// Name is this IPCP's name, carried in its LSUs so that every member
	// can show names beside addresses.
	Name string
	// Signer signs this router's own LSUs (the IPCP's signing
	// capability); required.
	Signer identity.Signer
	// Bound reports whether key may speak for origin (in a protected
	// layer, whether origin is the address key derives); nil: any key.
	Bound func(origin layer.Addr, key ed25519.PublicKey) bool
	// MaxOrigins bounds the database: an LSU of a new origin beyond it is
	// dropped and counted (0: DefaultMaxOrigins).
	MaxOrigins int
}

// DefaultMaxOrigins is the default bound of the link-state database.
const DefaultMaxOrigins = 4096

// entry is one LSU in the database.
type entry struct {
	seq     uint64
	links   []Link
	key     ed25519.PublicKey // the origin's, pinned while the entry lives
	name    string            // the origin's IPCP name
	raw     []byte            // its deterministic encoding, flooded as is; nil: own, not signed yet
	expires time.Time
}

// Stats are a Router's counters.
type Stats struct {
	MsgsSent, MsgsReceived uint64
	LSUsSent, LSUsReceived uint64
	Installed              uint64 // LSUs that changed the database
	Duplicates, Stale      uint64 // LSUs ignored: seen before, or older
	Malformed              uint64 // messages dropped undecoded
	// LSUs refused: a signature that does not verify, a key that may not
	// speak for the origin (Bound), another key than the one the origin's
	// entry has, a new origin beyond MaxOrigins.
	BadSig, Unbound, KeyMismatch, TooMany uint64
	// Checked counts signatures checked (a batch's count once, whether
	// or not it failed); Rechecked, good signatures checked a second
	// time, one by one, because their batch held a bad one; Penalised,
	// new LSUs of a penalised neighbour dropped unchecked (suspect).
	Checked, Rechecked, Penalised uint64
	SignFailures                  uint64 // own LSUs the Signer failed to sign (retried at the next Tick)
	Computations                  uint64 // route computations
	Entries                       int    // LSUs in the database
}

// Router is one IPCP's link-state routing. All methods are safe for
// concurrent use. It runs one goroutine between Start and Stop (the Tick
// timer); without Start, the owner drives it by calling Tick.
//
// Locking: mu guards the database, neighbours and flood queues and is
// never held while calling the Flooder or the Installer; computeMu
// serialises route computation and installation so tables are installed
// in order.
type Router struct {
	cfg Config

	computeMu sync.Mutex

	mu       sync.Mutex
	seq      uint64                             // own LSU sequence number
	lsdb     map[layer.Addr]*entry              // by origin, own included
	nbrs     map[layer.Addr]Neighbour           // by address
	pending  map[layer.Addr]map[layer.Addr]bool // neighbour → origins to send it
	held     map[layer.Addr][]*held             // by origin: LSUs waiting for their check
	nHeld    int                                // held LSUs
	suspects map[layer.Addr]*suspect            // penalised neighbours
	dirty    bool                               // database changed since last computation
	nextRefr time.Time
	routes   []Route
	stats    Stats
	stop     chan struct{}
	done     chan struct{}
	kick     chan struct{} // HandleMessage held LSUs: check them (run)
}

// New returns a Router with an empty database holding only its own LSU.
func New(cfg Config) (*Router, error) {
	if cfg.Self == 0 || cfg.Flooder == nil || cfg.PFF == nil || cfg.Clock == nil {
		return nil, fmt.Errorf("routing: config needs Self, Flooder, PFF and Clock: %w", flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("routing")
	}
	switch cfg.Policy {
	case pff.Simple, pff.Alternate, pff.Multipath:
	default:
		return nil, fmt.Errorf("routing: unknown policy %v: %w", cfg.Policy, flow.ErrInvalid)
	}
	if cfg.Signer == nil {
		return nil, fmt.Errorf("routing: config needs a Signer: %w", flow.ErrInvalid)
	}
	cfg.MaxOrigins = cmp.Or(cfg.MaxOrigins, DefaultMaxOrigins)
	cfg.Refresh = cmp.Or(cfg.Refresh, DefaultRefresh)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	cfg.Tick = cmp.Or(cfg.Tick, DefaultTick)
	cfg.MaxMsg = cmp.Or(cfg.MaxMsg, flow.MaxSDU)
	if cfg.MaxAge <= cfg.Refresh {
		return nil, fmt.Errorf("routing: MaxAge %v must exceed Refresh %v: %w", cfg.MaxAge, cfg.Refresh, flow.ErrInvalid)
	}
	if cfg.MaxMsg < 64 {
		return nil, fmt.Errorf("routing: MaxMsg %d too small: %w", cfg.MaxMsg, flow.ErrInvalid)
	}
	now := cfg.Clock.Now()
	r := &Router{
		cfg:     cfg,
		lsdb:    make(map[layer.Addr]*entry),
		nbrs:    make(map[layer.Addr]Neighbour),
		pending: make(map[layer.Addr]map[layer.Addr]bool),
		kick:    make(chan struct{}, 1),
		// Starting from the clock keeps sequence numbers growing across
		// restarts, so a restarted IPCP's LSUs are not taken as stale.
		seq: uint64(max(now.UnixNano(), 0)),
	}
	r.originate(now)
	return r, nil
}

// Start runs the Tick timer on the configured Clock until Stop.
func (r *Router) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil {
		return fmt.Errorf("routing: already started: %w", flow.ErrInvalid)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	r.stop, r.done = stop, done
	r.cfg.Runner.Go(func() { r.run(stop, done) })
	return nil
}

// Stop stops the timer and waits for it; Stop without Start does nothing.
func (r *Router) Stop() {
	r.mu.Lock()
	stop, done := r.stop, r.done
	r.stop, r.done = nil, nil
	r.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// run is the Router's goroutine: Tick every Tick, and in between the
// check of held LSUs whenever HandleMessage held some. So an LSU waits
// for its check only while the goroutine is busy (checking others, or
// in Tick): when LSUs come faster than they are checked, they form
// batches; when they come one at a time, each is checked at once, and
// the database shows it about as soon as when it was checked on
// receipt.
func (r *Router) run(stop, done chan struct{}) {
	defer close(done)
	tick := r.cfg.Clock.After(r.cfg.Tick)
	for {
		select {
		case <-stop:
			return
		case <-r.kick:
			r.checkHeld()
		case <-tick:
			r.Tick()
			tick = r.cfg.Clock.After(r.cfg.Tick)
		}
	}
}

// NeighbourUp adds or updates an adjacency: the Router re-originates its
// LSU and sends the new neighbour its whole database at the next Flush.
func (r *Router) NeighbourUp(n Neighbour) error {
	if n.Addr == 0 || n.Addr == r.cfg.Self || n.Metric == 0 {
		return fmt.Errorf("routing: neighbour %d metric %d: %w", n.Addr, n.Metric, flow.ErrInvalid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.nbrs[n.Addr]; !ok && len(r.nbrs) >= MaxLinks {
		return fmt.Errorf("routing: more than %d neighbours: %w", MaxLinks, flow.ErrBusy)
	}
	r.nbrs[n.Addr] = n
	q := make(map[layer.Addr]bool, len(r.lsdb))
	for o := range r.lsdb {
		q[o] = true
	}
	r.pending[n.Addr] = q
	r.originate(r.cfg.Clock.Now())
	return nil
}

// NeighbourDown removes an adjacency: the Router tells the forwarding
// table at once (if it implements PortDowner) and re-originates its LSU.
func (r *Router) NeighbourDown(addr layer.Addr) {
	r.mu.Lock()
	n, ok := r.nbrs[addr]
	if ok {
		delete(r.nbrs, addr)
		delete(r.pending, addr)
		r.originate(r.cfg.Clock.Now())
	}
	r.mu.Unlock()
	if pd, isPD := r.cfg.PFF.(PortDowner); ok && isPD {
		pd.PortDown(n.Port)
	}
}

// originate makes a new own LSU from the neighbour table and queues it
// for every neighbour. Called with mu held.
//
// The new LSU is signed outside mu, before the next Flush sends it
// (signOwn): the Signer may be another component.
func (r *Router) originate(now time.Time) {
	if r.seq < math.MaxUint64 { // never wraps: 2^64 originations take centuries
		r.seq++
	}
	links := make([]Link, 0, len(r.nbrs))
	for _, n := range r.nbrs {
		links = append(links, Link{Neighbour: n.Addr, Metric: n.Metric})
	}
	slices.SortFunc(links, func(a, b Link) int { return cmp.Compare(a.Neighbour, b.Neighbour) })
	r.lsdb[r.cfg.Self] = &entry{seq: r.seq, links: links, key: r.cfg.Signer.Public(), name: r.cfg.Name}
	r.nextRefr = now.Add(r.cfg.Refresh)
	r.dirty = true
	for a := range r.nbrs {
		r.queue(a, r.cfg.Self)
	}
}

func (r *Router) queue(nbr, origin layer.Addr) {
	q := r.pending[nbr]
	if q == nil {
		q = make(map[layer.Addr]bool)
		r.pending[nbr] = q
	}
	q[origin] = true
}

// HandleMessage processes a link-state message received from neighbour
// from. It does not retain msg. Malformed messages are counted and
// dropped; an error is returned only for the caller's logs.
//
// Duplicates and older copies are handled at once and cost no signature
// check. An LSU newer than the database's copy is held (hold) and
// checked with the others held meanwhile as one batch (checkHeld) before
// it is installed and queued for flooding: by the Router's goroutine as
// soon as it is free (run), by Flush, or at once when maxHeld are
// waiting. A received LSU waits for the next Flush to be flooded anyway,
// and batches of hundreds cost a fifth of the checks one by one
// (docs/benchmarks.md).
func (r *Router) HandleMessage(from layer.Addr, msg []byte) error {
	raws, err := unmarshalRaw(msg)
	r.mu.Lock()
	r.stats.MsgsReceived++
	if err != nil {
		r.stats.Malformed++
		r.mu.Unlock()
		return err
	}
	// An LSU not newer than ours is read only as far as its origin and
	// sequence number (lsuHead): a duplicate or an older copy changes
	// nothing but the sender's flood queue. The others are decoded in
	// full first, so that a malformed one drops the whole message.
	lsus := make([]LSU, len(raws))
	fresh := make([]bool, len(raws))
	for i, raw := range raws {
		if o, seq, ok := lsuHead(raw); ok && !r.newer(LSU{Origin: o, Seq: seq}) {
			lsus[i] = LSU{Origin: o, Seq: seq}
			continue
		}
		if err := decodeLSU(raw, &lsus[i]); err != nil {
			r.stats.Malformed++
			r.mu.Unlock()
			return err
		}
		fresh[i] = r.newer(lsus[i])
	}
	now := r.cfg.Clock.Now()
	for i := range lsus {
		if fresh[i] {
			r.hold(from, lsus[i], raws[i], now)
		} else {
			r.receive(from, lsus[i], raws[i], now)
		}
	}
	full := r.nHeld >= maxHeld
	kick := r.nHeld > 0 && r.stop != nil
	r.mu.Unlock()
	if full {
		r.checkHeld()
	} else if kick {
		select {
		case r.kick <- struct{}{}:
		default: // already signalled
		}
	}
	return nil
}

// maxHeld bounds the LSUs held for their signature check: HandleMessage
// checks them at once when a message makes them this many (so at most
// maxHeld+MaxLSUs-1 are held).
const maxHeld = 1024

// suspectBudget is how many new LSUs of a penalised neighbour (suspect)
// are held for a check per Tick (not per check: a started Router checks
// whenever LSUs are held); the rest are dropped unchecked and counted
// (Stats.Penalised).
const suspectBudget = 8

// held is an LSU newer than the database's copy waiting for its
// signature check (checkHeld).
type held struct {
	lsu     LSU
	raw     []byte       // its encoding, a copy
	froms   []layer.Addr // the neighbours that sent these bytes, first first
	suspect bool         // every one of froms is penalised: checked apart
	badSig  bool         // its signature did not verify
}

// suspect is a neighbour that sent an LSU whose signature does not
// verify. An honest member floods only LSUs it has checked, and the
// adjacency is authenticated, so the neighbour itself forged or
// corrupted it: until the penalty ends, its LSUs are checked in a batch
// of their own (a bad signature in a batch makes every signature of the
// batch be checked again one by one) and at most suspectBudget of them
// per Tick.
type suspect struct {
	until time.Time
	held  int // LSUs held from it since the last Tick
}

// hold queues lsu, newer than the database's copy, for the next check;
// raw is its encoding (copied if kept). What can be refused without a
// signature check is refused here: another key than the one pinned to
// the origin, a new origin beyond MaxOrigins, more LSUs of a penalised
// neighbour than its budget. The same bytes from several neighbours are
// held (and checked) once; of different versions of one origin, one per
// neighbour is held, so a neighbour's forgery cannot displace another
// neighbour's honest LSU. mu is held.
func (r *Router) hold(from layer.Addr, lsu LSU, raw []byte, now time.Time) {
	var pinned ed25519.PublicKey
	if lsu.Origin == r.cfg.Self {
		pinned = r.cfg.Signer.Public()
	} else if e := r.lsdb[lsu.Origin]; e != nil {
		pinned = e.key
	} else if len(r.lsdb) >= r.cfg.MaxOrigins {
		r.stats.TooMany++
		return
	}
	if pinned != nil && !pinned.Equal(ed25519.PublicKey(lsu.Key)) {
		r.stats.KeyMismatch++
		return
	}
	hs := r.held[lsu.Origin]
	for _, h := range hs {
		if bytes.Equal(h.raw, raw) {
			if !slices.Contains(h.froms, from) {
				h.froms = append(h.froms, from)
			}
			return
		}
	}
	s := r.suspects[from]
	if s != nil && now.Before(s.until) {
		if s.held >= suspectBudget {
			r.stats.Penalised++
			return
		}
		s.held++
	}
	for _, h := range hs {
		if h.froms[0] == from {
			if lsu.Seq > h.lsu.Seq {
				h.lsu, h.raw, h.froms = lsu, slices.Clone(raw), h.froms[:1]
			} else {
				r.stats.Stale++
			}
			return
		}
	}
	if r.held == nil {
		r.held = make(map[layer.Addr][]*held)
	}
	r.held[lsu.Origin] = append(hs, &held{lsu: lsu, raw: slices.Clone(raw), froms: []layer.Addr{from}})
	r.nHeld++
}

// checkHeld checks the held LSUs and installs those whose signature
// verifies. Of each origin, the newest held version is checked first,
// all origins in one batch (the penalised neighbours' LSUs in another);
// when it fails, the next newest in the next round, and so on; versions
// no longer newer once one is installed are duplicates or stale and cost
// no check. mu is not held.
func (r *Router) checkHeld() {
	r.mu.Lock()
	if r.nHeld == 0 {
		r.mu.Unlock()
		return
	}
	byOrigin := r.held
	r.held, r.nHeld = nil, 0
	now := r.cfg.Clock.Now()
	queues := make([][]*held, 0, len(byOrigin))
	for _, hs := range byOrigin {
		for _, h := range hs {
			h.suspect = true
			for _, f := range h.froms {
				if s := r.suspects[f]; s == nil || !now.Before(s.until) {
					h.suspect = false
					break
				}
			}
		}
		slices.SortFunc(hs, func(a, b *held) int { return cmp.Compare(b.lsu.Seq, a.lsu.Seq) })
		queues = append(queues, hs)
	}
	r.mu.Unlock()

	tops := make([]*held, 0, len(queues))
	for len(queues) > 0 {
		tops = tops[:0]
		for _, q := range queues {
			tops = append(tops, q[0])
		}
		ok := r.checkAll(tops)
		r.mu.Lock()
		now := r.cfg.Clock.Now()
		next := queues[:0]
		for i, q := range queues {
			h, rest := q[0], q[1:]
			if ok[i] {
				for _, f := range h.froms {
					r.receive(f, h.lsu, h.raw, now)
				}
			} else {
				r.penalise(h, now)
			}
			// What is still newer needs its own check; the rest is
			// a duplicate or stale and handled without one.
			keep := rest[:0]
			for _, o := range rest {
				if r.newer(o.lsu) {
					keep = append(keep, o)
					continue
				}
				for _, f := range o.froms {
					r.receive(f, o.lsu, o.raw, now)
				}
			}
			if len(keep) > 0 {
				next = append(next, keep)
			}
		}
		r.mu.Unlock()
		queues = next
	}
}

// penalise makes every neighbour that sent h, whose signature did not
// verify, a suspect until now + Refresh. mu is held.
func (r *Router) penalise(h *held, now time.Time) {
	if !h.badSig {
		return
	}
	if r.suspects == nil {
		r.suspects = make(map[layer.Addr]*suspect)
	}
	for _, f := range h.froms {
		s := r.suspects[f]
		if s == nil {
			s = &suspect{}
			r.suspects[f] = s
		}
		s.until = now.Add(r.cfg.Refresh)
	}
}

// checkAll reports, for each of hs, whether its key may speak for its
// origin (Bound) and its signature verifies, checking the signatures of
// all but the suspect ones as one batch and the suspect ones as another
// (identity.Batch), and counts the refusals. A held LSU whose signature
// fails is marked (badSig) for penalise. mu is not held.
func (r *Router) checkAll(hs []*held) []bool {
	ok := make([]bool, len(hs))
	var b [2]identity.Batch
	var idx [2][]int
	unbound, bad := 0, 0
	for i, h := range hs {
		l := &h.lsu
		if r.cfg.Bound != nil && !r.cfg.Bound(l.Origin, l.Key) {
			unbound++
			continue
		}
		msg, err := l.signed(r.cfg.Layer)
		if err != nil {
			bad++ // cannot happen: it was decoded
			continue
		}
		g := 0
		if h.suspect {
			g = 1
		}
		b[g].Add(l.Key, identity.LabelLSU, msg, l.Sig)
		idx[g] = append(idx[g], i)
	}
	checked, rechecked := 0, 0
	for g := range b {
		failed := 0
		for k, v := range b[g].Verify() {
			ok[idx[g][k]] = v
			if !v {
				failed++
				hs[idx[g][k]].badSig = true
			}
		}
		checked += len(idx[g])
		if failed > 0 && len(idx[g]) > 1 {
			rechecked += len(idx[g]) - failed
		}
		bad += failed
	}
	r.mu.Lock()
	r.stats.Unbound += uint64(unbound)
	r.stats.BadSig += uint64(bad)
	r.stats.Checked += uint64(checked)
	r.stats.Rechecked += uint64(rechecked)
	r.mu.Unlock()
	return ok
}

// newer reports whether lsu is newer than the database's copy (or of a
// new origin), so that it needs its signature checked. mu is held.
func (r *Router) newer(lsu LSU) bool {
	if lsu.Origin == r.cfg.Self {
		return lsu.Seq > r.seq
	}
	e := r.lsdb[lsu.Origin]
	return e == nil || lsu.Seq > e.seq
}

// authentic checks lsu's key binding and signature, counting a refusal.
// mu is not held.
func (r *Router) authentic(lsu *LSU) bool {
	var bad *uint64
	switch {
	case r.cfg.Bound != nil && !r.cfg.Bound(lsu.Origin, lsu.Key):
		bad = &r.stats.Unbound
	case !lsu.Verify(r.cfg.Layer):
		bad = &r.stats.BadSig
	default:
		r.mu.Lock()
		r.stats.Checked++
		r.mu.Unlock()
		return true
	}
	r.mu.Lock()
	*bad++
	if bad == &r.stats.BadSig {
		r.stats.Checked++
	}
	r.mu.Unlock()
	return false
}

// Receive processes one LSU heard from neighbour from: an LSU newer than
// the database's copy is installed (changed) and queued for every other
// neighbour (floodTo), sent at the next Flush; a duplicate is dropped and
// withdrawn from from's queue (it has it); an older one is answered with
// the newer copy. An own LSU newer than ours (we restarted) makes us
// re-originate above it.
func (r *Router) Receive(from layer.Addr, lsu LSU) (floodTo []layer.Addr, changed bool, err error) {
	if err := lsu.check(); err != nil {
		return nil, false, err
	}
	raw, err := encMode.Marshal(lsu)
	if err != nil {
		return nil, false, fmt.Errorf("routing: %w: %v", ErrMalformed, err)
	}
	r.mu.Lock()
	newer := r.newer(lsu)
	r.mu.Unlock()
	if newer && !r.authentic(&lsu) {
		return nil, false, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	floodTo, changed = r.receive(from, lsu, raw, r.cfg.Clock.Now())
	return floodTo, changed, nil
}

// receive is Receive with mu held; raw is the LSU's encoding, copied if
// kept. An LSU newer than the database's copy must have been checked
// (authentic) by the caller.
func (r *Router) receive(from layer.Addr, lsu LSU, raw []byte, now time.Time) (floodTo []layer.Addr, changed bool) {
	r.stats.LSUsReceived++
	if lsu.Origin == r.cfg.Self {
		if lsu.Seq > r.seq && !r.cfg.Signer.Public().Equal(ed25519.PublicKey(lsu.Key)) {
			r.stats.KeyMismatch++ // somebody else's LSU for our address
			return nil, false
		}
		if lsu.Seq > r.seq {
			r.seq = lsu.Seq
			r.originate(now)
			return r.others(0), true
		}
		if lsu.Seq == r.seq {
			r.stats.Duplicates++
			delete(r.pending[from], lsu.Origin)
		} else {
			r.stats.Stale++
			if _, ok := r.nbrs[from]; ok {
				r.queue(from, lsu.Origin)
			}
		}
		return nil, false
	}
	e := r.lsdb[lsu.Origin]
	switch {
	case e != nil && lsu.Seq == e.seq:
		r.stats.Duplicates++
		delete(r.pending[from], lsu.Origin)
		return nil, false
	case e != nil && lsu.Seq < e.seq:
		r.stats.Stale++
		if _, ok := r.nbrs[from]; ok {
			r.queue(from, lsu.Origin)
		}
		return nil, false
	case e != nil && !e.key.Equal(ed25519.PublicKey(lsu.Key)):
		r.stats.KeyMismatch++
		return nil, false
	case e == nil && len(r.lsdb) >= r.cfg.MaxOrigins:
		r.stats.TooMany++
		return nil, false
	}
	r.lsdb[lsu.Origin] = &entry{seq: lsu.Seq, links: lsu.Links, key: slices.Clone(lsu.Key), name: lsu.Name, raw: slices.Clone(raw), expires: now.Add(r.cfg.MaxAge)}
	r.stats.Installed++
	r.dirty = true
	delete(r.pending[from], lsu.Origin)
	floodTo = r.others(from)
	for _, a := range floodTo {
		r.queue(a, lsu.Origin)
	}
	return floodTo, true
}

// others lists the neighbours other than except, ascending.
func (r *Router) others(except layer.Addr) []layer.Addr {
	out := make([]layer.Addr, 0, len(r.nbrs))
	for a := range r.nbrs {
		if a != except {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Flush checks the held LSUs (installing and queueing those that
// verify), then sends every queued LSU, batched into as few messages
// per neighbour as MaxMsg allows.
func (r *Router) Flush() {
	type out struct {
		to  Neighbour
		msg []byte
	}
	var outs []out
	r.checkHeld()
	r.signOwn()
	r.mu.Lock()
	var unsigned []layer.Addr // neighbours the own LSU stays queued for: not signed yet
	for a, q := range r.pending {
		if len(q) == 0 {
			continue
		}
		n, ok := r.nbrs[a]
		if !ok {
			delete(r.pending, a)
			continue
		}
		origins := slices.Sorted(maps.Keys(q))
		delete(r.pending, a) // not clear: a database sync's map would keep its buckets
		var raws [][]byte
		size := 0
		emit := func() {
			if len(raws) == 0 {
				return
			}
			msg := appendMsgHead(make([]byte, 0, size+5), len(raws))
			for _, b := range raws {
				msg = append(msg, b...)
			}
			outs = append(outs, out{n, msg})
			r.stats.MsgsSent++
			r.stats.LSUsSent += uint64(len(raws))
			raws, size = raws[:0], 0
		}
		for _, o := range origins {
			e := r.lsdb[o]
			if e == nil {
				continue // aged out since queued
			}
			if e.raw == nil { // own and not signed yet (a failed or a later signature): the next Flush
				unsigned = append(unsigned, a)
				continue
			}
			if size+len(e.raw)+5 > r.cfg.MaxMsg || len(raws) == MaxLSUs {
				emit()
			}
			raws = append(raws, e.raw)
			size += len(e.raw)
		}
		emit()
	}
	for _, a := range unsigned { // after the range: an entry added during it may be produced again
		r.queue(a, r.cfg.Self)
	}
	r.mu.Unlock()
	for _, o := range outs {
		r.cfg.Flooder.Flood(o.to, o.msg)
	}
}

// signOwn signs the own LSU if originate made a new one; on failure it
// is counted and tried again at the next Flush.
func (r *Router) signOwn() {
	r.mu.Lock()
	e := r.lsdb[r.cfg.Self]
	if e == nil || e.raw != nil {
		r.mu.Unlock()
		return
	}
	lsu := LSU{Origin: r.cfg.Self, Seq: e.seq, Links: e.links, Name: e.name}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := Sign(ctx, r.cfg.Signer, r.cfg.Layer, &lsu)
	cancel()
	var raw []byte
	if err == nil {
		raw, err = encMode.Marshal(lsu)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.stats.SignFailures++
		return
	}
	if r.lsdb[r.cfg.Self] == e { // not re-originated meanwhile
		e.raw = raw
	}
}

// Tick does the timed work: ages out LSUs not refreshed within MaxAge,
// re-originates the own LSU every Refresh, flushes the flood queues and,
// if the database changed, recomputes and installs routes.
func (r *Router) Tick() {
	r.mu.Lock()
	now := r.cfg.Clock.Now()
	for o, e := range r.lsdb {
		if o != r.cfg.Self && now.After(e.expires) {
			delete(r.lsdb, o)
			r.dirty = true
		}
	}
	for a, s := range r.suspects {
		if !now.Before(s.until) {
			delete(r.suspects, a)
		}
		s.held = 0
	}
	if !now.Before(r.nextRefr) {
		r.originate(now)
	}
	r.mu.Unlock()
	r.Flush()
	r.Recompute(false)
}

// Recompute computes routes from the database and installs them in the
// forwarding table, if the database changed since the last computation or
// force is set.
func (r *Router) Recompute(force bool) {
	r.computeMu.Lock()
	defer r.computeMu.Unlock()
	r.mu.Lock()
	if !r.dirty && !force {
		r.mu.Unlock()
		return
	}
	r.dirty = false
	links := make(map[layer.Addr][]Link, len(r.lsdb))
	for o, e := range r.lsdb {
		links[o] = e.links // immutable once installed
	}
	ports := make(map[layer.Addr]pff.Port, len(r.nbrs))
	for a, n := range r.nbrs {
		ports[a] = n.Port
	}
	r.mu.Unlock()

	routes := computeRoutes(r.cfg.Self, links)
	table := make(pff.Routes, len(routes))
	for _, rt := range routes {
		var hops []pff.Port
		switch r.cfg.Policy {
		case pff.Simple:
			hops = []pff.Port{ports[rt.NextHops[0]]}
		case pff.Alternate:
			hops = []pff.Port{ports[rt.NextHops[0]]}
			if rt.Alternate != 0 {
				hops = append(hops, ports[rt.Alternate])
			}
		case pff.Multipath:
			hops = make([]pff.Port, len(rt.NextHops))
			for i, a := range rt.NextHops {
				hops[i] = ports[a]
			}
		}
		table[rt.Dst] = hops
	}
	r.cfg.PFF.Replace(table)

	r.mu.Lock()
	r.routes = routes
	r.stats.Computations++
	r.mu.Unlock()
}

// Routes returns the last computed routes, ascending by destination. The
// caller must not modify them.
func (r *Router) Routes() []Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.routes
}

// Stats returns the Router's counters.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Entries = len(r.lsdb)
	return s
}

// KeyOf returns the key of origin's LSU in the database, or nil.
func (r *Router) KeyOf(origin layer.Addr) ed25519.PublicKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.lsdb[origin]; e != nil {
		return e.key
	}
	return nil
}

// Database returns a copy of the link-state database, one LSU per origin,
// ascending by origin.
func (r *Router) Database() []LSU {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]LSU, 0, len(r.lsdb))
	for o, e := range r.lsdb {
		out = append(out, LSU{Origin: o, Seq: e.seq, Links: slices.Clone(e.links), Name: e.name, Key: slices.Clone(e.key)})
	}
	slices.SortFunc(out, func(a, b LSU) int { return cmp.Compare(a.Origin, b.Origin) })
	return out
}
