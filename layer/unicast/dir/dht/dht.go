// Package dir is the unicast layer's directory policy "dht": a Kademlia
// DHT (Maymounkov and Mazières, IPTPS 2002) from name hashes to member
// addresses, over the IPCP's directory transport (dir.Env). It
// implements dir.Directory; it is not a name registry of the node
// (that is the IRM's) and it moves no flow data.
//
// Node ids are NodeID(address): 256-bit, the same space as layer.Hash
// keys, distance XOR. Each member keeps K-buckets (K contacts per shared
// prefix length, least recently seen first, with a replacement cache),
// looks up iteratively with at most Alpha requests in flight, stores each
// registration at the K members closest to the name's hash with an
// expiry, republishes its own registrations, replicates what it holds
// when nobody else did recently, refreshes buckets nobody looked into, and
// caches remote answers for CacheTTL, or until the membership changes
// (MembersChanged) or a flow to an address in the answer fails (Stale).
// Time comes from a Clock.
//
// Concurrency: one lock (DHT.mu) guards the table, the stores, the cache
// and the pending requests; no network call is made under it. Lookups run
// on their caller's goroutine and collect answers from Handle through a
// channel; one maintenance goroutine (Start to Stop) joins, refreshes,
// republishes and expires.
package dht

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
)

var (
	_ dir.Directory      = (*DHT)(nil)
	_ dir.Lister         = (*DHT)(nil)
	_ dir.MembersWatcher = (*DHT)(nil)
)

// Defaults of Config.
const (
	DefaultK             = 8
	DefaultAlpha         = 3
	DefaultRPCTimeout    = time.Second
	DefaultLookupTimeout = 5 * time.Second
	DefaultStoreTTL      = time.Hour
	DefaultRefresh       = 15 * time.Minute
	DefaultCacheTTL      = 30 * time.Second
	DefaultTick          = time.Minute
	DefaultMaxStored     = 16384
	DefaultMaxCached     = 1024
)

// Config configures a DHT. Zero durations and sizes take the defaults.
type Config struct {
	Env   dir.Env      // the IPCP's transport; required
	Layer string       // for logs and errors
	Log   *slog.Logger // nil discards
	Clock Clock        // nil: SystemClock
	// Runner starts the maintenance goroutine (in a node, the IPCP
	// component's kernel PD); required. Policy takes the IPCP's.
	Runner layer.Runner
	K      int // bucket size and replication factor (1..MaxNodes; 8)
	Alpha  int // lookup parallelism (1..K; 3)

	RPCTimeout    time.Duration // one request's wait for its answer (1 s)
	LookupTimeout time.Duration // bound of Register, Unregister and Lookup when ctx has no deadline (5 s)
	StoreTTL      time.Duration // life of a stored registration; also the cap on a MsgStore's TTL (1 h)
	Republish     time.Duration // own registrations are stored again this often (StoreTTL/3)
	Replicate     time.Duration // held entries nobody stored for this long (plus up to a quarter, per key) are replicated (StoreTTL/2)
	Refresh       time.Duration // a bucket nobody looked into for this long is refreshed (15 min)
	CacheTTL      time.Duration // life of a remote lookup's answer in the local cache (30 s)
	Tick          time.Duration // how often the maintenance goroutine checks what is due (1 min)
	MaxStored     int           // values held for others, all keys together (16384)
	MaxCached     int           // cached keys (1024)

	// Signer signs this member's registrations (records); required.
	// Policy takes the IPCP's.
	Signer identity.Signer
	// Bound reports whether a key may speak for an address (in a
	// protected layer, whether the address derives from it); nil: any.
	// Policy takes the IPCP's.
	Bound func(layer.Addr, ed25519.PublicKey) bool
	// Names, if not nil, enforces the names membership certificates
	// list (see NamesPolicy); nil: first come, first owner only.
	Names *NamesPolicy
}

