package dht_test

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/unicast/dir/dirtest"
)

// TestScale builds a 1000-member layer, registers a name at each member,
// looks every name up from 10 members, and reports messages, hops and
// memory per member (docs/layers-dir-broadcast.md quotes the figures).
// Skipped with -short; 200 members under the race detector.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 members: skipped with -short")
	}
	for _, tt := range []struct {
		name string
		nc   dirtest.NetConfig
	}{
		{"members", dirtest.NetConfig{}},
		{"bootstrap", dirtest.NetConfig{Bootstrap: 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := 1000
			if raceEnabled {
				n = 200
			}
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			start := time.Now()
			s := newSim(t, n, tt.nc, fastCfg())
			joinMsgs := s.net.Stats().Sent
			joined := time.Since(start)
			s.registerAll(s.addrs)
			regMsgs := s.net.Stats().Sent - joinMsgs
			runtime.GC()
			runtime.ReadMemStats(&m1)
			var contacts, stored int
			for _, d := range s.nodes {
				st := d.Stats()
				contacts += st.Contacts
				stored += st.Stored
			}
			r := rand.New(rand.NewPCG(4, 4))
			before := s.net.Stats().Sent
			st := s.lookupAll(sample(r, s.addrs, 10), s.addrs)
			lookMsgs := s.net.Stats().Sent - before
			t.Logf("%d members (%s): join %v, %.0f messages per join; %.1f messages per registration",
				n, tt.name, joined.Round(time.Millisecond), float64(joinMsgs)/float64(n), float64(regMsgs)/float64(n))
			t.Logf("  %v; %.1f messages per network lookup (requests and answers)",
				st, float64(lookMsgs)/float64(max(st.n-st.local-st.cache, 1)))
			t.Logf("  per member: %.0f contacts, %.1f values held, %.1f KiB heap (DHT and simulator)",
				float64(contacts)/float64(n), float64(stored)/float64(n), float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/float64(n)/1024)
			if st.found != st.n {
				t.Errorf("got %d of %d names found", st.found, st.n)
			}
		})
	}
}
