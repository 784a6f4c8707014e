package dht_test

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/dir/dirtest"
)

// The attack tests of signed directory records (issue: a trusted
// router). Measured against unsigned records: a spoofed Store (TTL 0 for
// member a's address, then the attacker's) made every directory map the
// name "svc" to the attacker. TestSpoofedStore and TestLyingHolder were
// run once with the checks disabled (verified returning every record,
// apply ignoring the owner) and failed there; TestReplayedRecord failed
// before withdrawals were kept as tombstones. TestUnboundRecord failed
// (both subtests) with Config.Bound ignored; TestStoreFlood failed when
// withdrawals were exempt from MaxStored (the holder kept 47 values for
// a MaxStored of 16).

func newKey(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func storeMsg(t testing.TB, h layer.Hash, recs ...dht.Record) []byte {
	t.Helper()
	b, err := (&dht.Msg{Type: dht.MsgStore, Cookie: 1, Key: h[:], Records: recs}).Encode(flow.NewCodec())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSpoofedStore: member a registers "svc"; an attacker (a member
// address of its own, its own key) withdraws a's record and registers
// its own address under "svc" at every member, and tries a record that
// claims a's key with its own signature. Every member still maps "svc"
// to a alone, and the holders counted the refusals.
func TestSpoofedStore(t *testing.T) {
	s := newSim(t, 12, dirtest.NetConfig{}, fastCfg())
	a := s.addrs[0]
	svc := layer.HashName(layer.SHA3_256, "svc")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.nodes[a].Register(ctx, svc, a); err != nil {
		t.Fatal(err)
	}
	const evil layer.Addr = 666
	env, err := s.net.Env(evil)
	if err != nil {
		t.Fatal(err)
	}
	x := newKey(t)
	const far = 3600
	seq := uint64(1) << 62
	withdraw, _ := dht.SignRecord(ctx, x, "sim", svc, a, seq, 0)
	claim, _ := dht.SignRecord(ctx, x, "sim", svc, evil, seq, far)
	forged := claim
	forged.Key = s.keys[a].Public() // a's key, the attacker's signature
	// a's genuine record (as the attacker saw it in an answer), its
	// address changed to the attacker's.
	tampered, _ := dht.SignRecord(ctx, s.keys[a], "sim", svc, a, seq, far)
	tampered.Addr = evil
	for _, m := range s.addrs {
		env.Send(m, storeMsg(t, svc, withdraw))
		env.Send(m, storeMsg(t, svc, claim))
		env.Send(m, storeMsg(t, svc, forged))
		env.Send(m, storeMsg(t, svc, tampered))
	}
	// Every member got the four stores: each refused all of them, as
	// not the owner's (the holders of svc) or as not among the closest
	// (the others), and the forged and tampered ones as bad records.
	waitFor(t, "every store handled", func() bool {
		var notOwner, bad, notClosest uint64
		for _, m := range s.addrs {
			st := s.nodes[m].Stats()
			notOwner, bad, notClosest = notOwner+st.NotOwner, bad+st.BadRecords, notClosest+st.NotClosest
		}
		return notOwner > 0 && bad == uint64(2*len(s.addrs)) && notOwner+notClosest >= uint64(2*len(s.addrs))-2
	})
	for _, m := range s.addrs {
		f, err := s.nodes[m].Find(ctx, svc)
		if err != nil || !slices.Equal(f.Addrs, []layer.Addr{a}) {
			t.Fatalf("svc from %d: %v (%s), %v; want [%d]", m, f.Addrs, f.Source, err, a)
		}
	}
}

// TestReplayedRecord: a's older record, replayed after a newer one, is
// refused by the holders.
func TestReplayedRecord(t *testing.T) {
	s := newSim(t, 4, dirtest.NetConfig{}, fastCfg())
	a := s.addrs[0]
	h := layer.HashName(layer.SHA3_256, "r")
	ctx := context.Background()
	const far = 3600
	oldRec, _ := dht.SignRecord(ctx, s.keys[a], "sim", h, a, 1, far)
	newRec, _ := dht.SignRecord(ctx, s.keys[a], "sim", h, a, 2, 0) // a withdrew it
	env, _ := s.net.Env(667)
	holder := s.addrs[1]
	// One at a time: the network's two delivery goroutines could swap
	// two messages sent together (then the first copy of oldRec would be
	// the replay).
	env.Send(holder, storeMsg(t, h, oldRec))
	waitFor(t, "the first store", func() bool { return s.nodes[holder].Stats().Stored == 1 })
	env.Send(holder, storeMsg(t, h, newRec))
	waitFor(t, "the withdrawal", func() bool { return len(s.nodes[holder].Entries()) == 0 })
	env.Send(holder, storeMsg(t, h, oldRec))
	waitFor(t, "the replay refused", func() bool { return s.nodes[holder].Stats().Replays == 1 })
	if es := s.nodes[holder].Entries(); len(es) != 0 {
		t.Fatalf("holder entries after the replay: %+v", es)
	}
}

// liar is a member whose directory answers every FIND_VALUE with a
// record of the name whose address it changed after signing.
type liar struct {
	env   dir.Env
	mu    sync.Mutex
	rec   dht.Record
	asked atomic.Int32
}

func (l *liar) Handle(src layer.Addr, b []byte) {
	m, err := dht.Decode(flow.NewCodec(), b)
	if err != nil {
		return
	}
	reply := &dht.Msg{Type: dht.MsgNodes, Cookie: m.Cookie, Key: m.Key}
	if m.Type == dht.MsgFindValue {
		l.asked.Add(1)
		l.mu.Lock()
		reply = &dht.Msg{Type: dht.MsgValue, Cookie: m.Cookie, Key: m.Key, Records: []dht.Record{l.rec}}
		l.mu.Unlock()
	} else if m.Type == dht.MsgPing {
		reply = &dht.Msg{Type: dht.MsgPong, Cookie: m.Cookie}
	} else if m.Type == dht.MsgStore {
		reply = &dht.Msg{Type: dht.MsgStored, Cookie: m.Cookie}
	}
	if b, err := reply.Encode(flow.NewCodec()); err == nil {
		l.env.Send(src, b)
	}
}

func (*liar) Start() error                                             { return nil }
func (*liar) Stop()                                                    {}
func (*liar) Register(context.Context, layer.Hash, layer.Addr) error   { return nil }
func (*liar) Unregister(context.Context, layer.Hash, layer.Addr) error { return nil }
func (*liar) Lookup(context.Context, layer.Hash) ([]layer.Addr, error) { return nil, nil }

// TestLyingHolder: a member answers every FIND_VALUE with a's record
// whose address it replaced by its own. Askers refuse the record (the
// signature no longer matches), count it, ask on and find a, for names
// the liar is asked about (K = 2: it is among the closest for some).
func TestLyingHolder(t *testing.T) {
	cfg := fastCfg()
	cfg.K, cfg.Alpha = 2, 1
	s := newSim(t, 6, dirtest.NetConfig{}, cfg)
	const evil layer.Addr = 668
	a := s.addrs[0]
	lyingHolder(t, s, evil, evil, func(ctx context.Context, h layer.Hash) dht.Record {
		rec, _ := dht.SignRecord(ctx, s.keys[a], "sim", h, a, 1, 3600)
		rec.Addr = evil
		return rec
	})
}

// lyingHolder attaches a liar at evil that answers every FIND_VALUE of h
// with lie(h), registers names at the sim's first member until the liar
// is asked, looks each up from the other members, and checks that no
// lookup found wrong, and that the askers counted the liar's records as
// bad.
func lyingHolder(t *testing.T, s *sim, evil, wrong layer.Addr, lie func(context.Context, layer.Hash) dht.Record) {
	t.Helper()
	a := s.addrs[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	env, err := s.net.Env(evil)
	if err != nil {
		t.Fatal(err)
	}
	l := &liar{env: env}
	s.net.Attach(evil, l)
	for _, m := range s.addrs {
		s.nodes[m].MembersChanged(s.net.Members())
	}
	var bad uint64
	for i := 0; i < 40 && l.asked.Load() == 0; i++ {
		h := layer.HashName(layer.SHA3_256, "svc-"+string(rune('a'+i)))
		l.mu.Lock()
		l.rec = lie(ctx, h)
		l.mu.Unlock()
		if err := s.nodes[a].Register(ctx, h, a); err != nil {
			t.Fatal(err)
		}
		for _, m := range s.addrs[1:] {
			f, err := s.nodes[m].Find(ctx, h)
			if slices.Contains(f.Addrs, wrong) {
				t.Fatalf("lookup from %d found the liar's %d: %v", m, wrong, f.Addrs)
			}
			if err != nil && l.asked.Load() == 0 {
				t.Fatalf("lookup from %d: %v", m, err)
			}
		}
	}
	if l.asked.Load() == 0 {
		t.Fatal("the liar was never asked: the test shows nothing")
	}
	for _, m := range s.addrs {
		bad += s.nodes[m].Stats().BadRecords
	}
	if bad == 0 {
		t.Fatal("the liar's records were not counted")
	}
}

// TestUnboundRecord: in a protected layer a member (the attacker, with
// its own key and address) signs records of another member's address
// b. Holders refuse to store them, so a, registering the name after
// the attacker, owns it; askers refuse them in answers and ask on.
func TestUnboundRecord(t *testing.T) {
	t.Run("holder", func(t *testing.T) {
		s := newProtectedSim(t, 8, dirtest.NetConfig{}, fastCfg())
		a, b := s.addrs[0], s.addrs[1]
		h := layer.HashName(layer.SHA3_256, "svc-b")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		const evil layer.Addr = 669
		x := newKey(t)
		s.bind(evil, x.Public()) // a member, with its own address
		env, err := s.net.Env(evil)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := dht.SignRecord(ctx, x, "sim", h, b, 1, 3600)
		for _, m := range s.addrs {
			env.Send(m, storeMsg(t, h, rec))
		}
		handled := func(m layer.Addr) uint64 {
			st := s.nodes[m].Stats()
			return st.BadRecords + st.NotClosest + uint64(st.Stored)
		}
		waitFor(t, "every store handled", func() bool {
			n := 0
			for _, m := range s.addrs {
				if handled(m) > 0 {
					n++
				}
			}
			return n == len(s.addrs)
		})
		if err := s.nodes[a].Register(ctx, h, a); err != nil {
			t.Fatal(err)
		}
		for _, m := range s.addrs {
			f, err := s.nodes[m].Find(ctx, h)
			if err != nil || !slices.Equal(f.Addrs, []layer.Addr{a}) {
				t.Fatalf("svc-b from %d: %v (%s), %v; want [%d]", m, f.Addrs, f.Source, err, a)
			}
		}
		for _, m := range s.addrs {
			if got := s.nodes[m].Stats().BadRecords; got != 1 {
				t.Errorf("member %d counted %d bad records, want 1", m, got)
			}
		}
	})
	t.Run("asker", func(t *testing.T) {
		cfg := fastCfg()
		cfg.K, cfg.Alpha = 2, 1
		s := newProtectedSim(t, 6, dirtest.NetConfig{}, cfg)
		const evil layer.Addr = 670
		x := newKey(t)
		s.bind(evil, x.Public())
		b := s.addrs[1]
		lyingHolder(t, s, evil, b, func(ctx context.Context, h layer.Hash) dht.Record {
			rec, _ := dht.SignRecord(ctx, x, "sim", h, b, 1, 3600)
			return rec
		})
	})
}

// TestStoreFlood: an attacker stores records of 80 new names at a
// holder, half of them withdrawals: the holder keeps MaxStored values,
// counts the rest as refused, and logs the refusals once.
func TestStoreFlood(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	cfg := fastCfg()
	cfg.MaxStored = 16
	cfg.Log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) {
		mu.Lock()
		lines = append(lines, string(p))
		mu.Unlock()
	}), nil))
	s := newSim(t, 4, dirtest.NetConfig{}, cfg)
	holder := s.addrs[1]
	ctx := context.Background()
	const evil layer.Addr = 671
	env, err := s.net.Env(evil)
	if err != nil {
		t.Fatal(err)
	}
	x := newKey(t)
	const n = 80
	for i := range n {
		h := layer.HashName(layer.SHA3_256, fmt.Sprintf("flood-%d", i))
		ttl := uint32(3600)
		if i%2 == 0 {
			ttl = 0
		}
		rec, _ := dht.SignRecord(ctx, x, "sim", h, layer.Addr(5000+i), 1, ttl)
		env.Send(holder, storeMsg(t, h, rec))
	}
	waitFor(t, "every store handled", func() bool {
		st := s.nodes[holder].Stats()
		return st.Stored+int(st.Refused) == n
	})
	if st := s.nodes[holder].Stats(); st.Stored != cfg.MaxStored || st.Refused != n-uint64(cfg.MaxStored) {
		t.Errorf("got %d stored, %d refused; want %d, %d", st.Stored, st.Refused, cfg.MaxStored, n-cfg.MaxStored)
	}
	mu.Lock()
	defer mu.Unlock()
	logged := 0
	for _, l := range lines {
		if strings.Contains(l, "over the store's limits") {
			logged++
		}
	}
	if logged != 1 {
		t.Errorf("got %d log lines of %d refusals, want 1 (at most one per %v): %q", logged, n-cfg.MaxStored, dht.RefusalLogEvery, lines)
	}
}

// writerFunc is an io.Writer calling f with each write (a log record).
type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
