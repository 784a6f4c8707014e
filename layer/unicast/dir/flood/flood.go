// Package flood is the flood directory policy of a unicast layer
// (dir.Directory): every member tells every other member which names it
// serves. Fine for layers of tens of members; the DHT (dir/dht) is for
// the rest. The unicast IPCP falls back to it when no other policy is
// configured.
package flood

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/dir"
)

// Policy names the built-in directory policy.
const Policy = "flood"

// Flood directory messages (CBOR [type, [hash...]]), sent with dir.Env.Send.
const (
	floodAdd   uint8 = 1 // the sender serves these hashes
	floodDel   uint8 = 2 // the sender no longer serves these hashes
	floodQuery uint8 = 3 // who serves these hashes? (answered with floodAdd)
)

// floodMaxHashes bounds the hashes in one message (34 bytes each encoded).
const floodMaxHashes = 30

// Limits of what other members can make a flood directory keep: names
// per member and entries in all. An Add beyond them, or from an address
// that is not a member, is dropped and counted (refused).
const (
	floodMaxPerMember = 1024
	floodMaxEntries   = 1 << 16
)

type floodMsg struct {
	_      struct{} `cbor:",toarray"`
	Type   uint8
	Hashes [][]byte
}

var floodCodec = flow.NewCodec()

func unmarshalFlood(b []byte) (floodMsg, error) {
	var m floodMsg
	if err := floodCodec.Unmarshal(b, &m); err != nil {
		return floodMsg{}, err
	}
	if m.Type < floodAdd || m.Type > floodQuery || len(m.Hashes) > floodMaxHashes {
		return floodMsg{}, fmt.Errorf("unicast: flood directory message type %d: %w", m.Type, flow.ErrInvalid)
	}
	for _, h := range m.Hashes {
		if len(h) != layer.HashLen {
			return floodMsg{}, fmt.Errorf("unicast: flood directory hash of %d bytes: %w", len(h), flow.ErrInvalid)
		}
	}
	return m, nil
}

// Dir is the "flood" directory policy: every member tells every
// other member (routing's membership) which hashes it serves, when it
// registers them and whenever a member it has not told appears; a lookup
// that finds nothing asks every member once before giving up. Entries of
// a member that left the membership are forgotten. Fine for layers of
// tens of members; the DHT (layer/unicast/dir/dht) is for the rest.
type Dir struct {
	env  dir.Env
	run  layer.Runner
	stop chan struct{}
	wg   sync.WaitGroup

	malformed atomic.Uint64
	refused   atomic.Uint64 // Adds over a limit or from a non-member

	mu      sync.Mutex // guards the fields below
	local   map[layer.Hash]bool
	remote  map[layer.Hash]map[layer.Addr]bool
	entries int                 // pairs in remote
	per     map[layer.Addr]int  // pairs in remote by member
	told    map[layer.Addr]bool // members that have our whole local set
	waiters map[layer.Hash][]chan struct{}
}

var (
	_ dir.Directory      = (*Dir)(nil)
	_ dir.Lister         = (*Dir)(nil)
	_ dir.MembersWatcher = (*Dir)(nil)
)

// New returns a flood directory for the IPCP that cfg describes; Start
// starts it.
func New(cfg dir.Config) *Dir {
	return &Dir{
		env: cfg.Env, run: cfg.Runner, stop: make(chan struct{}),
		local: make(map[layer.Hash]bool), remote: make(map[layer.Hash]map[layer.Addr]bool),
		told: make(map[layer.Addr]bool), waiters: make(map[layer.Hash][]chan struct{}),
		per: make(map[layer.Addr]int),
	}
}

// Start implements Directory: a ticker retries telling members that
// could not be reached yet (no route right after they appeared).
func (d *Dir) Start() error {
	d.wg.Add(1)
	d.run.Go(func() {
		defer d.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-t.C:
				d.sync(d.env.Members())
			}
		}
	})
	return nil
}

// Stop implements Directory.
func (d *Dir) Stop() {
	close(d.stop)
	d.wg.Wait()
}

func (d *Dir) send(dst layer.Addr, typ uint8, hs []layer.Hash) error {
	for len(hs) > 0 {
		n := min(len(hs), floodMaxHashes)
		m := floodMsg{Type: typ, Hashes: make([][]byte, n)}
		for i := range n {
			m.Hashes[i] = hs[i][:]
		}
		b, err := floodCodec.Marshal(m)
		if err != nil {
			return err
		}
		if err := d.env.Send(dst, b); err != nil {
			return err
		}
		hs = hs[n:]
	}
	return nil
}

