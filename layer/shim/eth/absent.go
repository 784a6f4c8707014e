package eth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// "Not here" on the segment (docs/shims.md, "Names on a segment").
//
// A name query is a broadcast, and a shim that does not hold the name
// used to stay silent, so the asker could only learn "not here" from a
// timeout. Now every shim that announces answers a query for a name it
// does not hold with an absent message, and a shim keeps the holders of
// its segment: the peers it heard announce (or answer for) a name in the
// last 3 announcement periods. Once every holder it knows has said "not
// here", the query ends flow.ErrNotFound at once, one round trip after
// it went out instead of a negative wait or a timeout later.
//
// A shim that started recently has not heard every holder's announcement
// yet: it broadcasts a solicit at Start (twice, RetryBase apart), every
// holder answers it with its names at once, and the holder set is taken
// as complete solicitWait after that (or, with the solicits lost, once
// the shim has listened for 1.5 announcement periods, the engine's own
// rule for the negative wait).

// The eth-only control messages travel in control frames (endpoint id
// CtlEID) like the engine's, told apart by their first byte: the
// engine's messages are CBOR arrays of 7 (0x87) and 8 (0x88) elements,
// these arrays of 1 and 2. A shim that predates them counts them as
// malformed and stays silent, which is what it did before.
const (
	// ctlAbsent: [8, hash] — the sender does not hold the name with
	// hash (a 32-byte string); unicast to the querier.
	ctlAbsent = 8
	// ctlSolicit: [9] — the sender just started: announce your names
	// to it (unicast name replies); sent to the broadcast address.
	ctlSolicit = 9
)

// absentLen is the encoded length of an absent message: array head, type,
// byte-string head (0x58, length) and the hash.
const absentLen = 4 + layer.HashLen

const (
	// maxHolders bounds the holders kept; beyond it the set is not
	// complete and queries take the slow path (the engine's negative
	// wait) until entries expire.
	maxHolders = 256
	// absentBurst bounds the absent answers sent per absentWindow, so
	// that a flood of queries (with forged sources) is not reflected at
	// full rate; a lost answer only costs the asker the slow path.
	absentBurst  = 256
	absentWindow = 100 * time.Millisecond
	// solicitWait is how long after its solicit a starting shim waits
	// for the holders' answers before it trusts its holder set.
	solicitWait = 50 * time.Millisecond
)

// errAbsent ends a query's context when every known holder said "not here".
var errAbsent = errors.New("every holder on the segment said not here")

// encodeCtl encodes an eth-only control message: ctlAbsent with h, or
// ctlSolicit.
func encodeCtl(dst []byte, typ byte, h layer.Hash) []byte {
	if typ == ctlSolicit {
		return append(dst, 0x81, ctlSolicit)
	}
	dst = append(dst, 0x82, ctlAbsent, 0x58, layer.HashLen)
	return append(dst, h[:]...)
}

// isEthCtl reports whether the control payload b is an eth-only message
// (not the engine's): its first byte is a CBOR array head of 1 or 2.
func isEthCtl(b []byte) bool { return len(b) > 0 && (b[0] == 0x81 || b[0] == 0x82) }

// decodeCtl decodes an eth-only control message; it accepts exactly the
// encodings encodeCtl writes and nothing else.
func decodeCtl(b []byte) (typ byte, h layer.Hash, err error) {
	switch {
	case len(b) == 2 && b[0] == 0x81 && b[1] == ctlSolicit:
		return ctlSolicit, h, nil
	case len(b) == absentLen && b[0] == 0x82 && b[1] == ctlAbsent && b[2] == 0x58 && b[3] == layer.HashLen:
		copy(h[:], b[4:])
		return ctlAbsent, h, nil
	}
	return 0, h, fmt.Errorf("eth: malformed control message of %d bytes", len(b))
}

// absentWait is one query in progress on the quick path: the holders it
// waits for; cancel ends its context once none is left.
type absentWait struct {
	left   map[MAC]bool
	cancel context.CancelCauseFunc
}

