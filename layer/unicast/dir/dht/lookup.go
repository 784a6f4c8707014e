package dht

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// result is what an iterative lookup found.
type result struct {
	nodes  []contact    // FIND_NODE: the K closest members that answered, nearest first
	values []layer.Addr // FIND_VALUE: the addresses of the first genuine records found
	hops   int          // the longest chain of requests to the answer
	ownSeq uint64       // FIND_VALUE: the highest sequence number of the genuine records signed with this member's key
	msgs   int          // requests sent
}

// Candidate states in a lookup.
const (
	candFresh = iota
	candAsked
	candDone
	candFailed
)

type candidate struct {
	c     contact
	depth int // requests in the chain that found it, counting its own
	state int
}

// iterate runs an iterative lookup of target (Kademlia section 2.3): it
// keeps a shortlist of the members closest to target, asks up to Alpha of
// the K closest not yet asked at a time (op: MsgFindNode or MsgFindValue),
// adds the contacts the answers name, and ends when the K closest that
// have not failed have all answered, or (MsgFindValue) when one answers
// with values. It runs on the caller's goroutine; Handle and the request
// timers feed it through a channel with room for one event per request in
// flight, so neither ever blocks on it. Requests still in flight when it
// returns are cancelled, so late answers are dropped as unsolicited.
func (d *DHT) iterate(ctx context.Context, target layer.Hash, op MsgType) (result, error) {
	var res result
	d.mu.Lock()
	if d.state != stateRunning {
		d.mu.Unlock()
		return res, d.errClosed("lookup")
	}
	if d.tab.n < d.cfg.K {
		// A small table: contacts dropped as unreachable (asked before
		// routes to them existed, as a layer forms) come back only
		// with a change of membership, which a quiet layer never has.
		// Offer the members again (asked for without d.mu).
		d.mu.Unlock()
		members := d.cfg.Env.Members()
		d.mu.Lock()
		for _, m := range members {
			d.tab.offer(m)
		}
	}
	seeds := d.tab.closest(target, d.cfg.K)
	d.tab.touch(target, d.cfg.Clock.Now())
	self := d.self
	d.mu.Unlock()
	d.c.lookups.Add(1)

	cands := make([]*candidate, 0, 4*d.cfg.K)
	known := make(map[layer.Addr]bool, 4*d.cfg.K)
	add := func(a layer.Addr, depth int) {
		if a == self || known[a] {
			return
		}
		known[a] = true
		c := &candidate{c: newContact(a), depth: depth}
		i, _ := slices.BinarySearchFunc(cands, c, func(x, y *candidate) int { return cmpDist(target, x.c.id, y.c.id) })
		cands = slices.Insert(cands, i, c)
	}
	for _, s := range seeds {
		add(s.addr, 1)
	}
	// next returns the nearest fresh candidate among the K nearest that
	// have not failed, or nil.
	next := func() *candidate {
		n := 0
		for _, c := range cands {
			if c.state == candFailed {
				continue
			}
			if n++; n > d.cfg.K {
				return nil
			}
			if c.state == candFresh {
				return c
			}
		}
		return nil
	}

	events := make(chan event, d.cfg.Alpha)
	inflight := make(map[uint64]*candidate, d.cfg.Alpha)
	defer func() {
		for cookie := range inflight {
			d.cancelRequest(cookie)
		}
	}()
	for {
		for len(inflight) < d.cfg.Alpha {
			c := next()
			if c == nil {
				break
			}
			c.state = candAsked
			res.msgs++
			cookie, err := d.request(c.c.addr, &Msg{Type: op, Key: target[:]}, events)
			if err != nil {
				if errors.Is(err, flow.ErrClosed) && d.ctx.Err() != nil {
					return res, d.errClosed("lookup")
				}
				c.state = candFailed
				d.failed(c.c.addr, true)
				continue
			}
			inflight[cookie] = c
		}
		if len(inflight) == 0 {
			break
		}
		select {
		case ev := <-events:
			c := inflight[ev.cookie]
			delete(inflight, ev.cookie)
			if c == nil {
				continue
			}
			m := ev.msg
			switch {
			case m == nil:
				c.state = candFailed
				d.failed(c.c.addr, false)
				continue
			case m.Type == MsgValue && op == MsgFindValue:
				vs := d.verified(c.c.addr, target, m.Records)
				for _, r := range vs {
					if ed25519.PublicKey(r.Key).Equal(d.cfg.Signer.Public()) {
						res.ownSeq = max(res.ownSeq, r.Seq)
					}
				}
				for _, r := range d.certFilter(c.c.addr, target, vs, d.cfg.Clock.Now()) {
					if r.live() && !slices.Contains(res.values, r.Addr) {
						res.values = append(res.values, r.Addr)
					}
				}
				if len(res.values) == 0 {
					c.state = candFailed // a lying or stale holder: ask on
					continue
				}
				c.state = candDone
				res.hops = c.depth
				d.c.hops.Add(uint64(res.hops))
				return res, nil
			case m.Type != MsgNodes:
				c.state = candFailed // an answer that does not fit the question
				continue
			}
			c.state = candDone
			for _, a := range m.Nodes {
				add(a, c.depth+1)
			}
		case <-ctx.Done():
			if d.ctx.Err() != nil {
				return res, d.errClosed("lookup")
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return res, fmt.Errorf("%w: %w", flow.ErrTimeout, ctx.Err())
			}
			return res, ctx.Err()
		}
	}
	for _, c := range cands {
		if c.state == candDone {
			res.nodes = append(res.nodes, c.c)
			res.hops = max(res.hops, c.depth)
			if len(res.nodes) == d.cfg.K {
				break
			}
		}
	}
	d.c.hops.Add(uint64(res.hops))
	return res, nil
}

