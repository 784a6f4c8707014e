package carrier

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
)

// receiver is the goroutine that takes bundles out of In, with its
// seen-set. Its fields belong to that goroutine.
type receiver struct {
	p       *IPCP
	seen    map[seenKey]int64 // sender and sequence -> expiry (Unix seconds)
	floor   map[string]uint64 // per sender: sequences at or below it are refused
	buf     []byte
	log     *seenLog     // the seen-set on disk (Config.State), or nil
	raised  []seenRecord // floors raised since the last append to log
	pending acks         // bundles taken (or taken again) since the last acknowledgements
}

type seenKey struct {
	sender string
	seq    uint64
}

func newReceiver(p *IPCP) *receiver {
	return &receiver{p: p, seen: map[seenKey]int64{}, floor: map[string]uint64{}, pending: acks{}}
}

func (r *receiver) run() {
	p := r.p
	defer p.wg.Done()
	defer r.log.close()
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for k, f := range p.in {
			f.port.Close()
			delete(p.in, k)
			p.c.FlowsActive.Add(^uint64(0))
		}
	}()
	t := time.NewTicker(p.cfg.Poll)
	defer t.Stop()
	for {
		r.scan()
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// scan handles every bundle file in In, in name order.
func (r *receiver) scan() {
	p := r.p
	ents, err := os.ReadDir(p.cfg.In)
	if err != nil {
		p.storeErrs.Add(1)
		return
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() && (isBundleName(e.Name()) || isAckName(e.Name())) {
			names = append(names, e.Name())
		}
	}
	defer func() {
		if p.cfg.Ack && len(r.pending) > 0 {
			r.writeAcks()
		}
		if p.cfg.Resend > 0 {
			r.resend()
		}
	}()
	sort.Strings(names)
	for _, n := range names {
		select {
		case <-p.stop:
			return
		default:
		}
		path := filepath.Join(p.cfg.In, n)
		data, err := r.read(path)
		if err == nil && isAckName(n) {
			r.takeAck(data)
		} else if err == nil && r.take(data) {
			continue // no one accepts its flow yet: it waits for the next scan
		}
		// Taken or refused, the file is done with: removing it is the
		// acknowledgement (and keeps a refused file from coming back).
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			p.storeErrs.Add(1)
		}
	}
}

// read reads a bundle file of at most MaxFileSize bytes.
func (r *receiver) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		r.p.storeErrs.Add(1)
		return nil, err
	}
	defer f.Close()
	if r.buf == nil {
		r.buf = make([]byte, MaxFileSize+1)
	}
	n, err := io.ReadFull(f, r.buf)
	switch {
	case n > MaxFileSize:
		r.p.malformed.Add(1)
		return nil, ErrMalformed
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		r.p.storeErrs.Add(1)
		return nil, err
	}
	return r.buf[:n], nil
}

// take judges one bundle file and delivers what it carries. It reports
// whether the file is to be kept: a genuine bundle whose flow the IRM
// does not accept yet (no program registered the name) waits in In until
// one does or it expires.
func (r *receiver) take(data []byte) (keep bool) {
	p := r.p
	b, err := Open(p.codec, data, p.cfg.Peers)
	switch {
	case errors.Is(err, ErrTampered):
		p.tampered.Add(1)
		return false
	case errors.Is(err, ErrUnknownKey):
		p.unknownPeer.Add(1)
		return false
	case err != nil:
		p.malformed.Add(1)
		return false
	}
	now := p.cfg.Now().Unix()
	if b.Expires < now {
		p.expired.Add(1)
		return false
	}
	sender := identity.NameOf(b.Sender)
	k := seenKey{sender, b.Seq}
	if _, dup := r.seen[k]; dup || b.Seq <= r.floor[sender] {
		p.replayed.Add(1)
		if p.cfg.Ack { // a resend of what arrived after all: say so again
			r.pending.add(b.Sender, b.Seq)
		}
		return false
	}
	sealed := len(b.Sealed) > 0
	if sealed {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := openSDUs(ctx, p.codec, p.cfg.Agreer, p.cfg.Signer.Public(), &b)
		cancel()
		if err != nil {
			if errors.Is(err, ErrMalformed) {
				p.malformed.Add(1)
			} else {
				p.unopened.Add(1)
			}
			return false
		}
	}
	f := r.flow(sender, &b, sealed)
	if f == nil {
		return !(len(b.SDUs) == 0 && b.End) // an empty last bundle of an unknown flow is done
	}
	r.remember(k, b.Expires, now)
	if r.log != nil {
		// on disk before delivered: after a crash it is refused, not
		// delivered again; a log that cannot be written is counted and
		// the bundle delivered (only the guarantee across restarts is
		// lost, and the store_errors counter says so)
		recs := append(r.raised, seenRecord{Sender: sender, Seq: b.Seq, Expires: b.Expires})
		r.raised = r.raised[:0]
		if err := r.log.add(r, p.cfg.MaxSeen, recs...); err != nil {
			p.storeErrs.Add(1)
		}
	}
	p.bundlesIn.Add(1)
	if p.cfg.Ack {
		r.pending.add(b.Sender, b.Seq)
	}
	r.deliver(inKey{sender, b.Flow}, f, &b)
	return false
}