func (c *Config) setDefaults() error {
	if c.Env == nil {
		return fmt.Errorf("dir: config without an Env: %w", flow.ErrInvalid)
	}
	if c.Runner == nil {
		return layer.NeedRunner("dir")
	}
	if c.Signer == nil {
		return fmt.Errorf("dir: config without a Signer: %w", flow.ErrInvalid)
	}
	c.Log = logx.Or(c.Log)
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&c.K, DefaultK)
	defInt(&c.Alpha, DefaultAlpha)
	defInt(&c.MaxStored, DefaultMaxStored)
	defInt(&c.MaxCached, DefaultMaxCached)
	def(&c.RPCTimeout, DefaultRPCTimeout)
	def(&c.LookupTimeout, DefaultLookupTimeout)
	def(&c.StoreTTL, DefaultStoreTTL)
	def(&c.Republish, c.StoreTTL/3)
	def(&c.Replicate, c.StoreTTL/2) // longer than Republish: holders replicate what owners stopped republishing
	def(&c.Refresh, DefaultRefresh)
	def(&c.CacheTTL, DefaultCacheTTL)
	def(&c.Tick, DefaultTick)
	if c.K > MaxNodes || c.Alpha > c.K {
		return fmt.Errorf("dir: K %d, Alpha %d (want 1 ≤ Alpha ≤ K ≤ %d): %w", c.K, c.Alpha, MaxNodes, flow.ErrInvalid)
	}
	if c.Names != nil && len(c.Names.Authorities) == 0 {
		return fmt.Errorf("dir: a names policy without authorities: %w", flow.ErrInvalid)
	}
	if c.StoreTTL < time.Second || c.StoreTTL > time.Duration(^uint32(0))*time.Second {
		return fmt.Errorf("dir: StoreTTL %v out of range: %w", c.StoreTTL, flow.ErrInvalid)
	}
	return nil
}

// Policy returns the dir.Builder of policy "dht" with the given
// parameters: the IPCP's dir.Config fills Env, Layer and Log.
func Policy(params Config) dir.Builder {
	return func(dc dir.Config) (dir.Directory, error) {
		c := params
		c.Env, c.Layer, c.Log, c.Runner = dc.Env, dc.Layer, dc.Log, dc.Runner
		c.Signer, c.Bound = dc.Signer, dc.Bound
		if dc.Names != nil {
			c.Names = dc.Names
		}
		return New(c)
	}
}

// Stats are a DHT's counters, always on.
type Stats struct {
	Sent        uint64 `json:"sent"`        // messages sent
	SendErrors  uint64 `json:"send_errors"` // sends the transport refused
	Received    uint64 `json:"received"`    // messages handled
	Malformed   uint64 `json:"malformed"`   // messages dropped undecoded
	Unsolicited uint64 `json:"unsolicited"` // answers to no pending request (late, or from the wrong member)
	Timeouts    uint64 `json:"timeouts"`    // requests unanswered within RPCTimeout
	Refused     uint64 `json:"refused"`     // records not stored: MaxStored or MaxValues reached
	BadRecords  uint64 `json:"bad_records"` // records whose signature or address binding fails (stored or answered)
	NotOwner    uint64 `json:"not_owner"`   // records of a name another key owns
	Replays     uint64 `json:"replays"`     // records older than the one held
	NotClosest  uint64 `json:"not_closest"` // records stored here for a name K known members are closer to
	CertNames   uint64 `json:"cert_names"`  // records refused under Config.Names: another key's certificate lists the name, or (Certified) the record's does not
	Lookups     uint64 `json:"lookups"`     // network lookups (FIND_NODE and FIND_VALUE) run
	Hops        uint64 `json:"hops"`        // their hops, summed
	CacheHits   uint64 `json:"cache_hits"`  // Lookups answered from the cache
	StaleDrops  uint64 `json:"stale_drops"` // cached answers dropped because a flow to an address in them failed (Stale)
	Joins       uint64 `json:"joins"`       // completed joins (self lookups)
	Contacts    int    `json:"contacts"`    // live contacts in the table
	Stored      int    `json:"stored"`      // values held for others
	Cached      int    `json:"cached"`      // keys in the cache
	Local       int    `json:"local"`       // own registrations
}