// sync tells every member not told yet our local hashes, and forgets the
// entries of members that are gone.
func (d *Dir) sync(members []layer.Addr) {
	self := d.env.Self()
	d.mu.Lock()
	in := make(map[layer.Addr]bool, len(members))
	var todo []layer.Addr
	for _, a := range members {
		in[a] = true
		if a != self && !d.told[a] {
			todo = append(todo, a)
		}
	}
	for a := range d.told {
		if !in[a] {
			delete(d.told, a)
		}
	}
	for h, as := range d.remote {
		for a := range as {
			if !in[a] {
				d.forgetLocked(h, a)
			}
		}
	}
	hs := make([]layer.Hash, 0, len(d.local))
	for h := range d.local {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	for _, a := range todo {
		if d.send(a, floodAdd, hs) == nil {
			d.mu.Lock()
			d.told[a] = true
			d.mu.Unlock()
		}
	}
}

// MembersChanged implements MembersWatcher.
func (d *Dir) MembersChanged(members []layer.Addr) { d.sync(members) }

// broadcast sends typ for h to every member; members it cannot reach now
// are marked untold (they get the whole set later).
func (d *Dir) broadcast(typ uint8, h layer.Hash) {
	self := d.env.Self()
	for _, a := range d.env.Members() {
		if a == self {
			continue
		}
		if d.send(a, typ, []layer.Hash{h}) != nil {
			d.mu.Lock()
			delete(d.told, a)
			d.mu.Unlock()
		}
	}
}

// Register implements Directory. Only the own address is published.
func (d *Dir) Register(_ context.Context, h layer.Hash, a layer.Addr) error {
	if a != d.env.Self() {
		return fmt.Errorf("unicast: flood directory registers only its own address: %w", flow.ErrInvalid)
	}
	d.mu.Lock()
	d.local[h] = true
	d.mu.Unlock()
	d.broadcast(floodAdd, h)
	return nil
}

// Unregister implements Directory.
func (d *Dir) Unregister(_ context.Context, h layer.Hash, a layer.Addr) error {
	d.mu.Lock()
	ok := d.local[h] && a == d.env.Self()
	delete(d.local, h)
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("unicast: unregister %v: %w", h, flow.ErrNotFound)
	}
	d.broadcast(floodDel, h)
	return nil
}

func (d *Dir) find(h layer.Hash) []layer.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []layer.Addr
	if d.local[h] {
		out = append(out, d.env.Self())
	}
	rs := make([]layer.Addr, 0, len(d.remote[h]))
	for a := range d.remote[h] {
		rs = append(rs, a)
	}
	slices.Sort(rs)
	return append(out, rs...)
}

// Lookup implements Directory: local knowledge first, then one query to
// every member, answered by those that serve h.
func (d *Dir) Lookup(ctx context.Context, h layer.Hash) ([]layer.Addr, error) {
	if as := d.find(h); len(as) > 0 {
		return as, nil
	}
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	d.waiters[h] = append(d.waiters[h], ch)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		ws := slices.DeleteFunc(d.waiters[h], func(c chan struct{}) bool { return c == ch })
		if len(ws) == 0 {
			delete(d.waiters, h)
		} else {
			d.waiters[h] = ws
		}
		d.mu.Unlock()
	}()
	d.broadcast(floodQuery, h)
	t := time.NewTimer(500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ch:
		if as := d.find(h); len(as) > 0 {
			return as, nil
		}
	case <-t.C:
	case <-ctx.Done():
		return nil, fmt.Errorf("unicast: lookup %v: %w", h, cmp.Or(context.Cause(ctx), ctx.Err()))
	case <-d.stop:
		return nil, fmt.Errorf("unicast: lookup %v: %w", h, flow.ErrClosed)
	}
	return nil, fmt.Errorf("unicast: lookup %v: %w", h, flow.ErrNotFound)
}

// Handle implements Directory.
func (d *Dir) Handle(src layer.Addr, msg []byte) {
	m, err := unmarshalFlood(msg)
	if err != nil {
		d.malformed.Add(1)
		return
	}
	if m.Type == floodAdd && !slices.Contains(d.env.Members(), src) {
		d.refused.Add(uint64(len(m.Hashes)))
		return
	}
	var answer []layer.Hash
	d.mu.Lock()
	for _, hb := range m.Hashes {
		h := layer.Hash(hb)
		switch m.Type {
		case floodAdd:
			if !d.remote[h][src] && (d.per[src] >= floodMaxPerMember || d.entries >= floodMaxEntries) {
				d.refused.Add(1)
				continue
			}
			if d.remote[h] == nil {
				d.remote[h] = make(map[layer.Addr]bool)
			}
			if !d.remote[h][src] {
				d.remote[h][src] = true
				d.per[src]++
				d.entries++
			}
			for _, ch := range d.waiters[h] {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		case floodDel:
			d.forgetLocked(h, src)
		case floodQuery:
			if d.local[h] {
				answer = append(answer, h)
			}
		}
	}
	d.mu.Unlock()
	if len(answer) > 0 {
		d.send(src, floodAdd, answer)
	}
}

// forgetLocked removes a's entry for h; d.mu is held.
func (d *Dir) forgetLocked(h layer.Hash, a layer.Addr) {
	as := d.remote[h]
	if !as[a] {
		return
	}
	delete(as, a)
	d.entries--
	if d.per[a]--; d.per[a] <= 0 {
		delete(d.per, a)
	}
	if len(as) == 0 {
		delete(d.remote, h)
	}
}

// Entries implements dir.Lister.
func (d *Dir) Entries() []dir.Entry {
	d.mu.Lock()
	hs := make(map[layer.Hash]bool, len(d.local)+len(d.remote))
	for h := range d.local {
		hs[h] = true
	}
	for h := range d.remote {
		hs[h] = true
	}
	d.mu.Unlock()
	out := make([]dir.Entry, 0, len(hs))
	for h := range hs {
		d.mu.Lock()
		local := d.local[h]
		d.mu.Unlock()
		out = append(out, dir.Entry{Hash: h, Addrs: d.find(h), Local: local})
	}
	slices.SortFunc(out, func(a, b dir.Entry) int { return slices.Compare(a.Hash[:], b.Hash[:]) })
	return out
}

// Counters implements dir.Counters.
func (d *Dir) Counters() map[string]uint64 {
	return map[string]uint64{"refused": d.refused.Load(), "malformed": d.malformed.Load()}
}
