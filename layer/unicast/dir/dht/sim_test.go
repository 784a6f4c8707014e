package dht_test

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/dir/dirtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sim is a layer of DHT members on a dirtest.Network.
type sim struct {
	t     testing.TB
	net   *dirtest.Network
	cfg   dht.Config
	nodes map[layer.Addr]*dht.DHT
	keys  map[layer.Addr]*identity.Identity
	addrs []layer.Addr // in join order

	// protected: a member's key may speak only for its own address,
	// as addr.FromKey binds them in a protected layer (Config.Bound).
	protected bool
	boundMu   sync.Mutex
	boundKeys map[layer.Addr]ed25519.PublicKey

	names func(layer.Addr, *identity.Identity) *dht.NamesPolicy // each member's names policy; nil: none
}

// newSim starts n members, one at a time, each after the previous one
// joined, with addresses 1000+i.
func newSim(t testing.TB, n int, nc dirtest.NetConfig, cfg dht.Config) *sim {
	t.Helper()
	return startSim(t, n, nc, cfg, false)
}

// newProtectedSim is newSim with Config.Bound binding each member's
// address to its key alone (a protected layer).
func newProtectedSim(t testing.TB, n int, nc dirtest.NetConfig, cfg dht.Config) *sim {
	t.Helper()
	return startSim(t, n, nc, cfg, true)
}

func startSim(t testing.TB, n int, nc dirtest.NetConfig, cfg dht.Config, protected bool) *sim {
	t.Helper()
	return startSimNames(t, n, nc, cfg, protected, nil)
}

// startSimNames is startSim with names(a, key) the names policy of the
// member at a (nil: none).
func startSimNames(t testing.TB, n int, nc dirtest.NetConfig, cfg dht.Config, protected bool, names func(layer.Addr, *identity.Identity) *dht.NamesPolicy) *sim {
	t.Helper()
	s := &sim{t: t, net: dirtest.NewNetwork(nc), cfg: cfg, nodes: map[layer.Addr]*dht.DHT{}, keys: map[layer.Addr]*identity.Identity{},
		protected: protected, boundKeys: map[layer.Addr]ed25519.PublicKey{}, names: names}
	t.Cleanup(func() {
		for _, d := range s.nodes {
			d.Stop()
		}
		s.net.Close()
	})
	for i := range n {
		s.add(layer.Addr(1000 + i))
	}
	return s
}

