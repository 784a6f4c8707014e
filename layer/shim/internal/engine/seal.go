package engine

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/kex"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/crypto/sealflow"
	"github.com/ouronet/ouro/flow"
)

// Sealed flows over a shim (docs/wire/shims.md, "Sealed allocation";
// docs/security.md, "Sealed flows"). The allocation carries the hybrid
// key exchange of crypto/kex, cut into KexMsg pieces that fit a frame:
//
//	requester                                         responder
//	  AllocReq [qos sealed] + KexMsg Hello pieces ──▶  (pieces gathered)
//	           ◀── KexMsg Reply pieces ──
//	  KexMsg Finish ──▶  signature checked, then Upcalls.FlowReq
//	           ◀── AllocResp [result, src eid, dst eid] ──
//
// Both ends sign a transcript that includes the layer, the name's hash
// and the QoS of the AllocReq as each saw it, so a relay that changes
// them breaks the handshake; one that strips the seal request makes the
// responder answer an unsealed AllocResp, which the requester refuses
// (it never takes an unsealed flow for a sealed one). The requester's
// identity is proved (Finish) before the accepting program hears of the
// flow, the responder's (Reply) before Alloc returns. Each SDU is then
// sealed with crypto/seal (ChaCha20-Poly1305, a counter, a replay
// window): forged, damaged, replayed or cut SDUs are dropped and counted
// (Drops.Tampered, Drops.Replayed), never delivered. The AEAD is
// negotiated in the key exchange (crypto/kex, "AEAD negotiation"):
// AES-256-GCM where both ends have hardware AES, else
// ChaCha20-Poly1305, unless SealConfig.AEAD forces one; the flow's
// peer (flow.Peer.AEAD) names it.

// SealConfig lets an engine seal flows.
type SealConfig struct {
	// Layer is the layer's name, part of what both ends sign.
	Layer string
	// Signer is the node's identity (in a node, a signing capability to
	// its signer component); required.
	Signer identity.Signer
	// Name names the document signed for Signer if it hands out none.
	Name string
	// Require seals every flow: the ones this engine allocates even
	// when their QoS does not ask, and it refuses unsealed requests.
	Require bool
	// Accept, if set, decides which peers may be at the other end of a
	// sealed flow (both directions): an error refuses the allocation.
	Accept func(peer identity.Document) error
	// TicketLife is how long a resumption ticket stays usable (0:
	// sealflow.DefaultTicketLife; negative: never resume, always make the
	// full key exchange).
	TicketLife time.Duration
	// AEAD, if set, is the only AEAD this engine seals with (a peer
	// that does not take it fails the key exchange); zero negotiates
	// with this host's preference (seal.Preferred).
	AEAD seal.AEAD
}

// aeads is the list the key exchange offers or takes (nil: kex's
// default, seal.Preferred).
func (c *SealConfig) aeads() []seal.AEAD {
	if c.AEAD == 0 {
		return nil
	}
	return []seal.AEAD{c.AEAD}
}

// SealedMaxSDU is the largest SDU of a sealed flow: sealing adds
// seal.Overhead bytes to each.
const SealedMaxSDU = flow.MaxSDU - seal.Overhead

// SealedMaxSDU is the largest SDU of the engine's sealed flows: its
// MaxSDU less what sealing adds (SealedMaxSDU with the default MaxSDU).
func (e *Engine[A]) SealedMaxSDU() int { return e.cfg.MaxSDU - seal.Overhead }

// MaxSDU is the largest SDU of the engine's unsealed flows
// (Config.MaxSDU).
func (e *Engine[A]) MaxSDU() int { return e.cfg.MaxSDU }

// flowLimit is what a flow's two ends are told of its largest SDU: a
// sealed flow's (sl not nil), else the engine's where it is not the
// default (0: flow.MaxSDU).
func (e *Engine[A]) flowLimit(sl *sealing) int {
	switch {
	case sl != nil:
		return e.SealedMaxSDU()
	case e.cfg.MaxSDU != flow.MaxSDU:
		return e.cfg.MaxSDU
	}
	return 0
}