// absent is the IPCP's state for "not here".
type absent struct {
	mu       sync.Mutex
	names    map[layer.Hash]bool          // registered here (mirrors the engine's)
	holders  map[MAC]time.Time            // peers that hold names, until when
	full     time.Time                    // holders overflowed: incomplete until then
	waits    map[layer.Hash][]*absentWait // queries on the quick path
	warmAt   time.Time                    // holder set complete from then on
	window   time.Time                    // start of the current absent-answer window
	sent     int                          // absent answers sent in it
	quick    uint64                       // queries ended by absent answers
	solicits int                          // solicits still to send
}

func (a *absent) init() {
	a.names = make(map[layer.Hash]bool)
	a.holders = make(map[MAC]time.Time)
	a.waits = make(map[layer.Hash][]*absentWait)
}

// holderLife is how long a holder is kept after it last announced or
// answered: 3 announcement periods, like the names heard.
func (p *IPCP) holderLife() time.Duration { return 3 * announce(p.cfg.Announce) }

// quickOn reports whether the shim answers and uses "not here" (it needs
// announcements: without them holders are not known).
func (p *IPCP) quickOn() bool { return p.cfg.Announce >= 0 }

// heardHolder records that from holds at least one name.
func (p *IPCP) heardHolder(from MAC, now time.Time) {
	a := &p.abs
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.holders[from]; !ok && len(a.holders) >= maxHolders {
		for m, exp := range a.holders { // make room from the expired ones
			if now.After(exp) {
				delete(a.holders, m)
			}
		}
		if len(a.holders) >= maxHolders {
			a.full = now.Add(p.holderLife())
			return
		}
	}
	a.holders[from] = now.Add(p.holderLife())
}

// watch starts a query for h on the quick path: it returns ctx with a
// cause-cancel that fires once every holder known now has answered "not
// here" (at once if there are none), and the wait to pass to unwatch. A
// shim whose holder set may be incomplete returns ctx and nil.
func (p *IPCP) watch(ctx context.Context, h layer.Hash) (context.Context, *absentWait) {
	if !p.quickOn() {
		return ctx, nil
	}
	a := &p.abs
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.Before(a.warmAt) || now.Before(a.full) {
		return ctx, nil
	}
	w := &absentWait{left: make(map[MAC]bool, len(a.holders))}
	for m, exp := range a.holders {
		if now.Before(exp) {
			w.left[m] = true
		}
	}
	ctx, w.cancel = context.WithCancelCause(ctx)
	if len(w.left) == 0 {
		w.cancel(errAbsent)
	}
	a.waits[h] = append(a.waits[h], w)
	return ctx, w
}

// unwatch ends a query on the quick path.
func (p *IPCP) unwatch(h layer.Hash, w *absentWait) {
	a := &p.abs
	a.mu.Lock()
	ws := a.waits[h]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(a.waits, h)
	} else {
		a.waits[h] = ws
	}
	a.mu.Unlock()
	w.cancel(nil)
}

// onAbsent: from said it does not hold h.
func (p *IPCP) onAbsent(h layer.Hash, from MAC) {
	a := &p.abs
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.waits[h] {
		if w.left[from] {
			delete(w.left, from)
			if len(w.left) == 0 {
				w.cancel(errAbsent)
			}
		}
	}
}

// onQuery answers a name query for h from a peer "not here" unless h is
// registered here (then the engine answers it).
func (p *IPCP) onQuery(h layer.Hash, from MAC, now time.Time) {
	a := &p.abs
	a.mu.Lock()
	if a.names[h] {
		a.mu.Unlock()
		return
	}
	if now.Sub(a.window) >= absentWindow {
		a.window, a.sent = now, 0
	}
	if a.sent >= absentBurst {
		a.mu.Unlock()
		return
	}
	a.sent++
	a.mu.Unlock()
	p.sendCtl(from, ctlAbsent, h)
}

