package unicast_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// TestStaleAnswerDroppedOnFailedAlloc: a name moves from one member to
// another (n3 unregisters it, n1 registers it). n0 had allocated a flow
// to it at n3, so its directory caches n3 as the answer (for 30 s). The
// next allocation fails at n3 (it no longer serves the name), and the
// flow allocator's failure drops the cached answer: the one after asks
// the directory afresh and reaches n1 at once, not after the cache time.
// Issue 18: "a stale directory answer is dropped as soon as the flow to
// it fails". Without the drop, every retry within the cache time fails.
func TestStaleAnswerDroppedOnFailedAlloc(t *testing.T) {
	n := unicasttest.New(t)
	n.Template.LayerConfig.Dir = "dht"
	// K = 1: a name's record is held by the one member closest to its
	// hash; a member that is not that one answers lookups from its cache.
	policy := dht.Policy(dht.Config{K: 1, Alpha: 1, RPCTimeout: 200 * time.Millisecond})
	var mu sync.Mutex
	dhts := map[layer.Addr]*dht.DHT{} // each member's directory, by address
	n.Template.Directories = map[string]dir.Builder{"dht": func(cfg dir.Config) (dir.Directory, error) {
		d, err := policy(cfg)
		if err == nil {
			mu.Lock()
			dhts[cfg.Env.Self()] = d.(*dht.DHT)
			mu.Unlock()
		}
		return d, err
	}}
	n.Build(line(4), nil)
	n.WaitOperational(20 * time.Second)
	a, from, to := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(3)), n.Node(unicasttest.NodeName(1))
	members := []layer.Addr{a.IPCP.Addr(), from.IPCP.Addr(), to.IPCP.Addr(), n.Node(unicasttest.NodeName(2)).IPCP.Addr()}
	// a name whose record n0 does not hold, so that n0's answer is cached
	name := ""
	for i := 0; name == ""; i++ {
		cand := fmt.Sprintf("moving-%d", i)
		h := layer.HashName(layer.SHA3_256, cand)
		closest := members[0]
		for _, m := range members[1:] {
			if closer(h, dht.NodeID(m), dht.NodeID(closest)) {
				closest = m
			}
		}
		if closest != a.IPCP.Addr() {
			name = cand
		}
	}
	alloc := func(ctx context.Context) error {
		p, err := a.Alloc(ctx, name, flow.BestEffort())
		if err == nil {
			p.Close()
		}
		return err
	}
	mu.Lock()
	d := dhts[a.IPCP.Addr()]
	mu.Unlock()
	h := layer.HashName(layer.SHA3_256, name)
	accept := func(at *unicasttest.Node) {
		t.Helper()
		acc, err := at.Accept(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		acc.Port.Close()
	}
	from.Register(name)
	// n0's answer may be dropped for another reason before the
	// allocation that should meet it (a member it learns of late drops
	// every cached answer, a Store sent to it while the DHT's tables
	// fill drops that name's): then that allocation finds n1 at once,
	// and the name moves back to n3 for another try.
	for attempt := 1; ; attempt++ {
		// After a move back the directory may not name n3 yet: ask
		// again while it says "not found".
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if err = alloc(ctxT(t, 5*time.Second)); err == nil || !errors.Is(err, flow.ErrNotFound) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("alloc %s at n3: %v", name, err)
		}
		accept(from)
		// n0's answer is the cached one naming n3 (a membership change
		// in between would have dropped it: asked again until it is).
		n.WaitFor(5*time.Second, "n0's cached answer", func() bool {
			f, err := d.Find(context.Background(), h)
			return err == nil && f.Source == "cache" && slices.Equal(f.Addrs, []layer.Addr{from.IPCP.Addr()})
		})
		stale := d.Stats().StaleDrops
		// The name moves.
		if err := from.IPCP.Unregister(ctxT(t, 5*time.Second), name); err != nil {
			t.Fatal(err)
		}
		to.Register(name)
		// The cached answer still says n3: this allocation fails there.
		err = alloc(ctxT(t, 5*time.Second))
		if err == nil {
			accept(to)
			if attempt == 3 {
				t.Fatalf("alloc %s right after it moved reached n1 in 3 tries of 3: n0's cached answer was gone each time", name)
			}
			t.Logf("try %d: n0's cached answer was dropped before the allocation (it reached n1 at once; stale drops %d); the name moves back to n3", attempt, d.Stats().StaleDrops-stale)
			if err := to.IPCP.Unregister(ctxT(t, 5*time.Second), name); err != nil {
				t.Fatal(err)
			}
			from.Register(name)
			continue
		}
		if !errors.Is(err, flow.ErrNotFound) {
			t.Fatalf("alloc %s right after it moved: %v, want n3's not found (the cached answer)", name, err)
		}
		if got := d.Stats().StaleDrops - stale; got != 1 {
			t.Fatalf("n0's directory dropped %d stale answers, want 1", got)
		}
		break
	}
	// The retry looks the name up afresh and reaches n1.
	if err := alloc(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("alloc %s after a failed allocation: %v (the stale cached answer was not dropped)", name, err)
	}
	accept(to)
}

// closer reports whether id a is closer to target than id b (XOR
// distance, as the DHT measures it).
func closer(target, a, b layer.Hash) bool {
	for i := range target {
		if x, y := a[i]^target[i], b[i]^target[i]; x != y {
			return x < y
		}
	}
	return false
}
