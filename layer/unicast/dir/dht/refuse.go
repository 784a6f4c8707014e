package dht

import (
	"fmt"
	"sync"
	"time"

	"github.com/ouronet/ouro/layer"
)

// refusal is why a holder or an asker refused a record. Each has its
// own counter in Stats and its own log line, at most one per
// RefusalLogEvery: a flood of refused records costs a counter increment
// each, never a log line each.
type refusal uint8

const (
	refBadRecord  refusal = iota // signature, or key not bound to the address (Stats.BadRecords)
	refNotOwner                  // another key owns the name (Stats.NotOwner)
	refReplay                    // not newer than the record held (Stats.Replays)
	refNotClosest                // K members closer to the name are known (Stats.NotClosest)
	refFull                      // MaxStored or MaxValues reached (Stats.Refused)
	refCertName                  // a certificate gives the name to another key, or (Certified) none gives it to this one (Stats.CertNames)
	nRefusals
)

var refusalNames = [nRefusals]string{
	refBadRecord:  "bad record (signature or address binding)",
	refNotOwner:   "record of a name another key owns",
	refReplay:     "replayed record",
	refNotClosest: "store for a name this member is not among the closest to",
	refFull:       "record over the store's limits",
	refCertName:   "record of a name no certificate gives its key (another's does, or names are certified only)",
}

// RefusalLogEvery is the least time between two log lines of one kind
// of refusal; the counters count every one.
const RefusalLogEvery = 10 * time.Second

// refused is one refused record, logged after the DHT's lock is
// released (Log may block).
type refused struct {
	why  refusal
	src  layer.Addr // who sent it
	addr layer.Addr // the record's address
	key  []byte     // the record's key
}

// refusalLog rate-limits the refusal log lines. It has its own lock,
// never held with DHT.mu.
type refusalLog struct {
	mu    sync.Mutex
	last  [nRefusals]time.Time
	quiet [nRefusals]uint64 // refusals not logged since the kind's last line
}

// count adds n refusals of kind why to the counters.
func (d *DHT) count(why refusal, n uint64) {
	switch why {
	case refBadRecord:
		d.c.badRecords.Add(n)
	case refNotOwner:
		d.c.notOwner.Add(n)
	case refReplay:
		d.c.replays.Add(n)
	case refNotClosest:
		d.c.notClosest.Add(n)
	case refFull:
		d.c.refused.Add(n)
	case refCertName:
		d.c.certNames.Add(n)
	}
}

// logRefused logs refusals of name h (already counted), at most one line
// per kind per RefusalLogEvery; a line says how many of its kind were
// not logged since the previous one. It must not be called with d.mu
// held.
func (d *DHT) logRefused(h layer.Hash, rs []refused) {
	if len(rs) == 0 {
		return
	}
	now := d.cfg.Clock.Now()
	for _, r := range rs {
		l := &d.refusals
		l.mu.Lock()
		if !l.last[r.why].IsZero() && now.Sub(l.last[r.why]) < RefusalLogEvery {
			l.quiet[r.why]++
			l.mu.Unlock()
			continue
		}
		quiet := l.quiet[r.why]
		l.last[r.why], l.quiet[r.why] = now, 0
		l.mu.Unlock()
		key := r.key
		if len(key) > 8 {
			key = key[:8]
		}
		d.cfg.Log.Warn("directory entry refused", "layer", d.cfg.Layer, "why", refusalNames[r.why], "name", fmt.Sprint(h),
			"addr", r.addr, "key", fmt.Sprintf("%x…", key), "from", r.src, "more", quiet)
	}
}
