package dht_test

import (
	"context"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/dir/dirtest"
)

// bootClock is the clock of a board without one: it counts from 1970 at
// boot.
type bootClock struct{ off time.Duration }

func (c bootClock) Now() time.Time { return time.Now().Add(c.off) }
func (c bootClock) AfterFunc(d time.Duration, f func()) dht.Timer {
	return time.AfterFunc(d, f)
}

// TestRestartedOwnerWithoutClock (issue 9): member a registers a name,
// crashes and comes back at the same address with the same key, on a
// clock that starts from 1970 (a board), so that its sequence numbers
// start below its earlier incarnation's. Its first registration looks
// its own records up and signs above them: the holders take the new
// records (no replay refused) and its withdrawal afterwards removes the
// name everywhere. Run once without the lookup: the holders refused the
// new records as replays (7 refusals), keeping the old incarnation's.
func TestRestartedOwnerWithoutClock(t *testing.T) {
	s := newSim(t, 8, dirtest.NetConfig{}, fastCfg())
	a := s.addrs[0]
	h := layer.HashName(layer.SHA3_256, "svc")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.nodes[a].Register(ctx, h, a); err != nil {
		t.Fatal(err)
	}
	s.nodes[a].Stop()
	s.net.Leave(a, false)
	env, err := s.net.Env(a)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	c.Env, c.Layer, c.Runner, c.Signer = env, "sim", layertest.Runner{}, s.keys[a]
	c.Clock = bootClock{off: -time.Since(time.Unix(3600, 0))}
	d, err := dht.New(c)
	if err != nil {
		t.Fatal(err)
	}
	s.net.Attach(a, d)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	s.nodes[a] = d
	waitFor(t, "a to join again", func() bool { return d.Stats().Joins > 0 })
	d.MembersChanged(s.net.Members())

	replays := func() (n uint64) {
		for _, m := range s.addrs {
			n += s.nodes[m].Stats().Replays
		}
		return n
	}
	if err := d.Register(ctx, h, a); err != nil {
		t.Fatal(err)
	}
	if n := replays(); n != 0 {
		t.Fatalf("the restarted member's records refused as replays %d times", n)
	}
	if err := d.Unregister(ctx, h, a); err != nil {
		t.Fatal(err)
	}
	if n := replays(); n != 0 {
		t.Fatalf("the restarted member's withdrawal refused as a replay %d times", n)
	}
	for _, m := range s.addrs[1:] {
		if f, err := s.nodes[m].Find(ctx, h); err == nil {
			t.Fatalf("%d still finds the withdrawn name: %v (%s)", m, f.Addrs, f.Source)
		}
	}
}
