package fa

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/kex"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/crypto/sealflow"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
)

// Sealed flows (docs/wire/kex.md): the allocation carries the key
// exchange of crypto/kex, and the flow's SDUs are sealed with
// crypto/seal by the IPCPs at its two ends, so that no forwarder between
// them reads or changes them undetected. The key exchange negotiates the
// AEAD (AES-256-GCM where both ends have hardware AES, else
// ChaCha20-Poly1305; SealConfig.AEAD forces one); the flow's peer
// (flow.Peer.AEAD) names it.
//
//	requester                                     responder
//	  Req [.., Parts, Part, Kex: Hello piece] ──▶  (pieces gathered)
//	        ◀── Reply [Parts, Part, Kex: Reply piece] ──
//	  Finish [Kex: Finish] ──▶  signature checked, then Upcalls.FlowReq
//	        ◀── Resp [result, src eid, dst eid] ──
//
// The requester's identity is proved (Finish) before the accepting
// program hears of the flow, and the responder's (Reply) before the
// requester's Alloc returns.
//
// Between members that have made a key exchange before, the allocation
// resumes from a ticket the last one left (tickets.go):
//
//	requester                                     responder
//	  Resume [.., Kex: ResumeHello] ──▶  ticket taken, MAC checked,
//	                                     then Upcalls.FlowReq
//	        ◀── Resp [result, src eid, dst eid, Kex: ResumeReply] ──
//
// One round trip, as an unsealed allocation; a responder that has no
// such ticket answers ResNoTicket and the requester makes the full
// exchange above.

// SealConfig lets an Allocator seal flows.
type SealConfig struct {
	// Credentials returns the node's signer and signed identity document
	// (the IPCP's; the key stays with the signer). Required.
	Credentials func(ctx context.Context) (identity.Signer, []byte, error)
	// Layer is the layer's name, part of what both ends sign.
	Layer string
	// Require seals every flow of this member: it seals the flows it
	// allocates even when their QoS does not ask, and refuses requests
	// that come unsealed.
	Require bool
	// Accept, if set, decides which peers may be at the other end of a
	// sealed flow (both directions): an error refuses the allocation.
	Accept func(peer identity.Document) error
	// MaxSDU returns the layer's largest SDU now (nil or 0:
	// flow.MaxSDU); a sealed flow carries seal.Overhead bytes less.
	MaxSDU func() int
	// TicketLife is how long a resumption ticket stays usable (0:
	// DefaultTicketLife; negative: never resume, always make the full
	// key exchange).
	TicketLife time.Duration
	// AEAD, if set, is the only AEAD this member seals with (a peer
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

// Pieces of a key-exchange message.
const (
	// KexChunk is the largest piece of a key-exchange message one
	// flow-allocator message carries: with a Req's other fields (a
	// 255-byte name at most) it stays within one control message.
	KexChunk = 900
	// MaxParts is the most pieces a key-exchange message is cut into.
	MaxParts = sealflow.MaxParts
	// DefaultTicketLife is how long a resumption ticket stays usable.
	DefaultTicketLife = sealflow.DefaultTicketLife
	// maxHandshakes bounds the handshakes a responder keeps, with the
	// requests being accepted.
	maxHandshakes = 64
)

// split cuts a key-exchange message into pieces of KexChunk bytes.
func split(b []byte) [][]byte { return sealflow.Split(b, KexChunk) }

// pieces gathers the pieces of one key-exchange message.
type pieces struct{ sealflow.Pieces }

// add takes m's piece and returns the whole message once every piece is
// in. A piece that disagrees on the count starts over.
func (p *pieces) add(m *Msg) ([]byte, bool) { return p.Add(m.Part, m.Parts, m.Kex) }

// kexContext is what both ends of a sealed flow sign besides the
// exchange itself: the layer, the destination's hash, the source name
// and the QoS spec as the Req carried them. A forwarder that changes
// any of them (a downgrade: stripping the seal request) breaks the
// handshake.
type kexContext struct {
	_     struct{} `cbor:",toarray"`
	Layer string
	Hash  []byte
	Name  string
	QoS   flow.QoS
}

func (a *Allocator) context(hash []byte, name string, q flow.QoS) ([]byte, error) {
	return codec.Marshal(kexContext{Layer: a.cfg.Seal.Layer, Hash: hash, Name: name, QoS: q})
}

// kexBase is the kex.Config both sides of a full exchange start from:
// the member's signer and document, the flow's context, the cache of
// verified documents.
func (a *Allocator) kexBase(ctx context.Context, c []byte) (kex.Config, error) {
	s, doc, err := a.cfg.Seal.Credentials(ctx)
	if err != nil {
		return kex.Config{}, fmt.Errorf("fa: credentials: %w", err)
	}
	return kex.Config{Signer: s, Doc: doc, Context: c, Accept: a.cfg.Seal.Accept, Verify: a.docs.Verify, AEADs: a.cfg.Seal.aeads()}, nil
}

// kexConfig is an initiator's kex.Config, with key pairs made ahead of
// time if there are some left.
func (a *Allocator) kexConfig(ctx context.Context, c []byte) (kex.Config, error) {
	cfg, err := a.kexBase(ctx, c)
	if err != nil {
		return cfg, err
	}
	select {
	case cfg.Ephemeral = <-a.ephs:
	default: // all taken: kex makes them now
	}
	return cfg, nil
}

// keysAhead starts making key pairs ahead of time, from Start on when
// the member can seal (an Allocator without a SealConfig makes none):
// made at the first sealed allocation instead, they cost that
// allocation their making and the refill's competition for the CPU
// (docs/benchmarks.md). Full exchanges'
// initiators' (an X25519 and an ML-KEM-768 pair, about 0.1 ms) and X25519
// pairs for resumptions (two scalar multiplications of a resumption's
// four are then off the critical path) and for full exchanges'
// responders (which need no ML-KEM pair), ephAhead of each; each is used
// once.
func (a *Allocator) keysAhead() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	a.wg.Add(3)
	a.cfg.Runner.Go(func() { keepMade(a, a.ephs, kex.NewEphemeral, "key pairs") })
	a.cfg.Runner.Go(func() { keepMade(a, a.rkeys, kex.NewResumeKey, "resumption key pairs") })
	a.cfg.Runner.Go(func() { defer a.wg.Done(); warmCodec() })
}

