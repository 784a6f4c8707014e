package carrier

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
)

// TestSeenSetSurvivesRestart: a copy of a bundle that B took, put in B's
// in after B restarted, is refused as a replay when B keeps its seen-set
// in a state directory; without one, the restarted B accepts it again and
// delivers its SDUs a second time (the case the state directory is for:
// this half is the test's proof of power).
func TestSeenSetSurvivesRestart(t *testing.T) {
	for _, keep := range []bool{true, false} {
		name := map[bool]string{true: "state", false: "memory only"}[keep]
		t.Run(name, func(t *testing.T) {
			state := t.TempDir()
			a, b := sites(t, func(c *Config) {
				if keep && c.Name == "b.carrier" {
					c.State = state
				}
			})
			dst, data, _ := takeOne(t, a, b)

			// B restarts: a new IPCP with the same configuration.
			b.p.Stop()
			cfg := b.p.cfg
			up := ipcptest.NewUpcalls(16)
			p, err := New(cfg, up)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Stop)
			if err := p.Register(t.Context(), "files"); err != nil {
				t.Fatal(err)
			}
			if err := writeAtomic(b.in, filepath.Base(dst), data); err != nil { // never half a file to the scan
				t.Fatal(err)
			}
			waitGone(t, dst)
			got := p.Bundles()
			if keep {
				if got.Replayed != 1 || got.BundlesIn != 0 || got.Seen != 1 {
					t.Fatalf("restarted with its state: %+v, want the copy refused as a replay", got)
				}
				return
			}
			if got.BundlesIn != 1 {
				t.Fatalf("restarted without state: %+v, want the copy taken again", got)
			}
			select {
			case acc := <-up.Accepted:
				acc.Port.Close()
			case <-time.After(5 * time.Second):
				t.Fatal("the copy's flow was not offered again")
			}
		})
	}
}

// TestSeenLogBounded: the log is compacted past twice MaxSeen records,
// and what it holds after a restart is the bounded seen-set with its
// sender's floor.
func TestSeenLogBounded(t *testing.T) {
	state := t.TempDir()
	a, _ := sites(t, func(c *Config) { c.MaxSeen = 4; c.State = "" })
	a.p.cfg.State = state
	r := newReceiver(a.p)
	now := time.Now().Unix()
	l, err := r.loadSeen(state, now)
	if err != nil {
		t.Fatal(err)
	}
	r.log = l
	for seq := uint64(1); seq <= 50; seq++ {
		k := seenKey{"x", seq}
		r.remember(k, now+3600, now)
		recs := append(r.raised, seenRecord{Sender: "x", Seq: seq, Expires: now + 3600})
		r.raised = r.raised[:0]
		if err := l.add(r, 4, recs...); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	data, err := os.ReadFile(filepath.Join(state, SeenFile))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parseSeen(identity.NewCodec(), data)
	if err != nil || len(recs) > 2*4+2 {
		t.Fatalf("log of %d records (%v), want at most %d", len(recs), err, 2*4+2)
	}
	r2 := newReceiver(a.p)
	l2, err := r2.loadSeen(state, now)
	if err != nil {
		t.Fatal(err)
	}
	l2.close()
	if len(r2.seen) != 4 || r2.floor["x"] != 46 {
		t.Fatalf("reloaded %d entries, floor %d; want 4 and 46", len(r2.seen), r2.floor["x"])
	}
}

// TestSeenLogDamaged: a log cut in the middle of its last record (a crash
// during an append) loads every record before it; a log with a damaged
// record loads the records before it and says so; both are usable after.
func TestSeenLogDamaged(t *testing.T) {
	c := identity.NewCodec()
	var log []byte
	for seq := uint64(1); seq <= 3; seq++ {
		var err error
		if log, err = appendRecord(c, log, seenRecord{Sender: "x", Seq: seq, Expires: 1 << 40}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := sites(t, nil)
	for _, tc := range []struct {
		name    string
		data    []byte
		want    int
		damaged bool
	}{
		{"torn", log[:len(log)-3], 2, false},
		{"damaged", append(append([]byte{}, log[:len(log)/3*2]...), 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff), 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			if err := os.WriteFile(filepath.Join(state, SeenFile), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			r := newReceiver(a.p)
			l, err := r.loadSeen(state, time.Now().Unix())
			if l == nil || (err != nil) != tc.damaged {
				t.Fatalf("load: %v", err)
			}
			defer l.close()
			if len(r.seen) != tc.want {
				t.Fatalf("loaded %d entries, want %d", len(r.seen), tc.want)
			}
			if err := l.add(r, 16, seenRecord{Sender: "y", Seq: 1, Expires: 1 << 40}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// FuzzSeenLog: the log's parser never panics, and every record it
// returns encodes back to the bytes it came from.
func FuzzSeenLog(f *testing.F) {
	c := identity.NewCodec()
	var log []byte
	log, _ = appendRecord(c, log, seenRecord{Sender: "x", Seq: 9, Expires: 1 << 40})
	log, _ = appendRecord(c, log, seenRecord{Sender: "y", Seq: 3, Floor: true})
	f.Add(log)
	f.Add([]byte{0, 1, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, _ := parseSeen(c, data)
		var again []byte
		for _, r := range recs {
			var err error
			if again, err = appendRecord(c, again, r); err != nil {
				t.Fatalf("re-encode %+v: %v", r, err)
			}
		}
		if len(again) > len(data) || string(again) != string(data[:len(again)]) {
			t.Fatalf("records %+v re-encode to %x, not a prefix of %x", recs, again, data)
		}
	})
}