// onSolicit answers a starting peer's solicit with the names registered
// here (at most as many as the engine announces per round), as unicast
// name replies: its engine takes them as announcements.
func (p *IPCP) onSolicit(from MAC) {
	a := &p.abs
	a.mu.Lock()
	hs := make([]layer.Hash, 0, min(len(a.names), maxAnnounce))
	for h := range a.names {
		if len(hs) == maxAnnounce {
			break
		}
		hs = append(hs, h)
	}
	a.mu.Unlock()
	for _, h := range hs {
		pkt, err := engine.EncodeMsg(make([]byte, HeaderLen, HeaderLen+96), &engine.Msg{Type: engine.MsgNameReply, Hash: h[:]})
		if err != nil {
			continue
		}
		p.writeCtl(pkt, from)
	}
}

// maxAnnounce is the engine's bound on the names announced per round.
const maxAnnounce = 256

// sendCtl sends an eth-only control message to dst; false if the device
// refused it.
func (p *IPCP) sendCtl(dst MAC, typ byte, h layer.Hash) bool {
	return p.writeCtl(encodeCtl(make([]byte, HeaderLen, MinFrame), typ, h), dst)
}

// writeCtl puts the control message in pkt (after HeaderLen bytes of
// room) on the wire to dst; false if the device refused it.
func (p *IPCP) writeCtl(pkt []byte, dst MAC) bool {
	if err := (wire{p}).Send(pkt, dst, CtlEID); err != nil {
		p.eng.C.TxError.Add(1)
		return false
	}
	p.eng.C.CtlOut.Add(1)
	return true
}

// solicitLoop broadcasts the start solicits and then lets the holder set
// count as complete solicitWait after the last one, if one went out (a
// stream device without its peer yet refuses them: then the holder set
// waits for the announcements).
func (p *IPCP) solicitLoop(stop <-chan struct{}) {
	t := time.NewTimer(0)
	defer t.Stop()
	sent := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		sent = p.sendCtl(Broadcast, ctlSolicit, layer.Hash{}) || sent
		a := &p.abs
		a.mu.Lock()
		a.solicits--
		more := a.solicits > 0
		if w := time.Now().Add(solicitWait); !more && sent && w.Before(a.warmAt) {
			a.warmAt = w
		}
		a.mu.Unlock()
		if !more {
			return
		}
		t.Reset(p.retryBase())
	}
}

func (p *IPCP) retryBase() time.Duration {
	if p.cfg.RetryBase > 0 {
		return p.cfg.RetryBase
	}
	return 20 * time.Millisecond
}

// ethControl handles a control frame's payload before the engine: it
// consumes the eth-only messages, answers queries "not here" and learns
// holders from name replies; it reports whether the engine still gets b.
func (p *IPCP) ethControl(b []byte, from MAC) bool {
	if isEthCtl(b) {
		typ, h, err := decodeCtl(b)
		if err != nil {
			p.eng.C.Malformed.Add(1)
			return false
		}
		p.eng.C.CtlIn.Add(1)
		switch typ {
		case ctlAbsent:
			p.onAbsent(h, from)
		case ctlSolicit:
			// A shim that just started: it answers "not here" and may
			// hold names soon, so it counts as a holder from now on.
			p.heardHolder(from, time.Now())
			p.onSolicit(from)
		}
		return false
	}
	if engine.IsKex(b) {
		return true
	}
	m, err := engine.DecodeMsg(b)
	if err != nil {
		return true // the engine counts it
	}
	switch m.Type {
	case engine.MsgNameQuery:
		if p.quickOn() {
			p.onQuery(layer.Hash(m.Hash), from, time.Now())
		}
	case engine.MsgNameReply:
		p.heardHolder(from, time.Now())
	}
	return true
}

// quickNotFound is the error of a query that every holder answered "not here".
func quickNotFound(name string) error {
	return fmt.Errorf("eth: query %q: every holder on the segment said not here: %w", name, flow.ErrNotFound)
}