func (s *sim) add(a layer.Addr) *dht.DHT {
	s.t.Helper()
	env, err := s.net.Env(a)
	if err != nil {
		s.t.Fatal(err)
	}
	c := s.cfg
	c.Env, c.Layer, c.Runner = env, "sim", layertest.Runner{}
	id, err := identity.Generate(crand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	c.Signer = id
	s.keys[a] = id
	if s.names != nil {
		c.Names = s.names(a, id)
	}
	if s.protected {
		s.bind(a, id.Public())
		c.Bound = s.bound
	}
	d, err := dht.New(c)
	if err != nil {
		s.t.Fatal(err)
	}
	s.net.Attach(a, d)
	if err := d.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.nodes[a] = d
	s.addrs = append(s.addrs, a)
	waitFor(s.t, fmt.Sprintf("%d to join", a), func() bool { return d.Stats().Joins > 0 })
	return d
}

// bind makes k the key of address a in a protected sim.
func (s *sim) bind(a layer.Addr, k ed25519.PublicKey) {
	s.boundMu.Lock()
	s.boundKeys[a] = k
	s.boundMu.Unlock()
}

// bound is a protected sim's Config.Bound: k is a's key.
func (s *sim) bound(a layer.Addr, k ed25519.PublicKey) bool {
	s.boundMu.Lock()
	defer s.boundMu.Unlock()
	return s.boundKeys[a].Equal(k)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func nameHash(i int) layer.Hash { return layer.HashName(layer.SHA3_256, fmt.Sprintf("name-%d", i)) }

// registerAll registers name-i at the i-th member, 8 at a time.
func (s *sim) registerAll(addrs []layer.Addr) {
	s.t.Helper()
	parallel(len(addrs), 8, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.nodes[addrs[i]].Register(ctx, nameHash(int(addrs[i])), addrs[i]); err != nil {
			s.t.Errorf("register at %d: %v", addrs[i], err)
		}
	})
}

func parallel(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

// lookupStats are the figures of a batch of network lookups.
type lookupStats struct {
	mu                        sync.Mutex
	n, found, hops, maxHops   int
	msgs, local, cache, wrong int
}

func (l *lookupStats) String() string {
	if l.n == 0 {
		return "no lookups"
	}
	net := max(l.n-l.local-l.cache, 1)
	return fmt.Sprintf("%d lookups, %d found (%d local, %d cached), hops mean %.2f max %d, requests per network lookup %.1f",
		l.n, l.found, l.local, l.cache, float64(l.hops)/float64(net), l.maxHops, float64(l.msgs)/float64(net))
}

// lookupAll looks every name of targets up from each of from, 8 at a
// time, and records the figures.
func (s *sim) lookupAll(from, targets []layer.Addr) *lookupStats {
	st := &lookupStats{}
	type job struct{ from, target layer.Addr }
	var jobs []job
	for _, f := range from {
		for _, tg := range targets {
			jobs = append(jobs, job{f, tg})
		}
	}
	parallel(len(jobs), 8, func(i int) {
		j := jobs[i]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f, err := s.nodes[j.from].Find(ctx, nameHash(int(j.target)))
		st.mu.Lock()
		defer st.mu.Unlock()
		st.n++
		if err != nil {
			return
		}
		if !slices.Contains(f.Addrs, j.target) {
			st.wrong++
			return
		}
		st.found++
		switch f.Source {
		case "local":
			st.local++
		case "cache":
			st.cache++
		default:
			st.hops += f.Hops
			st.maxHops = max(st.maxHops, f.Hops)
			st.msgs += f.Msgs
		}
	})
	return st
}

func sample(r *rand.Rand, addrs []layer.Addr, n int) []layer.Addr {
	p := slices.Clone(addrs)
	r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	return p[:min(n, len(p))]
}

func fastCfg() dht.Config {
	return dht.Config{RPCTimeout: 200 * time.Millisecond, CacheTTL: time.Nanosecond}
}

// TestFindEverywhere registers one name at each of 100 members and looks
// every name up from a sample of members: every lookup finds it.
func TestFindEverywhere(t *testing.T) {
	for _, tt := range []struct {
		name string
		nc   dirtest.NetConfig
	}{
		{"members", dirtest.NetConfig{}},               // the table seeded from routing's member list
		{"bootstrap", dirtest.NetConfig{Bootstrap: 1}}, // a classic join through one known member
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, 100, tt.nc, fastCfg())
			s.registerAll(s.addrs)
			r := rand.New(rand.NewPCG(1, 1))
			st := s.lookupAll(sample(r, s.addrs, 20), s.addrs)
			t.Logf("100 members, %s: %v; network %+v", tt.name, st, s.net.Stats())
			if st.found != st.n {
				t.Errorf("got %d of %d names found (%d wrong)", st.found, st.n, st.wrong)
			}
		})
	}
}

// TestLoss loses 5% of the messages: lookups still find every name (the
// K-fold replication and the Alpha parallel requests absorb the loss).
func TestLoss(t *testing.T) {
	cfg := fastCfg()
	cfg.RPCTimeout = 50 * time.Millisecond
	s := newSim(t, 100, dirtest.NetConfig{Loss: 0.05, Seed: 7}, cfg)
	s.registerAll(s.addrs)
	r := rand.New(rand.NewPCG(2, 2))
	st := s.lookupAll(sample(r, s.addrs, 4), s.addrs)
	t.Logf("5%% loss: %v; network %+v", st, s.net.Stats())
	if st.found != st.n {
		t.Errorf("got %d of %d names found", st.found, st.n)
	}
}