type counters struct {
	sent, sendErrors, received, malformed, unsolicited, timeouts, refused atomic.Uint64
	badRecords, notOwner, replays, notClosest, certNames                  atomic.Uint64
	lookups, hops, cacheHits, joins, staleDrops                           atomic.Uint64
}

// DHT is one member's Kademlia directory. Create it with New.
type DHT struct {
	cfg      Config
	codec    flow.Codec
	c        counters
	refusals refusalLog
	certs    certCache

	ctx     context.Context // ends at Stop
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	tick    chan struct{}
	maintMu sync.Mutex // one maintenance round at a time

	mu      sync.Mutex // guards the fields below
	state   int        // stateNew, stateRunning, stateStopped
	self    layer.Addr
	tab     *table
	local   map[layer.Hash][]layer.Addr // registered by this member
	own     map[layer.Hash][]Record     // their signed records, as last published
	seq     uint64                      // of the last record signed
	store   map[layer.Hash]*stored      // held for others
	nstored int
	cache   map[layer.Hash]cached
	pending map[uint64]*pending // requests awaiting an answer, by cookie
	rng     *rand.ChaCha8
	joined  bool
	lastPub time.Time    // last republication of own registrations
	members []layer.Addr // the layer's members, as last given (ascending)
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// pending is a request awaiting its answer.
type pending struct {
	dst   layer.Addr
	ch    chan<- event
	timer Timer
}

// event is a request's outcome: its answer, or nil (timeout).
type event struct {
	cookie uint64
	msg    *Msg
}

// New returns a DHT; Start starts it.
func New(cfg Config) (*DHT, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var seed [32]byte
	crand.Read(seed[:]) // never fails (Go 1.24+)
	ctx, cancel := context.WithCancel(context.Background())
	return &DHT{
		cfg:     cfg,
		codec:   flow.NewCodec(),
		ctx:     ctx,
		cancel:  cancel,
		tick:    make(chan struct{}, 1),
		local:   make(map[layer.Hash][]layer.Addr),
		own:     make(map[layer.Hash][]Record),
		store:   make(map[layer.Hash]*stored),
		cache:   make(map[layer.Hash]cached),
		pending: make(map[uint64]*pending),
		rng:     rand.NewChaCha8(seed),
	}, nil
}

// Start seeds the table with the layer's members and starts the
// maintenance goroutine, which joins (looks up the own id and refreshes
// the buckets) at once.
func (d *DHT) Start() error {
	self := d.cfg.Env.Self()
	if self == 0 {
		return fmt.Errorf("dir: %s: start without an address: %w", d.cfg.Layer, flow.ErrInvalid)
	}
	members := d.cfg.Env.Members()
	d.mu.Lock()
	if d.state != stateNew {
		d.mu.Unlock()
		return fmt.Errorf("dir: %s: started twice: %w", d.cfg.Layer, flow.ErrInvalid)
	}
	d.state = stateRunning
	d.self = self
	d.tab = newTable(self, d.cfg.K)
	for _, m := range members {
		d.tab.seen(m)
	}
	d.members = slices.Clone(members)
	d.mu.Unlock()
	d.wg.Add(1)
	d.cfg.Runner.Go(d.run)
	return nil
}

// Stop ends the maintenance goroutine and every lookup in flight (they
// return errors wrapping flow.ErrClosed) and waits for them. Idempotent.
func (d *DHT) Stop() {
	d.mu.Lock()
	d.state = stateStopped
	for cookie, p := range d.pending {
		p.timer.Stop()
		delete(d.pending, cookie)
	}
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

func (d *DHT) run() {
	defer d.wg.Done()
	for {
		d.Maintain(d.ctx)
		t := d.cfg.Clock.AfterFunc(d.cfg.Tick, func() {
			select {
			case d.tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-d.ctx.Done():
			t.Stop()
			return
		case <-d.tick:
		}
	}
}

func (d *DHT) errClosed(op string) error {
	return fmt.Errorf("dir: %s: %s: %w", d.cfg.Layer, op, flow.ErrClosed)
}

// running returns an error unless the DHT is between Start and Stop.
func (d *DHT) running(op string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case stateNew:
		return fmt.Errorf("dir: %s: %s before Start: %w", d.cfg.Layer, op, flow.ErrInvalid)
	case stateStopped:
		return d.errClosed(op)
	}
	return nil
}

// bound gives ctx the LookupTimeout unless it has a deadline, and ends
// it at Stop.
func (d *DHT) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.cfg.LookupTimeout)
		stop := context.AfterFunc(d.ctx, cancel)
		return ctx, func() { stop(); cancel() }
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// ctxErr turns the end of ctx into the directory's error.
func (d *DHT) ctxErr(op string, ctx context.Context) error {
	if d.ctx.Err() != nil {
		return d.errClosed(op)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("dir: %s: %s: %w: %w", d.cfg.Layer, op, flow.ErrTimeout, ctx.Err())
	}
	return fmt.Errorf("dir: %s: %s: %w", d.cfg.Layer, op, ctx.Err())
}

// Register implements dir.Directory: (h, a) is kept locally at once
// and stored at the K members closest to h. If ctx ends before that, the
// error says so but the entry stays: republication retries it, and so
// may the caller (Register is idempotent).
func (d *DHT) Register(ctx context.Context, h layer.Hash, a layer.Addr) error {
	op := "register " + h.String()
	if err := d.running(op); err != nil {
		return err
	}
	if a == 0 {
		return fmt.Errorf("dir: %s: %s: zero address: %w", d.cfg.Layer, op, flow.ErrInvalid)
	}
	d.mu.Lock()
	if !slices.Contains(d.local[h], a) {
		if len(d.local[h]) >= MaxValues {
			d.mu.Unlock()
			return fmt.Errorf("dir: %s: %s: %d addresses: %w", d.cfg.Layer, op, MaxValues, flow.ErrBusy)
		}
		d.local[h] = append(d.local[h], a)
	}
	delete(d.cache, h)
	d.mu.Unlock()
	ctx, cancel := d.bound(ctx)
	defer cancel()
	if _, err := d.publish(ctx, h, []layer.Addr{a}, d.cfg.StoreTTL); err != nil {
		return fmt.Errorf("dir: %s: %s: %w (kept; republished later)", d.cfg.Layer, op, err)
	}
	return nil
}

// Unregister implements dir.Directory: it drops (h, a) here and
// withdraws it from the K members closest to h (a MsgStore with TTL 0).
func (d *DHT) Unregister(ctx context.Context, h layer.Hash, a layer.Addr) error {
	op := "unregister " + h.String()
	if err := d.running(op); err != nil {
		return err
	}
	d.mu.Lock()
	i := slices.Index(d.local[h], a)
	if i < 0 {
		d.mu.Unlock()
		return fmt.Errorf("dir: %s: %s: %w", d.cfg.Layer, op, flow.ErrNotFound)
	}
	d.local[h] = slices.Delete(d.local[h], i, i+1)
	if len(d.local[h]) == 0 {
		delete(d.local, h)
	}
	d.own[h] = slices.DeleteFunc(d.own[h], func(r Record) bool { return r.Addr == a })
	if len(d.own[h]) == 0 {
		delete(d.own, h)
	}
	if s := d.store[h]; s != nil && s.del(a) {
		d.nstored--
	}
	delete(d.cache, h)
	d.mu.Unlock()
	ctx, cancel := d.bound(ctx)
	defer cancel()
	if _, err := d.publish(ctx, h, []layer.Addr{a}, 0); err != nil {
		return fmt.Errorf("dir: %s: %s: %w", d.cfg.Layer, op, err)
	}
	return nil
}

// Found is a lookup's answer and what it cost.
type Found struct {
	Addrs []layer.Addr // the addresses, own registrations first
	// Source is where the answer came from: "local" (registered or held
	// here), "cache", or "network".
	Source string
	Hops   int // the longest chain of requests that led to the answer (0 unless Source is "network")
	Msgs   int // requests sent
}

// Lookup implements dir.Directory.
func (d *DHT) Lookup(ctx context.Context, h layer.Hash) ([]layer.Addr, error) {
	f, err := d.Find(ctx, h)
	return f.Addrs, err
}

// Find is Lookup reporting where the answer came from and its cost.
func (d *DHT) Find(ctx context.Context, h layer.Hash) (Found, error) {
	op := "lookup " + h.String()
	if err := d.running(op); err != nil {
		return Found{}, err
	}
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	addrs := slices.Clone(d.local[h])
	for _, r := range d.recordsLocked(h, now) {
		if !slices.Contains(addrs, r.Addr) {
			addrs = append(addrs, r.Addr)
		}
	}
	if len(addrs) > 0 {
		d.mu.Unlock()
		return Found{Addrs: addrs, Source: "local"}, nil
	}
	if c, ok := d.cache[h]; ok && now.Before(c.expires) {
		d.mu.Unlock()
		d.c.cacheHits.Add(1)
		return Found{Addrs: slices.Clone(c.addrs), Source: "cache"}, nil
	}
	d.mu.Unlock()
	ctx, cancel := d.bound(ctx)
	defer cancel()
	res, err := d.iterate(ctx, h, MsgFindValue)
	f := Found{Source: "network", Hops: res.hops, Msgs: res.msgs}
	if err != nil {
		return f, fmt.Errorf("dir: %s: %s: %w", d.cfg.Layer, op, err)
	}
	if len(res.values) == 0 {
		return f, fmt.Errorf("dir: %s: %s: %w", d.cfg.Layer, op, flow.ErrNotFound)
	}
	f.Addrs = res.values
	d.mu.Lock()
	if _, ok := d.cache[h]; ok || len(d.cache) < d.cfg.MaxCached {
		d.cache[h] = cached{addrs: slices.Clone(res.values), expires: d.cfg.Clock.Now().Add(d.cfg.CacheTTL)}
	}
	d.mu.Unlock()
	return f, nil
}

// recordsLocked returns the records of h registered (and published) or
// held here, at most MaxRecords, own first.
func (d *DHT) recordsLocked(h layer.Hash, now time.Time) []Record {
	var out []Record
	for _, r := range d.own[h] {
		if r.live() {
			out = append(out, r)
		}
	}
	if s := d.store[h]; s != nil {
		out = s.live(now, out)
	}
	return fitRecords(out)
}

// verified returns the records of recs that are genuine records of h
// whose keys may speak for their addresses; it counts and logs the
// others (from src). It takes no lock (a signature check costs tens of
// µs): call it without d.mu.
func (d *DHT) verified(src layer.Addr, h layer.Hash, recs []Record) []Record {
	out := recs[:0:0]
	var bad []refused
	for i := range recs {
		if recs[i].valid(d.codec, d.cfg.Layer, h, d.cfg.Bound) {
			out = append(out, recs[i])
		} else {
			bad = append(bad, refused{why: refBadRecord, src: src, addr: recs[i].Addr, key: recs[i].Key})
		}
	}
	d.count(refBadRecord, uint64(len(bad)))
	d.logRefused(h, bad)
	return out
}

// Handle implements dir.Directory. It answers requests through
// Env.Send and hands answers to the lookups waiting for them.
func (d *DHT) Handle(src layer.Addr, b []byte) {
	m, err := Decode(d.codec, b)
	if err != nil || src == 0 {
		d.c.malformed.Add(1)
		return
	}
	d.c.received.Add(1)
	var recs []Record
	if m.Type == MsgStore {
		recs = d.verified(src, m.hash(), m.Records) // before the lock
		if d.cfg.Names != nil {
			for i := range recs {
				if len(recs[i].Cert) > 0 {
					d.certs.entry(d.cfg.Names, recs[i].Cert) // verified before the lock too; storeLocked then hits the cache
				}
			}
		}
	}
	now := d.cfg.Clock.Now()
	var reply *Msg
	var refusals []refused
	d.mu.Lock()
	if d.state != stateRunning {
		d.mu.Unlock()
		return
	}
	d.tab.seen(src)
	switch m.Type {
	case MsgPing:
		reply = &Msg{Type: MsgPong}
	case MsgFindNode:
		reply = &Msg{Type: MsgNodes, Key: m.Key, Nodes: d.closestLocked(m.hash(), src)}
	case MsgFindValue:
		if recs := d.recordsLocked(m.hash(), now); len(recs) > 0 {
			reply = &Msg{Type: MsgValue, Key: m.Key, Records: recs}
		} else {
			reply = &Msg{Type: MsgNodes, Key: m.Key, Nodes: d.closestLocked(m.hash(), src)}
		}
	case MsgStore:
		refusals = d.storeLocked(src, m.hash(), recs, now)
		reply = &Msg{Type: MsgStored}
	default: // an answer
		p := d.pending[m.Cookie]
		if p == nil || p.dst != src {
			d.mu.Unlock()
			d.c.unsolicited.Add(1)
			return
		}
		delete(d.pending, m.Cookie)
		p.timer.Stop()
		select {
		case p.ch <- event{cookie: m.Cookie, msg: m}:
		default: // cannot happen: one event per request, room for each
		}
	}
	d.mu.Unlock()
	d.logRefused(m.hash(), refusals)
	if reply != nil {
		reply.Cookie = m.Cookie
		d.send(src, reply)
	}
}

func (d *DHT) closestLocked(target layer.Hash, except layer.Addr) []layer.Addr {
	cs := d.tab.closest(target, d.cfg.K+1)
	out := make([]layer.Addr, 0, len(cs))
	for _, c := range cs {
		if c.addr != except && len(out) < d.cfg.K {
			out = append(out, c.addr)
		}
	}
	return out
}

// storeLocked applies a MsgStore's verified records from src: each
// held until it expires (at most StoreTTL from now), or its address
// withdrawn. It counts the records it refuses and returns them, for
// logRefused: those of a name this member is not among the closest to,
// of a name another key owns, older than the one held, or over
// MaxStored (withdrawals included: a flood of withdrawals of new names
// is bounded as one of registrations is) or MaxValues.
func (d *DHT) storeLocked(src layer.Addr, h layer.Hash, recs []Record, now time.Time) []refused {
	var out []refused
	refuse := func(why refusal, r *Record) {
		d.count(why, 1)
		out = append(out, refused{why: why, src: src, addr: r.Addr, key: r.Key})
	}
	if !d.responsibleLocked(h) {
		// Somebody stores a name with K members closer to it than this
		// one: no honest publisher does (it stores at the K closest), and
		// an entry kept here would answer this member's own lookups
		// before the network's holders could.
		for i := range recs {
			refuse(refNotClosest, &recs[i])
		}
		return out
	}
	s := d.store[h]
	if s == nil {
		s = new(stored)
		d.store[h] = s
	}
	var owner ed25519.PublicKey // this member's own registration of h makes it the owner
	if slices.ContainsFunc(d.own[h], func(r Record) bool { return r.live() }) {
		owner = d.cfg.Signer.Public()
	}
	ownCertified := owner != nil && slices.ContainsFunc(d.own[h], func(r Record) bool { return r.live() && d.certifies(&r, h, now) })
	accepted := false
	for i := range recs {
		r := &recs[i]
		n := len(s.vals)
		if d.nstored >= d.cfg.MaxStored && !slices.ContainsFunc(s.vals, func(v value) bool { return v.addr == r.Addr }) {
			refuse(refFull, r)
			continue
		}
		cert := d.certifies(r, h, now)
		if d.cfg.Names != nil && d.cfg.Names.Certified && !cert {
			refuse(refCertName, r)
			continue
		}
		o := owner
		if cert && !ownCertified {
			o = nil // a certificate outranks this member's own uncertified registration
		}
		switch s.apply(*r, o, cert, now.Add(d.cfg.StoreTTL), now) {
		case applied:
			accepted = true
		case notCertOwner:
			refuse(refCertName, r)
		case notOwner:
			refuse(refNotOwner, r)
		case replay:
			refuse(refReplay, r)
		case full:
			refuse(refFull, r)
		}
		d.nstored += len(s.vals) - n
	}
	if accepted {
		// Only a store this member took tells it that somebody else
		// replicates the name: refused stores (anybody can send them)
		// must not silence its replication.
		s.received = now
	}
	if len(s.vals) == 0 {
		delete(d.store, h)
	}
	delete(d.cache, h)
	return out
}

// responsibleLocked reports whether this member may hold h: fewer than K
// of the contacts it knows are closer to h than itself.
func (d *DHT) responsibleLocked(h layer.Hash) bool {
	self := NodeID(d.self)
	closer := 0
	for _, c := range d.tab.closest(h, d.cfg.K) {
		if cmpDist(h, c.id, self) < 0 {
			closer++
		}
	}
	return closer < d.cfg.K
}

// send encodes m and hands it to the transport.
func (d *DHT) send(dst layer.Addr, m *Msg) error {
	b, err := m.Encode(d.codec)
	if err != nil {
		return err
	}
	if err := d.cfg.Env.Send(dst, b); err != nil {
		d.c.sendErrors.Add(1)
		return fmt.Errorf("dir: %s: send %v to %d: %w", d.cfg.Layer, m.Type, dst, err)
	}
	d.c.sent.Add(1)
	return nil
}

// request sends m to dst with a fresh cookie; its answer, or nil after
// RPCTimeout, goes to ch. A failed send is returned and sends no event.
func (d *DHT) request(dst layer.Addr, m *Msg, ch chan<- event) (uint64, error) {
	d.mu.Lock()
	if d.state != stateRunning {
		d.mu.Unlock()
		return 0, d.errClosed("request")
	}
	var cookie uint64
	for cookie == 0 || d.pending[cookie] != nil {
		cookie = d.rng.Uint64()
	}
	m.Cookie = cookie
	p := &pending{dst: dst, ch: ch}
	p.timer = d.cfg.Clock.AfterFunc(d.cfg.RPCTimeout, func() { d.timeout(cookie) })
	d.pending[cookie] = p
	d.mu.Unlock()
	if err := d.send(dst, m); err != nil {
		d.cancelRequest(cookie)
		return 0, err
	}
	return cookie, nil
}

func (d *DHT) timeout(cookie uint64) {
	d.mu.Lock()
	p := d.pending[cookie]
	if p != nil {
		delete(d.pending, cookie)
	}
	d.mu.Unlock()
	if p == nil {
		return
	}
	d.c.timeouts.Add(1)
	select {
	case p.ch <- event{cookie: cookie}:
	default:
	}
}

func (d *DHT) cancelRequest(cookie uint64) {
	d.mu.Lock()
	if p := d.pending[cookie]; p != nil {
		p.timer.Stop()
		delete(d.pending, cookie)
	}
	d.mu.Unlock()
}

// failed records that a did not answer or cannot be reached.
func (d *DHT) failed(a layer.Addr, unreachable bool) {
	d.mu.Lock()
	if d.tab != nil {
		d.tab.failed(a, unreachable)
	}
	d.mu.Unlock()
}

// Entries implements dir.Lister: own registrations (Local) and
// entries held for others.
func (d *DHT) Entries() []dir.Entry {
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []dir.Entry
	for h, as := range d.local {
		out = append(out, dir.Entry{Hash: h, Addrs: slices.Clone(as), Local: true})
	}
	for h, s := range d.store {
		var as []layer.Addr
		for _, r := range s.live(now, nil) {
			as = append(as, r.Addr)
		}
		if len(as) > 0 {
			out = append(out, dir.Entry{Hash: h, Addrs: as})
		}
	}
	slices.SortFunc(out, func(a, b dir.Entry) int {
		if c := cmpDist(layer.Hash{}, a.Hash, b.Hash); c != 0 {
			return c
		}
		if a.Local != b.Local {
			if a.Local {
				return -1
			}
			return 1
		}
		return 0
	})
	return out
}

// MembersChanged implements dir.MembersWatcher: contacts that left
// the layer are dropped, members not yet known are offered to the table,
// and cached answers that may be stale are dropped.
func (d *DHT) MembersChanged(members []layer.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tab == nil {
		return
	}
	for _, a := range d.tab.all() {
		if _, ok := slices.BinarySearch(members, a); !ok {
			d.tab.remove(a)
		}
	}
	joined := false
	for _, a := range members {
		_, known := slices.BinarySearch(d.members, a)
		joined = joined || !known
		d.tab.offer(a)
	}
	d.members = slices.Clone(members)
	// A cached answer may name a member that restarted under a new
	// address: a joining member drops every cached answer (the next
	// Lookup asks the network), so that a restarted member's names are
	// reachable as soon as it is back, not after CacheTTL. An answer
	// naming a member that left is dropped too.
	for h, c := range d.cache {
		if joined || slices.ContainsFunc(c.addrs, func(a layer.Addr) bool {
			_, ok := slices.BinarySearch(members, a)
			return !ok
		}) {
			delete(d.cache, h)
		}
	}
}

var _ dir.StaleWatcher = (*DHT)(nil)

// Stale implements dir.StaleWatcher: a flow to h at a failed, so a
// cached answer for h that names a is dropped (the next Lookup asks the
// network). What this member registered or holds for others is kept:
// those are the records themselves, replaced by their owners.
func (d *DHT) Stale(h layer.Hash, a layer.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.cache[h]; ok && slices.Contains(c.addrs, a) {
		delete(d.cache, h)
		d.c.staleDrops.Add(1)
	}
}

// Counters implements dir.Counters: what the DHT refused.
func (d *DHT) Counters() map[string]uint64 {
	return map[string]uint64{
		"bad_records": d.c.badRecords.Load(), "not_owner": d.c.notOwner.Load(), "replays": d.c.replays.Load(),
		"not_closest": d.c.notClosest.Load(), "refused": d.c.refused.Load(), "malformed": d.c.malformed.Load(),
		"cert_names": d.c.certNames.Load(),
	}
}

// Stats returns the DHT's counters.
func (d *DHT) Stats() Stats {
	s := Stats{
		Sent: d.c.sent.Load(), SendErrors: d.c.sendErrors.Load(), Received: d.c.received.Load(),
		Malformed: d.c.malformed.Load(), Unsolicited: d.c.unsolicited.Load(), Timeouts: d.c.timeouts.Load(),
		Refused: d.c.refused.Load(), Lookups: d.c.lookups.Load(), Hops: d.c.hops.Load(),
		BadRecords: d.c.badRecords.Load(), NotOwner: d.c.notOwner.Load(), Replays: d.c.replays.Load(),
		NotClosest: d.c.notClosest.Load(), CacheHits: d.c.cacheHits.Load(), Joins: d.c.joins.Load(),
		StaleDrops: d.c.staleDrops.Load(), CertNames: d.c.certNames.Load(),
	}
	d.mu.Lock()
	if d.tab != nil {
		s.Contacts = d.tab.n
	}
	s.Stored, s.Cached = d.nstored, len(d.cache)
	for _, as := range d.local {
		s.Local += len(as)
	}
	d.mu.Unlock()
	return s
}