// publish signs a record of each of addrs under h, valid for ttl (0: a
// withdrawal), keeps the registrations among its own, stores them at the
// K members closest to h, and returns how many acknowledged.
func (d *DHT) publish(ctx context.Context, h layer.Hash, addrs []layer.Addr, ttl time.Duration) (int, error) {
	secs := uint32(min((ttl+time.Second-1)/time.Second, math.MaxUint32))
	d.mu.Lock()
	first := len(d.own[h]) == 0
	d.mu.Unlock()
	if first && ttl > 0 && !clockSet(d.cfg.Clock.Now()) {
		// Sequence numbers come from the clock, so that a restarted
		// member's records replace its earlier incarnation's. A clock
		// that is not set (a board counts from 1970 at boot) starts them
		// below: the holders would refuse the new records as replays and
		// keep the old ones until they expire. Look the name's records
		// up first and go on above the highest of this key.
		if res, err := d.iterate(ctx, h, MsgFindValue); err == nil && res.ownSeq > 0 {
			d.mu.Lock()
			d.seq = max(d.seq, res.ownSeq)
			d.mu.Unlock()
		}
	}
	recs := make([]Record, 0, len(addrs))
	for _, a := range addrs {
		d.mu.Lock()
		d.seq = max(d.seq+1, uint64(d.cfg.Clock.Now().UnixNano()))
		seq := d.seq
		d.mu.Unlock()
		r, err := signRecord(ctx, d.codec, d.cfg.Signer, d.cfg.Layer, h, a, seq, secs)
		if err != nil {
			return 0, err
		}
		if d.cfg.Names != nil {
			r.Cert = d.cfg.Names.Cert
		}
		recs = append(recs, r)
	}
	if ttl > 0 {
		d.mu.Lock()
		if slices.ContainsFunc(addrs, func(a layer.Addr) bool { return slices.Contains(d.local[h], a) }) {
			for _, r := range recs {
				if !slices.Contains(d.local[h], r.Addr) {
					continue // unregistered meanwhile
				}
				d.own[h] = slices.DeleteFunc(d.own[h], func(o Record) bool { return o.Addr == r.Addr })
				d.own[h] = append(d.own[h], r)
			}
		}
		d.mu.Unlock()
	}
	res, err := d.iterate(ctx, h, MsgFindNode)
	if err != nil {
		return 0, err
	}
	return d.storeAt(ctx, res.nodes, h, recs)
}

// storeAt sends MsgStores of recs under h (MaxRecords at a time) to
// each of nodes and waits for their acknowledgements, which it counts
// (one per node and message).
func (d *DHT) storeAt(ctx context.Context, nodes []contact, h layer.Hash, recs []Record) (int, error) {
	acks := 0
	for len(recs) > 0 {
		n := len(fitRecords(recs))
		a, err := d.storeChunk(ctx, nodes, h, recs[:n])
		acks += a
		if err != nil {
			return acks, err
		}
		recs = recs[n:]
	}
	return acks, nil
}