// warmCodec readies at Start the codec's per-type state that the first
// sealed allocation would build on its path: the exchange's messages
// (kex.Warm) and the flow context, whose first encoding alone took
// 0.34-0.43 ms of a responder's Reply between two router processes.
func warmCodec() {
	_, _ = codec.Marshal(kexContext{})
	kex.Warm()
}

// resumeKey returns an X25519 key pair made ahead of time (a
// resumption's or a full exchange's responder's), or nil
// (kex makes one).
func (a *Allocator) resumeKey() *kex.ResumeKey {
	select {
	case k := <-a.rkeys:
		return k
	default:
		return nil
	}
}

// ephAhead is how many key pairs of each kind an Allocator keeps made.
const ephAhead = 2

// keepMade keeps ch full of values made by mk until the Allocator stops.
func keepMade[T any](a *Allocator, ch chan<- T, mk func() (T, error), what string) {
	defer a.wg.Done()
	if err := sealflow.KeepMade(ch, a.ctx.Done(), mk); err != nil {
		a.cfg.Log.Warn("making keys ahead of time failed", "what", what, "err", err)
	}
}

// SealedMaxSDU is the largest SDU of a sealed flow (both ends are told).
func (a *Allocator) SealedMaxSDU() int {
	n := flow.MaxSDU
	if f := a.cfg.Seal.MaxSDU; f != nil && f() > 0 {
		n = f()
	}
	return n - seal.Overhead
}

// sealing is a finished key exchange, before its flow exists.
type sealing struct {
	res     kex.Result
	resumed bool   // from a ticket
	reply   []byte // resumed, responder: the ResumeReply its Resp carries
}

// install gives f the keys and the peer of s.
func (s *sealing) install(f *Flow) error {
	var err error
	if f.Sealer, err = seal.NewSealer(s.res.AEAD, s.res.Keys.Send[:]); err != nil {
		return err
	}
	if f.Opener, err = seal.NewOpener(s.res.AEAD, s.res.Keys.Recv[:]); err != nil {
		return err
	}
	f.Peer = sealflow.PeerSealed(s.res.Peer, s.res.AEAD)
	return nil
}

// PeerOf is a verified identity document as the flow API shows it.
func PeerOf(d identity.Document) *flow.Peer { return sealflow.PeerOf(d) }

// handshake is a responder's sealed request in progress: its Hello
// being gathered, then its Reply sent and the Finish awaited.
type handshake struct {
	hash       []byte
	name       string // the registered name the request is for
	srcName    string
	qos        flow.QoS
	hello      pieces
	responding bool           // a goroutine is answering the Hello
	rs         *kex.Responder // set once the Reply is made
	reply      []*Msg         // the Reply's pieces, resent to a repeated Req
	expires    time.Time
}