// remember adds k to the seen-set, keeping it within MaxSeen: expired
// entries go first (an expired bundle is refused anyway), then the lowest
// sequence of a sender, whose floor rises to it so that it stays refused.
func (r *receiver) remember(k seenKey, expires, now int64) {
	p := r.p
	r.seen[k] = expires
	if len(r.seen) > p.cfg.MaxSeen {
		for s, exp := range r.seen {
			if exp < now {
				delete(r.seen, s)
			}
		}
	}
	for len(r.seen) > p.cfg.MaxSeen {
		var low seenKey
		first := true
		for s := range r.seen {
			if first || s.seq < low.seq {
				low, first = s, false
			}
		}
		delete(r.seen, low)
		r.floor[low.sender] = max(r.floor[low.sender], low.seq)
		if r.log != nil {
			r.raised = append(r.raised, seenRecord{Sender: low.sender, Seq: r.floor[low.sender], Floor: true})
		}
	}
	p.seenLen.Store(uint64(len(r.seen)))
}

// flow returns the open flow a bundle belongs to, asking the IRM to
// accept it at its first bundle (sealed: as a sealed flow from the
// bundle's sender); nil if there is none (counted).
func (r *receiver) flow(sender string, b *Bundle, sealed bool) *rxFlow {
	p := r.p
	k := inKey{sender, b.Flow}
	p.mu.Lock()
	f := p.in[k]
	n := len(p.in)
	p.mu.Unlock()
	if f != nil {
		if f.sealed != sealed { // a flow is sealed or not from its first bundle on
			p.malformed.Add(1)
			return nil
		}
		return f
	}
	if len(b.SDUs) == 0 && b.End {
		return nil
	}
	if n >= p.cfg.MaxFlows {
		p.c.Busy.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req := ipcp.AllocReq{Dst: b.Dst, Src: b.Src, QoS: flow.DelayTolerant(), MaxSDU: flow.MaxSDU}
	if sealed {
		req.QoS.Sealed = true
		req.Peer = &flow.Peer{Key: slices.Clone(b.Sender), ID: sender}
	}
	port, err := p.up.FlowReq(ctx, req)
	cancel()
	if err != nil || port == nil {
		p.c.AllocFailed.Add(1)
		p.c.Pending.Add(1)
		return nil
	}
	f = &rxFlow{dst: b.Dst, port: port, sealed: sealed}
	p.mu.Lock()
	p.in[k] = f
	p.mu.Unlock()
	p.c.FlowsIn.Add(1)
	p.c.FlowsActive.Add(1)
	return f
}

// writeTimeout is how long a program that does not read may hold up the
// carrier's receiver, per SDU; the SDU is then dropped (drops.rx_full).
const writeTimeout = 10 * time.Second

// deliver writes a bundle's SDUs to its flow f, waiting for a slow
// program (up to writeTimeout each) but not past Stop.
func (r *receiver) deliver(k inKey, f *rxFlow, b *Bundle) {
	p := r.p
	for i, s := range b.SDUs {
		var err error
		for give := time.Now().Add(writeTimeout); ; {
			err = f.port.Write(s, time.Now().Add(stopPoll))
			if !errors.Is(err, flow.ErrTimeout) || time.Now().After(give) || p.state.Load() == layer.StateShutdown {
				break
			}
		}
		if err != nil {
			if errors.Is(err, flow.ErrClosed) {
				p.c.UnknownFlow.Add(uint64(len(b.SDUs) - i))
				r.end(k, f)
				return
			}
			p.c.RxFull.Add(1)
			continue
		}
		f.counts.pkts.Add(1)
		f.counts.bytes.Add(uint64(len(s)))
		p.c.PacketsIn.Add(1)
		p.c.BytesIn.Add(uint64(len(s)))
	}
	if b.End {
		r.end(k, f)
	}
}

// end closes an incoming flow: its program reads what was delivered,
// then flow.ErrClosed.
func (r *receiver) end(k inKey, f *rxFlow) {
	f.port.Close()
	r.p.mu.Lock()
	delete(r.p.in, k)
	r.p.mu.Unlock()
	r.p.c.FlowsActive.Add(^uint64(0))
}