func (d *DHT) storeChunk(ctx context.Context, nodes []contact, h layer.Hash, recs []Record) (int, error) {
	events := make(chan event, len(nodes))
	inflight := make(map[uint64]bool, len(nodes))
	defer func() {
		for cookie := range inflight {
			d.cancelRequest(cookie)
		}
	}()
	for _, c := range nodes {
		cookie, err := d.request(c.addr, &Msg{Type: MsgStore, Key: h[:], Records: recs}, events)
		if err != nil {
			d.failed(c.addr, true)
			continue
		}
		inflight[cookie] = true
	}
	acks := 0
	for len(inflight) > 0 {
		select {
		case ev := <-events:
			delete(inflight, ev.cookie)
			if ev.msg != nil && ev.msg.Type == MsgStored {
				acks++
			}
		case <-ctx.Done():
			return acks, d.ctxErr("store "+h.String(), ctx)
		}
	}
	return acks, nil
}

// Maintain runs one maintenance round: the join (a lookup of the own id)
// if not done yet, a refresh of every bucket nobody looked into for
// Refresh, the republication of own registrations every Republish, the
// replication of held entries nobody stored for Replicate, and the
// expiry of held and cached entries. The maintenance goroutine calls it
// every Tick; simulations and the management "dir refresh" command may
// call it too. Rounds do not overlap.
func (d *DHT) Maintain(ctx context.Context) {
	if d.running("maintain") != nil {
		return
	}
	d.maintMu.Lock()
	defer d.maintMu.Unlock()
	now := d.cfg.Clock.Now()

	d.mu.Lock()
	joined := d.joined
	for h, s := range d.store {
		d.nstored -= s.expire(now)
		if len(s.vals) == 0 {
			delete(d.store, h)
		}
	}
	for h, c := range d.cache {
		if !now.Before(c.expires) {
			delete(d.cache, h)
		}
	}
	d.mu.Unlock()

	if !joined {
		if _, err := d.iterate(ctx, NodeID(d.self), MsgFindNode); err != nil {
			d.cfg.Log.Warn("directory join failed", "layer", d.cfg.Layer, "err", err)
			return
		}
		d.mu.Lock()
		d.joined = true
		d.mu.Unlock()
		d.c.joins.Add(1)
	}

	d.mu.Lock()
	stale := d.tab.staleBuckets(now, d.cfg.Refresh)
	targets := make([]layer.Hash, len(stale))
	for i, b := range stale {
		var r layer.Hash
		d.rng.Read(r[:])
		targets[i] = d.tab.randomIn(b, r)
	}
	var own map[layer.Hash][]layer.Addr
	if now.Sub(d.lastPub) >= d.cfg.Republish {
		d.lastPub = now
		own = make(map[layer.Hash][]layer.Addr, len(d.local))
		for h, as := range d.local {
			own[h] = slices.Clone(as)
		}
	}
	reps := make(map[layer.Hash][]Record)
	self := NodeID(d.self)
	for h, s := range d.store {
		if now.Sub(s.received) >= d.cfg.Replicate+jitter(self, h, d.cfg.Replicate/4) {
			s.received = now // this member replicates it; the others hear of it
			reps[h] = s.live(now, nil)
		}
	}
	d.mu.Unlock()

	for _, t := range targets {
		if ctx.Err() != nil {
			return
		}
		d.iterate(ctx, t, MsgFindNode)
	}
	for h, as := range own {
		if ctx.Err() != nil {
			return
		}
		if _, err := d.publish(ctx, h, as, d.cfg.StoreTTL); err != nil {
			d.cfg.Log.Warn("directory republish failed", "layer", d.cfg.Layer, "name", fmt.Sprint(h), "err", err)
		}
	}
	for h, recs := range reps {
		if ctx.Err() != nil {
			return
		}
		res, err := d.iterate(ctx, h, MsgFindNode)
		if err != nil {
			continue
		}
		d.storeAt(ctx, res.nodes, h, recs) // as the owner signed them: their expiry is theirs
	}
}

// jitter returns a duration in [0, span) fixed for (self, key): the
// holders of a key replicate it at different times, and the first one's
// stores reset the others' timers (Kademlia section 2.5).
func jitter(self, key layer.Hash, span time.Duration) time.Duration {
	if span <= 0 {
		return 0
	}
	x := binary.BigEndian.Uint64(self[:8]) ^ binary.BigEndian.Uint64(key[:8])
	return time.Duration(x % uint64(span))
}

// clockSet reports whether t looks like a set wall clock: boards without
// one count from 1970 at boot.
func clockSet(t time.Time) bool { return t.Year() >= 2020 }