// sealState is an engine's sealing: its credentials, made once.
type sealState struct {
	cfg   SealConfig
	docs  sealflow.DocCache
	mu    sync.Mutex
	doc   []byte
	ephs  chan *kex.Ephemeral // initiators' key pairs made ahead of time
	rkeys chan *kex.ResumeKey // X25519 pairs made ahead of time: resumptions' and responders'
}

// kexContext is what both ends of a sealed flow sign besides the
// exchange itself: the layer, the destination's hash and the QoS spec as
// the AllocReq carried them.
type kexContext struct {
	_     struct{} `cbor:",toarray"`
	Layer string
	Hash  []byte
	QoS   flow.QoS
}

func (e *Engine[A]) kexContext(hash []byte, q flow.QoS) ([]byte, error) {
	return encMode.Marshal(kexContext{Layer: e.seal.cfg.Layer, Hash: hash, QoS: q})
}

// kexBase is the kex.Config both sides of a full exchange start from:
// the node's signer and document, the flow's context, the cache of
// verified documents.
func (e *Engine[A]) kexBase(ctx context.Context, hash []byte, q flow.QoS) (kex.Config, error) {
	s := e.seal
	c, err := e.kexContext(hash, q)
	if err != nil {
		return kex.Config{}, err
	}
	s.mu.Lock()
	doc := s.doc
	s.mu.Unlock()
	if doc == nil {
		if doc, err = sealflow.Document(ctx, s.cfg.Signer, s.cfg.Name); err != nil {
			return kex.Config{}, fmt.Errorf("identity document: %w", err)
		}
		s.mu.Lock()
		s.doc = doc
		s.mu.Unlock()
	}
	return kex.Config{Signer: s.cfg.Signer, Doc: doc, Context: c, Accept: s.cfg.Accept, Verify: s.docs.Verify, AEADs: s.cfg.aeads()}, nil
}

// kexConfig is an initiator's kex.Config, with key pairs made ahead of
// time if there are some left.
func (e *Engine[A]) kexConfig(ctx context.Context, hash []byte, q flow.QoS) (kex.Config, error) {
	cfg, err := e.kexBase(ctx, hash, q)
	if err != nil {
		return cfg, err
	}
	select {
	case cfg.Ephemeral = <-e.seal.ephs:
	default: // all taken: kex makes them now
	}
	return cfg, nil
}

// ephAhead is how many key pairs an engine keeps made ahead of time.
const ephAhead = 2

// keysAhead starts making key pairs ahead of time, from Start on when
// the engine can seal (one without a SealConfig makes none): full
// exchanges' initiators' (X25519 and ML-KEM-768, about 0.1 ms) and
// X25519 pairs for resumptions and full exchanges' responders (which
// need no ML-KEM pair), ephAhead of each. Each is used for one exchange.
func (e *Engine[A]) keysAhead() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	e.wg.Add(3)
	e.cfg.Runner.Go(func() { keepMade(e, e.seal.ephs, kex.NewEphemeral, "key pairs") })
	e.cfg.Runner.Go(func() { keepMade(e, e.seal.rkeys, kex.NewResumeKey, "resumption key pairs") })
	e.cfg.Runner.Go(func() { defer e.wg.Done(); warmCodec() })
}

// warmCodec readies at Start the codec's per-type state that the first
// sealed allocation would build on its path: the exchange's messages
// (kex.Warm) and the flow context.
func warmCodec() {
	_, _ = encMode.Marshal(kexContext{})
	kex.Warm()
}

func keepMade[A Addr, T any](e *Engine[A], ch chan<- T, mk func() (T, error), what string) {
	defer e.wg.Done()
	if err := sealflow.KeepMade(ch, e.ctx.Done(), mk); err != nil && e.cfg.Log != nil {
		e.cfg.Log.Warn("making keys ahead of time failed", "shim", e.cfg.Kind, "what", what, "err", err)
	}
}

// resumeKey returns an X25519 key pair made ahead of time (a
// resumption's or a full exchange's responder's), or nil
// (kex makes one).
func (e *Engine[A]) resumeKey() *kex.ResumeKey {
	select {
	case k := <-e.seal.rkeys:
		return k
	default:
		return nil
	}
}