// onSealedReq takes a piece of a sealed request from src.
func (a *Allocator) onSealedReq(src layer.Addr, m *Msg, name string) {
	key := inKey{src, m.SrcEID}
	now := time.Now()
	a.mu.Lock()
	h := a.hs[key]
	if h == nil {
		if a.cfg.Seal == nil {
			a.mu.Unlock()
			a.c.refused.Add(1)
			a.cfg.Log.Warn("sealed flow refused: this member cannot seal flows", "dst", name, "from", src)
			a.send(src, &Msg{Type: MsgResp, DstEID: m.SrcEID, Result: ResRefused})
			return
		}
		a.expireLocked(now)
		if len(a.hs)+len(a.inbound) >= maxHandshakes {
			a.mu.Unlock()
			a.c.refused.Add(1)
			a.send(src, &Msg{Type: MsgResp, DstEID: m.SrcEID, Result: ResBusy})
			return
		}
		h = &handshake{hash: m.Hash, name: name, srcName: m.Name, qos: m.QoS, expires: now.Add(a.cfg.Timeout)}
		a.hs[key] = h
	}
	if h.reply != nil { // a repeated Req: the Reply was lost
		reply := h.reply
		a.mu.Unlock()
		for _, r := range reply {
			a.send(src, r)
		}
		return
	}
	hello, ok := h.hello.add(m)
	if !ok || h.responding {
		a.mu.Unlock()
		return
	}
	h.responding = true
	a.wg.Add(1)
	a.mu.Unlock()
	a.cfg.Runner.Go(func() { a.respond(key, h, hello) })
}

// respond answers a whole Hello with the Reply.
func (a *Allocator) respond(key inKey, h *handshake, hello []byte) {
	defer a.wg.Done()
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.Timeout)
	defer cancel()
	fail := func(err error) {
		a.mu.Lock()
		delete(a.hs, key)
		a.mu.Unlock()
		a.c.kexFailed.Add(1)
		a.c.refused.Add(1)
		a.cfg.Log.Warn("sealed flow refused", "dst", h.name, "from", key.src, "err", err)
		a.send(key.src, &Msg{Type: MsgResp, DstEID: key.eid, Result: ResRefused})
	}
	c, err := a.context(h.hash, h.srcName, h.qos)
	if err != nil {
		fail(err)
		return
	}
	cfg, err := a.kexBase(ctx, c)
	if err != nil {
		fail(err)
		return
	}
	cfg.ResponderKey = a.resumeKey() // X25519 only: a responder makes no ML-KEM pair
	rs, reply, err := kex.Respond(ctx, cfg, hello)
	if err != nil {
		fail(err)
		return
	}
	ps := split(reply)
	msgs := make([]*Msg, len(ps))
	for i, p := range ps {
		msgs[i] = &Msg{Type: MsgReply, DstEID: key.eid, Kex: p, Part: uint8(i), Parts: uint8(len(ps))}
	}
	a.mu.Lock()
	h.rs, h.reply = rs, msgs
	a.mu.Unlock()
	for _, r := range msgs {
		a.send(key.src, r)
	}
	rs.Derive() // while the requester works, not after its Finish
}

// onFinish takes a requester's Finish: once its signature checks, the
// flow goes to the accepting program.
func (a *Allocator) onFinish(src layer.Addr, m *Msg) {
	key := inKey{src, m.SrcEID}
	a.mu.Lock()
	if f := a.byPeer[key]; f != nil { // a repeated Finish: the Resp was lost
		a.mu.Unlock()
		a.send(src, &Msg{Type: MsgResp, SrcEID: f.EID, DstEID: m.SrcEID})
		return
	}
	h := a.hs[key]
	if h == nil || h.rs == nil || a.stopped {
		a.mu.Unlock()
		a.c.unknownEID.Add(1)
		return
	}
	delete(a.hs, key)
	a.inbound[key] = true
	a.wg.Add(1)
	a.mu.Unlock()
	fin := append([]byte(nil), m.Kex...)
	a.cfg.Runner.Go(func() {
		res, err := h.rs.Finish(fin)
		if err != nil {
			a.kexRefused(key, "sealed flow to "+strconv.Quote(h.name), err)
			return
		}
		a.accept(key, h.name, h.srcName, h.qos, &sealing{res: res})
	})
}

