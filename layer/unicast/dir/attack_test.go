package dir_test

import (
	"context"
	crand "crypto/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dir/dirtest"
)

// The attack tests of signed directory records (issue: a trusted
// router). Measured against unsigned records: a spoofed Store (TTL 0 for
// member a's address, then the attacker's) made every directory map the
// name "svc" to the attacker. TestSpoofedStore and TestLyingHolder were
// run once with the checks disabled (verified returning every record,
// apply ignoring the owner) and failed there; TestReplayedRecord failed
// before withdrawals were kept as tombstones.

func newKey(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func storeMsg(t testing.TB, h layer.Hash, recs ...dir.Record) []byte {
	t.Helper()
	b, err := (&dir.Msg{Type: dir.MsgStore, Cookie: 1, Key: h[:], Records: recs}).Encode(flow.NewCodec())
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
	withdraw, _ := dir.SignRecord(ctx, x, "sim", svc, a, seq, 0)
	claim, _ := dir.SignRecord(ctx, x, "sim", svc, evil, seq, far)
	forged := claim
	forged.Key = s.keys[a].Public() // a's key, the attacker's signature
	for _, m := range s.addrs {
		env.Send(m, storeMsg(t, svc, withdraw))
		env.Send(m, storeMsg(t, svc, claim))
		env.Send(m, storeMsg(t, svc, forged))
	}
	// Every member got the three stores: each refused all of them, as
	// not the owner's (the holders of svc) or as not responsible (the
	// others), and the forged one as a bad record.
	waitFor(t, "every store handled", func() bool {
		var notOwner, bad, refused uint64
		for _, m := range s.addrs {
			st := s.nodes[m].Stats()
			notOwner, bad, refused = notOwner+st.NotOwner, bad+st.BadRecords, refused+st.Refused
		}
		return notOwner > 0 && bad == uint64(len(s.addrs)) && notOwner+refused >= uint64(2*len(s.addrs))-2
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
	oldRec, _ := dir.SignRecord(ctx, s.keys[a], "sim", h, a, 1, far)
	newRec, _ := dir.SignRecord(ctx, s.keys[a], "sim", h, a, 2, 0) // a withdrew it
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
	env   unicast.DirEnv
	mu    sync.Mutex
	rec   dir.Record
	asked atomic.Int32
}

func (l *liar) Handle(src layer.Addr, b []byte) {
	m, err := dir.Decode(flow.NewCodec(), b)
	if err != nil {
		return
	}
	reply := &dir.Msg{Type: dir.MsgNodes, Cookie: m.Cookie, Key: m.Key}
	if m.Type == dir.MsgFindValue {
		l.asked.Add(1)
		l.mu.Lock()
		reply = &dir.Msg{Type: dir.MsgValue, Cookie: m.Cookie, Key: m.Key, Records: []dir.Record{l.rec}}
		l.mu.Unlock()
	} else if m.Type == dir.MsgPing {
		reply = &dir.Msg{Type: dir.MsgPong, Cookie: m.Cookie}
	} else if m.Type == dir.MsgStore {
		reply = &dir.Msg{Type: dir.MsgStored, Cookie: m.Cookie}
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
	a := s.addrs[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const evil layer.Addr = 668
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
		rec, _ := dir.SignRecord(ctx, s.keys[a], "sim", h, a, 1, 3600)
		rec.Addr = evil
		l.mu.Lock()
		l.rec = rec
		l.mu.Unlock()
		if err := s.nodes[a].Register(ctx, h, a); err != nil {
			t.Fatal(err)
		}
		for _, m := range s.addrs[1:] {
			f, err := s.nodes[m].Find(ctx, h)
			if slices.Contains(f.Addrs, evil) {
				t.Fatalf("lookup from %d found the liar: %v", m, f.Addrs)
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