// TestChurn lets a quarter of 200 members vanish silently after they
// registered: the names of the survivors are still found (replicas),
// lookups pay timeouts for the dead contacts, and routing's news of the
// departures (MembersChanged) purges the tables.
func TestChurn(t *testing.T) {
	s := newSim(t, 200, dirtest.NetConfig{}, fastCfg())
	s.registerAll(s.addrs)
	r := rand.New(rand.NewPCG(3, 3))
	leave := sample(r, s.addrs, 50)
	var alive []layer.Addr
	for _, a := range s.addrs {
		if !slices.Contains(leave, a) {
			alive = append(alive, a)
		}
	}
	for _, a := range leave {
		s.net.Leave(a, true)
	}
	st := s.lookupAll(sample(r, alive, 10), alive)
	t.Logf("after 50 of 200 left silently: %v", st)
	if st.found != st.n {
		t.Errorf("got %d of %d names found", st.found, st.n)
	}
	members := s.net.Members()
	for _, a := range alive {
		s.nodes[a].MembersChanged(members)
	}
	st = s.lookupAll(sample(r, alive, 10), alive)
	t.Logf("after MembersChanged: %v", st)
	if st.found != st.n {
		t.Errorf("got %d of %d names found", st.found, st.n)
	}
	for _, a := range leave {
		s.nodes[a].Stop()
		delete(s.nodes, a)
	}
}

// TestMaintenance drives an hour and a half of a 30-member layer on a fake
// clock: own registrations are republished and survive their TTL, a
// stopped member's registration expires everywhere, the cache expires,
// and bucket refreshes run.
func TestMaintenance(t *testing.T) {
	clock := dirtest.NewClock(time.Unix(1e9, 0))
	cfg := dht.Config{Clock: clock, StoreTTL: 30 * time.Minute, Refresh: 10 * time.Minute, CacheTTL: time.Minute, Tick: time.Minute}
	s := newSim(t, 30, dirtest.NetConfig{}, cfg)
	s.registerAll(s.addrs)
	q := s.nodes[s.addrs[0]]
	ctx := context.Background()
	gone := s.addrs[29]
	if f, err := q.Find(ctx, nameHash(int(gone))); err != nil || f.Source != "network" {
		t.Fatalf("first lookup: got %+v, %v, want a network answer", f, err)
	}
	if f, err := q.Find(ctx, nameHash(int(gone))); err != nil || f.Source != "cache" {
		t.Fatalf("second lookup: got %+v, %v, want a cached answer", f, err)
	}
	s.nodes[gone].Stop()     // it no longer republishes; its entries expire
	s.net.Leave(gone, false) // and routing knows (no timeouts: the fake clock only moves here)
	before := s.net.Stats().Sent
	for range 90 { // minutes
		clock.Advance(time.Minute)
		for _, a := range s.addrs[:29] {
			s.nodes[a].Maintain(ctx)
		}
	}
	t.Logf("90 minutes of maintenance in 29 members: %d messages", s.net.Stats().Sent-before)
	for _, a := range s.addrs[1:29] {
		f, err := q.Find(ctx, nameHash(int(a)))
		if err != nil || !slices.Contains(f.Addrs, a) {
			t.Errorf("name of %d after 3 TTLs: got %+v, %v", a, f, err)
		}
	}
	if f, err := q.Find(ctx, nameHash(int(gone))); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("name of the stopped member: got %+v, %v, want ErrNotFound", f, err)
	}
	st := s.nodes[s.addrs[5]].Stats()
	if st.Lookups < 10 {
		t.Errorf("got %d lookups in a member after 90 minutes, want refreshes and republications", st.Lookups)
	}
	delete(s.nodes, gone)
}

// TestUnregister withdraws a registration from the replicas.
func TestUnregister(t *testing.T) {
	s := newSim(t, 20, dirtest.NetConfig{}, fastCfg())
	ctx := context.Background()
	a, q := s.addrs[3], s.nodes[s.addrs[10]]
	h := nameHash(1)
	if err := s.nodes[a].Register(ctx, h, a); err != nil {
		t.Fatal(err)
	}
	if err := s.nodes[a].Register(ctx, h, a); err != nil {
		t.Errorf("second register: got %v, want nil", err)
	}
	if got, err := q.Lookup(ctx, h); err != nil || !slices.Equal(got, []layer.Addr{a}) {
		t.Fatalf("got %v, %v, want [%d]", got, err, a)
	}
	if err := s.nodes[a].Unregister(ctx, h, a); err != nil {
		t.Fatal(err)
	}
	if got, err := q.Lookup(ctx, h); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("after unregister: got %v, %v, want ErrNotFound", got, err)
	}
	if err := s.nodes[a].Unregister(ctx, h, a); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("unregister twice: got %v, want ErrNotFound", err)
	}
	entries := s.nodes[a].Entries()
	if len(entries) != 0 {
		t.Errorf("got entries %+v, want none", entries)
	}
}