// sealing is a finished key exchange's half of a flow.
type sealing struct {
	sealer *seal.Sealer
	opener *seal.Opener
	peer   *flow.Peer
	reply  [][]byte // resumed, responder: the ResumeReply's packets, sent before the AllocResp
}

func newSealing(r kex.Result) (*sealing, error) {
	s, err := seal.NewSealer(r.AEAD, r.Keys.Send[:])
	if err != nil {
		return nil, err
	}
	o, err := seal.NewOpener(r.AEAD, r.Keys.Recv[:])
	if err != nil {
		return nil, err
	}
	return &sealing{sealer: s, opener: o, peer: sealflow.PeerSealed(r.Peer, r.AEAD)}, nil
}

// kexPkts encodes the pieces of a key-exchange message as control
// packets, each with the shim's headroom.
func (e *Engine[A]) kexPkts(m KexMsg, b []byte) ([][]byte, error) {
	ps := sealflow.Split(b, KexChunk)
	if len(ps) > sealflow.MaxParts {
		return nil, fmt.Errorf("key exchange message of %d bytes: more than %d pieces", len(b), sealflow.MaxParts)
	}
	out := make([][]byte, len(ps))
	for i, p := range ps {
		m.Part, m.Parts, m.Data = uint8(i), uint8(len(ps)), p
		pkt, err := EncodeKex(make([]byte, e.cfg.Headroom, e.cfg.Headroom+len(p)+32), &m)
		if err != nil {
			return nil, err
		}
		out[i] = pkt
	}
	return out, nil
}

// handshake is a responder's sealed request in progress: its Hello being
// gathered, then its Reply sent and the Finish awaited. It holds the
// request's place (inbound, the peer's pending count, inFlight) until it
// is accepted or dropped.
type handshake struct {
	name    string
	hash    []byte
	qos     flow.QoS
	in      *inbound
	hello   sealflow.Pieces
	finish  sealflow.Pieces
	resume  sealflow.Pieces
	busy    bool // a goroutine is answering the Hello
	rs      *kex.Responder
	reply   [][]byte // the Reply's packets, resent to a repeated request
	expires time.Time
}

// onKex takes a piece of a key exchange.
func (e *Engine[A]) onKex(p []byte, from A) {
	m, err := DecodeKex(p)
	if err != nil {
		e.C.Malformed.Add(1)
		return
	}
	e.C.CtlIn.Add(1)
	if m.Step == StepReply || m.Step == StepResumeReply || m.Step == StepNoTicket { // we are the requester
		e.mu.RLock()
		pd := e.pend[m.Dst]
		e.mu.RUnlock()
		if pd != nil && pd.kex != nil && pd.peer == from && pd.reqID == m.ReqID {
			select {
			case pd.kex <- m:
			default: // more than a Reply's pieces: repeats
			}
		}
		return
	}
	key := inKey[A]{from, m.ReqID, m.Src}
	e.mu.Lock()
	h := e.hs[key]
	if h == nil {
		var resp *Msg
		if in := e.inbound[key]; in != nil && m.Step == StepFinish {
			resp = in.resp // a repeated Finish: the AllocResp was lost
		}
		e.mu.Unlock()
		if resp != nil {
			e.sendMsg(resp, from)
		}
		return
	}
	switch m.Step {
	case StepResume:
		if h.busy || h.rs != nil {
			e.mu.Unlock()
			return
		}
		hello, ok := h.resume.Add(m.Part, m.Parts, m.Data)
		if !ok {
			e.mu.Unlock()
			return
		}
		h.resume = sealflow.Pieces{}
		var t kex.Ticket
		found := false
		if id, err := kex.ResumeTicketID(hello); err == nil && e.tickets != nil {
			t, found = e.tickets.TakeIn(id, time.Now())
		}
		if !found {
			// Unknown, used, expired, or from before a restart (replays
			// end here too): the requester makes the full exchange on
			// the same request.
			e.mu.Unlock()
			e.C.NoTicket.Add(1)
			e.sendKex(KexMsg{Type: MsgKex, ReqID: key.reqID, Dst: key.src, Step: StepNoTicket, Parts: 1, Data: []byte{0}}, from)
			return
		}
		h.busy = true
		e.wg.Add(1)
		e.mu.Unlock()
		e.cfg.Runner.Go(func() { e.respondResume(key, h, t, hello) })
	case StepHello:
		if h.busy || h.rs != nil {
			e.mu.Unlock()
			return
		}
		hello, ok := h.hello.Add(m.Part, m.Parts, m.Data)
		if !ok {
			e.mu.Unlock()
			return
		}
		h.busy = true
		e.wg.Add(1)
		e.mu.Unlock()
		e.cfg.Runner.Go(func() { e.respond(key, h, hello) })
	case StepFinish:
		if h.rs == nil {
			e.mu.Unlock()
			return
		}
		fin, ok := h.finish.Add(m.Part, m.Parts, m.Data)
		if !ok {
			e.mu.Unlock()
			return
		}
		delete(e.hs, key) // the goroutine below owns it now
		e.wg.Add(1)
		e.mu.Unlock()
		e.cfg.Runner.Go(func() {
			res, err := h.rs.Finish(fin)
			var sl *sealing
			if err == nil {
				sl, err = newSealing(res)
			}
			if err == nil && e.tickets != nil {
				e.tickets.PutIn(res.Next, time.Now())
			}
			if err != nil {
				e.mu.Lock()
				resp := e.dropHandshakeLocked(key, h)
				e.mu.Unlock()
				e.wg.Done()
				e.kexFailed(key.peer, h.name, err)
				e.sendMsg(resp, key.peer)
				return
			}
			e.accept(key, h.in, h.name, h.qos, sl)
		})
	}
}