// expireLocked forgets handshakes whose requester went quiet. Called
// with mu held.
func (a *Allocator) expireLocked(now time.Time) {
	for k, h := range a.hs {
		if now.After(h.expires) {
			delete(a.hs, k)
		}
	}
}

// startResume begins the requester's side from a ticket dst issued, if
// there is one: the Resume to send. No ticket (or resumption off): nil,
// and the caller makes the full key exchange.
func (a *Allocator) startResume(dst layer.Addr, m *Msg) (*kex.Resumer, []*Msg, error) {
	if a.tickets == nil {
		return nil, nil, nil
	}
	t, ok := a.tickets.TakeOut(dst, time.Now())
	if !ok {
		return nil, nil, nil
	}
	c, err := a.context(m.Hash, m.Name, m.QoS)
	if err != nil {
		return nil, nil, err
	}
	rm, hello, err := kex.StartResume(t, c, a.resumeKey(), a.cfg.Seal.aeads())
	if err != nil {
		return nil, nil, err
	}
	r := *m
	r.Type, r.Kex = MsgResume, hello
	return rm, []*Msg{&r}, nil
}

// onResume takes a Resume from src: if its ticket is here (taken now,
// once) and its MAC checks, the flow goes to the accepting program and
// the Resp carries the answer.
func (a *Allocator) onResume(src layer.Addr, m *Msg) {
	key := inKey{src, m.SrcEID}
	a.mu.Lock()
	name, answer := a.admitLocked(key, m)
	if name == "" {
		a.mu.Unlock()
		if answer != nil {
			a.send(src, answer)
		}
		return
	}
	if len(a.inbound) >= maxHandshakes {
		a.mu.Unlock()
		a.c.refused.Add(1)
		a.send(src, &Msg{Type: MsgResp, DstEID: m.SrcEID, Result: ResBusy})
		return
	}
	var t kex.Ticket
	ok := false
	if id, err := kex.ResumeTicketID(m.Kex); err == nil && a.tickets != nil {
		t, ok = a.tickets.TakeIn(id, time.Now())
	}
	if !ok {
		// Unknown, used, expired, or from before a restart: replays
		// end here too.
		a.mu.Unlock()
		a.c.noTicket.Add(1)
		a.send(src, &Msg{Type: MsgResp, DstEID: m.SrcEID, Result: ResNoTicket})
		return
	}
	a.inbound[key] = true
	a.wg.Add(1)
	a.mu.Unlock()
	a.cfg.Runner.Go(func() {
		res, reply, err := a.respondResume(t, m)
		if err != nil {
			a.kexRefused(key, "resumed sealed flow to "+strconv.Quote(name), err)
			return
		}
		a.accept(key, name, m.Name, m.QoS, &sealing{res: res, resumed: true, reply: reply})
	})
}

// kexRefused ends an incoming request in its accept stage (a.inbound,
// a.wg) whose key exchange failed: counted, logged, refused to the
// requester.
func (a *Allocator) kexRefused(key inKey, what string, err error) {
	a.mu.Lock()
	delete(a.inbound, key)
	a.mu.Unlock()
	a.wg.Done()
	a.c.kexFailed.Add(1)
	a.c.refused.Add(1)
	a.cfg.Log.Warn("refused", "what", what, "from", key.src, "err", err)
	a.send(key.src, &Msg{Type: MsgResp, DstEID: key.eid, Result: ResRefused})
}

func (a *Allocator) respondResume(t kex.Ticket, m *Msg) (kex.Result, []byte, error) {
	c, err := a.context(m.Hash, m.Name, m.QoS)
	if err != nil {
		return kex.Result{}, nil, err
	}
	return kex.RespondResume(t, c, m.Kex, a.cfg.Seal.Accept, a.resumeKey(), a.cfg.Seal.aeads())
}

// startSeal begins the requester's side: the Hello's pieces as Reqs.
func (a *Allocator) startSeal(ctx context.Context, m *Msg) (*kex.Initiator, []*Msg, error) {
	c, err := a.context(m.Hash, m.Name, m.QoS)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := a.kexConfig(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	in, hello, err := kex.Start(cfg)
	if err != nil {
		return nil, nil, err
	}
	ps := split(hello)
	msgs := make([]*Msg, len(ps))
	for i, p := range ps {
		r := *m
		r.Kex, r.Part, r.Parts = p, uint8(i), uint8(len(ps))
		msgs[i] = &r
	}
	return in, msgs, nil
}