// TestLocalFirst: own registrations are answered without the network.
func TestLocalFirst(t *testing.T) {
	s := newSim(t, 3, dirtest.NetConfig{}, fastCfg())
	d, a := s.nodes[s.addrs[0]], s.addrs[0]
	ctx := context.Background()
	if err := d.Register(ctx, nameHash(1), a); err != nil {
		t.Fatal(err)
	}
	// Not by all the messages the node sends: it also answers the other
	// members' requests meanwhile (a fresh-clone make test once counted
	// one such answer as the Find's).
	lookups := d.Stats().Lookups
	f, err := d.Find(ctx, nameHash(1))
	if err != nil || f.Source != "local" || f.Msgs != 0 || d.Stats().Lookups != lookups {
		t.Errorf("got %+v, %v, %d network lookups, want a local answer", f, err, d.Stats().Lookups-lookups)
	}
	if es := d.Entries(); len(es) != 1 || !es[0].Local {
		t.Errorf("got entries %+v, want one local", es)
	}
}

// TestDeadlines: a lookup whose requests vanish ends with ErrTimeout at
// its context's deadline, and with ErrClosed when the DHT stops.
func TestDeadlines(t *testing.T) {
	s := newSim(t, 2, dirtest.NetConfig{}, dht.Config{RPCTimeout: time.Hour})
	d := s.nodes[s.addrs[0]]
	s.net.Leave(s.addrs[1], true)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d.Lookup(ctx, nameHash(9)); !errors.Is(err, flow.ErrTimeout) {
		t.Errorf("got %v, want ErrTimeout", err)
	}
	errc := make(chan error)
	go func() {
		_, err := d.Lookup(context.Background(), nameHash(8))
		errc <- err
	}()
	waitFor(t, "the lookup's request", func() bool { return d.Stats().Sent >= 2 })
	d.Stop()
	if err := <-errc; !errors.Is(err, flow.ErrClosed) {
		t.Errorf("lookup at Stop: got %v, want ErrClosed", err)
	}
	if _, err := d.Lookup(context.Background(), nameHash(8)); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("lookup after Stop: got %v, want ErrClosed", err)
	}
}

func TestConfig(t *testing.T) {
	if _, err := dht.New(dht.Config{}); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("no env: got %v, want ErrInvalid", err)
	}
	net := dirtest.NewNetwork(dirtest.NetConfig{})
	defer net.Close()
	env, _ := net.Env(1)
	if _, err := dht.New(dht.Config{Env: env}); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("no runner: got %v, want ErrInvalid", err)
	}
	if _, err := dht.New(dht.Config{Env: env, Runner: layertest.Runner{}}); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("no signer: got %v, want ErrInvalid", err)
	}
	id, err := identity.Generate(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dht.New(dht.Config{Env: env, K: 4, Alpha: 5, Runner: layertest.Runner{}, Signer: id}); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("alpha > K: got %v, want ErrInvalid", err)
	}
	d, err := dht.New(dht.Config{Env: env, Runner: layertest.Runner{}, Signer: id})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Register(context.Background(), nameHash(1), 1); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("register before start: got %v, want ErrInvalid", err)
	}
	d.Stop()
}

// TestMalformed: garbage is counted and dropped.
func TestMalformed(t *testing.T) {
	s := newSim(t, 1, dirtest.NetConfig{}, fastCfg())
	d := s.nodes[s.addrs[0]]
	d.Handle(5, []byte{0xff, 0x00})
	d.Handle(5, nil)
	if got := d.Stats().Malformed; got != 2 {
		t.Errorf("got %d malformed, want 2", got)
	}
}