// respond answers a whole Hello with the Reply.
func (e *Engine[A]) respond(key inKey[A], h *handshake, hello []byte) {
	defer e.wg.Done()
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Timeout)
	defer cancel()
	var pkts [][]byte
	var rs *kex.Responder
	cfg, err := e.kexBase(ctx, h.hash, h.qos)
	if err == nil {
		cfg.ResponderKey = e.resumeKey() // X25519 only: a responder makes no ML-KEM pair
		var reply []byte
		if rs, reply, err = kex.Respond(ctx, cfg, hello); err == nil {
			if pkts, err = e.kexPkts(KexMsg{Type: MsgKex, ReqID: key.reqID, Dst: key.src, Step: StepReply}, reply); err == nil {
				e.mu.Lock()
				if e.hs[key] == h {
					h.rs, h.reply, h.busy = rs, pkts, false
				} else {
					pkts = nil // expired meanwhile
				}
				e.mu.Unlock()
			}
		}
	}
	if err != nil {
		e.mu.Lock()
		var resp *Msg
		if e.hs[key] == h {
			delete(e.hs, key)
			resp = e.dropHandshakeLocked(key, h)
		}
		e.mu.Unlock()
		e.kexFailed(key.peer, h.name, err)
		if resp != nil {
			e.sendMsg(resp, key.peer)
		}
		return
	}
	e.resend(pkts, key.peer)
	rs.Derive() // while the requester works, not after its Finish
}

// resend sends copies of kept packets: Wire.Send writes the shim header
// into the buffer it is given, and a kept Reply may be resent by the
// receive goroutine while another send of it is in progress.
func (e *Engine[A]) resend(pkts [][]byte, to A) {
	for _, p := range pkts {
		e.sendPkt(bytes.Clone(p), to)
	}
}

// respondResume answers a ResumeHello whose ticket was here (taken): if
// its MAC checks, the flow goes to the accepting program and the
// ResumeReply goes out before the AllocResp.
func (e *Engine[A]) respondResume(key inKey[A], h *handshake, t kex.Ticket, hello []byte) {
	c, err := e.kexContext(h.hash, h.qos)
	var res kex.Result
	var reply []byte
	if err == nil {
		res, reply, err = kex.RespondResume(t, c, hello, e.seal.cfg.Accept, e.resumeKey(), e.seal.cfg.aeads())
	}
	var sl *sealing
	if err == nil {
		sl, err = newSealing(res)
	}
	if err == nil {
		sl.reply, err = e.kexPkts(KexMsg{Type: MsgKex, ReqID: key.reqID, Dst: key.src, Step: StepResumeReply}, reply)
	}
	e.mu.Lock()
	if e.hs[key] != h { // expired meanwhile
		e.mu.Unlock()
		e.wg.Done()
		return
	}
	delete(e.hs, key)
	if err != nil {
		resp := e.dropHandshakeLocked(key, h)
		e.mu.Unlock()
		e.wg.Done()
		e.kexFailed(key.peer, h.name, err)
		e.sendMsg(resp, key.peer)
		return
	}
	e.mu.Unlock()
	if e.tickets != nil {
		e.tickets.PutIn(res.Next, time.Now())
	}
	e.C.Resumed.Add(1)
	e.accept(key, h.in, h.name, h.qos, sl)
}

