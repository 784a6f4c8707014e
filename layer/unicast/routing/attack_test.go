package routing_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"math"
	"slices"
	"testing"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/addr"
	"github.com/ouronet/ouro/layer/unicast/pff"
	"github.com/ouronet/ouro/layer/unicast/routing"
	"github.com/ouronet/ouro/layer/unicast/routing/routingtest"
)

// The attack tests of signed link-state updates (issue: a trusted
// router). Measured against the unsigned LSUs: one forged LSU claiming
// member a's origin with sequence number 2^64−1 cut a off for about 80 s;
// 20,000 made-up origins were all installed. Each test below but
// TestReplayedLSU was run once with the checks it relies on disabled
// (authentic returning true, no key pinning, no MaxOrigins) and failed
// there; replays are refused by sequence numbers, which predate the
// signatures, and TestReplayedLSU shows they still are.

func attacker(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func signAs(t testing.TB, id identity.Signer, l routing.LSU) routing.LSU {
	t.Helper()
	if err := routing.Sign(context.Background(), id, routingtest.Layer, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func send(t testing.TB, r *routing.Router, from layer.Addr, lsus ...routing.LSU) {
	t.Helper()
	msg, err := routing.Marshal(routing.Msg{Version: routing.Version, LSUs: lsus})
	if err != nil {
		t.Fatal(err)
	}
	r.HandleMessage(from, msg)
}

// TestForgedLSU: node 3 of the line 1-2-3 is the attacker's neighbour
// target; the attacker forges node 1's LSU with the highest sequence
// number and no links, signed with its own key, and with node 1's key
// (which it cannot sign with). Neither is installed; routes stay.
func TestForgedLSU(t *testing.T) {
	net := newLineNet(t, 3)
	net.Converge()
	r := net.Node(2).Router
	before := r.Database()
	x := attacker(t)
	forged := routing.LSU{Origin: 1, Seq: math.MaxUint64}
	send(t, r, 3, signAs(t, x, forged)) // signed, by the wrong key
	k1, _ := routingtest.Key(1)
	bad := signAs(t, x, forged)
	bad.Key = k1.Public() // node 1's key, the attacker's signature
	send(t, r, 3, bad)
	tampered := signed(t, routing.LSU{Origin: 1, Seq: before[0].Seq + 1, Links: []routing.Link{{Neighbour: 2, Metric: 1}}})
	tampered.Links[0].Metric = 1000 // changed after signing
	send(t, r, 3, tampered)
	net.Converge()
	s := r.Stats()
	if s.KeyMismatch != 1 || s.BadSig != 2 {
		t.Errorf("stats %+v: want 1 key mismatch, 2 bad signatures", s)
	}
	if got := r.Database(); !slices.EqualFunc(got, before, func(a, b routing.LSU) bool { return a.Origin == b.Origin && a.Seq == b.Seq }) {
		t.Errorf("database changed: %v → %v", before, got)
	}
	if _, ok := routeTo(t, r, 1); !ok {
		t.Error("node 2 lost its route to node 1")
	}
}

// TestLSUBoundToAddress: in a protected layer (Bound: the origin must be
// the address its key derives), a member with a valid key cannot speak
// for another address, not even one nobody holds yet.
func TestLSUBoundToAddress(t *testing.T) {
	net := routingtest.NewNet(pff.Alternate)
	net.Config = func(c *routing.Config) {
		c.Bound = func(o layer.Addr, k ed25519.PublicKey) bool { return o == addr.FromKey(routingtest.Layer, 8, k) }
	}
	x := attacker(t)
	self := addr.FromKey(routingtest.Layer, 8, x.Public())
	n1, err := net.Add(1)
	if err != nil {
		t.Fatal(err)
	}
	r := n1.Router
	send(t, r, 2, signAs(t, x, routing.LSU{Origin: 77, Seq: 1}))
	if s := r.Stats(); s.Unbound != 1 || s.Entries != 1 {
		t.Fatalf("an LSU for an address not the key's: stats %+v", s)
	}
	send(t, r, 2, signAs(t, x, routing.LSU{Origin: self, Seq: 1}))
	if s := r.Stats(); s.Entries != 2 {
		t.Fatalf("the key's own address was refused: stats %+v", s)
	}
}

// TestReplayedLSU: an older, genuinely signed LSU is stale once a newer
// one is installed, and changes nothing.
func TestReplayedLSU(t *testing.T) {
	net := newLineNet(t, 3)
	net.Converge()
	r := net.Node(2).Router
	seq := r.Database()[0].Seq
	old := signed(t, routing.LSU{Origin: 1, Seq: seq + 1})
	cur := signed(t, routing.LSU{Origin: 1, Seq: seq + 2, Links: []routing.Link{{Neighbour: 2, Metric: 1}}})
	send(t, r, 1, cur)
	stale := r.Stats().Stale
	send(t, r, 3, old)
	if got := r.Database()[0]; got.Seq != seq+2 || r.Stats().Stale != stale+1 {
		t.Fatalf("after the replay: seq %d (want %d), stale %d (want %d)", got.Seq, seq+2, r.Stats().Stale, stale+1)
	}
}

// TestOwnOriginForged: an LSU for our own address with a higher sequence
// number, signed by another key, does not make us jump our sequence (an
// honest one from our earlier incarnation, with our key, does: see
// TestReceiveSequenceNumbers).
func TestOwnOriginForged(t *testing.T) {
	net := newLineNet(t, 2)
	net.Converge()
	r := net.Node(2).Router
	own := r.Database()[1].Seq
	send(t, r, 1, signAs(t, attacker(t), routing.LSU{Origin: 2, Seq: math.MaxUint64 - 1}))
	if got := r.Database()[1].Seq; got != own || r.Stats().KeyMismatch != 1 {
		t.Fatalf("own seq %d → %d, key mismatches %d", own, got, r.Stats().KeyMismatch)
	}
}

// TestManyOrigins: made-up origins, each validly self-signed (an open
// layer binds no address to a key), stop at MaxOrigins.
func TestManyOrigins(t *testing.T) {
	const max = 300
	net := routingtest.NewNet(pff.Alternate)
	net.Config = func(c *routing.Config) { c.MaxOrigins = max }
	n1, err := net.Add(1)
	if err != nil {
		t.Fatal(err)
	}
	x := attacker(t)
	var lsus []routing.LSU
	for i := range 2 * max {
		lsus = append(lsus, signAs(t, x, routing.LSU{Origin: layer.Addr(1000 + i), Seq: 1}))
		if len(lsus) == routing.MaxLSUs/4 {
			send(t, n1.Router, 2, lsus...)
			lsus = lsus[:0]
		}
	}
	send(t, n1.Router, 2, lsus...)
	if s := n1.Router.Stats(); s.Entries != max || s.TooMany != 2*max-(max-1) {
		t.Fatalf("stats %+v: want %d entries, %d refused", s, max, 2*max-(max-1))
	}
}

// TestForgedInBatch: one tampered LSU among valid ones in one message is
// found by the batch check and dropped; the others are installed.
func TestForgedInBatch(t *testing.T) {
	net := routingtest.NewNet(pff.Alternate)
	n1, err := net.Add(1)
	if err != nil {
		t.Fatal(err)
	}
	var lsus []routing.LSU
	for i := range 6 {
		lsus = append(lsus, signed(t, routing.LSU{Origin: layer.Addr(100 + i), Seq: 1, Links: []routing.Link{{Neighbour: 1, Metric: 1}}}))
	}
	lsus[3].Links[0].Metric = 9 // after signing
	send(t, n1.Router, 2, lsus...)
	if s := n1.Router.Stats(); s.BadSig != 1 || s.Entries != 1+5 {
		t.Fatalf("stats %+v: want 1 bad signature, 5 new entries", s)
	}
	if k := n1.Router.KeyOf(103); k != nil {
		t.Fatal("the tampered LSU was installed")
	}
}