// sendKex sends one key-exchange piece.
func (e *Engine[A]) sendKex(m KexMsg, to A) {
	pkt, err := EncodeKex(make([]byte, e.cfg.Headroom, e.cfg.Headroom+32+len(m.Data)), &m)
	if err != nil {
		e.C.TxError.Add(1)
		return
	}
	e.sendPkt(pkt, to)
}

func (e *Engine[A]) kexFailed(peer A, name string, err error) {
	e.C.KexFailed.Add(1)
	if e.cfg.Log != nil {
		e.cfg.Log.Warn("sealed flow refused", "shim", e.cfg.Kind, "dst", name, "peer", peer, "err", err)
	}
}

// dropHandshakeLocked ends h (already out of e.hs) as a refusal: its
// place is given back and the refusal is remembered for repeats of the
// request. It returns the AllocResp to send. Called with mu held.
func (e *Engine[A]) dropHandshakeLocked(key inKey[A], h *handshake) *Msg {
	resp := &Msg{Type: MsgAllocResp, ReqID: key.reqID, Dst: key.src, Result: ResRefused}
	h.in.resp, h.in.at = resp, time.Now()
	e.refused++
	e.inFlight--
	if ps := e.peers[key.peer]; ps != nil {
		ps.pending--
	}
	e.peerDone(key.peer)
	return resp
}

// expireHandshakes drops handshakes whose requester went quiet. Called
// with mu held.
func (e *Engine[A]) expireHandshakes(now time.Time) {
	for k, h := range e.hs {
		if now.After(h.expires) && !h.busy {
			delete(e.hs, k)
			e.dropHandshakeLocked(k, h)
			e.C.KexFailed.Add(1)
		}
	}
}

// SealFrom is the SealConfig of a shim configured with signer s (nil: it
// cannot seal), require (seal every flow), peers (if not empty, the
// only node ids a sealed flow may have at its other end) and aead (if
// set, the only AEAD it seals with). Asking to seal without a signer is
// a configuration error.
func SealFrom(kind, layerName, name string, s identity.Signer, require bool, peers []string, ticketLife time.Duration, aead seal.AEAD) (*SealConfig, error) {
	if aead != 0 && !aead.Known() {
		return nil, fmt.Errorf("%s: %s: seal AEAD %s: %w: %w", kind, name, aead, seal.ErrAEAD, flow.ErrInvalid)
	}
	if s == nil {
		if require || len(peers) > 0 {
			return nil, fmt.Errorf("%s: %s: seal or seal_peers set, and no signer (node identity) to seal with: %w", kind, name, flow.ErrInvalid)
		}
		return nil, nil
	}
	sc := &SealConfig{Layer: layerName, Signer: s, Name: name, Require: require, TicketLife: ticketLife, AEAD: aead}
	if len(peers) > 0 {
		allowed := slices.Clone(peers)
		sc.Accept = func(d identity.Document) error {
			if !slices.Contains(allowed, d.ID) {
				return fmt.Errorf("node %s (%q) is not in seal_peers: %w", d.ID, d.Name, identity.ErrUnknownKey)
			}
			return nil
		}
	}
	return sc, nil
}

// takeTicket returns (and forgets) a ticket dst issued, if there is one.
func (e *Engine[A]) takeTicket(dst A) (kex.Ticket, bool) {
	if e.tickets == nil {
		return kex.Ticket{}, false
	}
	return e.tickets.TakeOut(dst, time.Now())
}

// putTicket keeps the ticket a finished exchange with dst left.
func (e *Engine[A]) putTicket(dst A, t kex.Ticket) {
	if e.tickets != nil {
		e.tickets.PutOut(dst, t, time.Now())
	}
}
