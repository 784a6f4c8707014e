package unicast

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/addr"
	"github.com/ouronet/ouro/layer/unicast/connmgr"
	"github.com/ouronet/ouro/layer/unicast/enroll"
	"github.com/ouronet/ouro/layer/unicast/fa"
)

// This file is the IPCP's side of the layer's trust (docs/security.md):
// the credentials it enrolls with, the admission check it makes as the
// enrolling member, the binding of addresses to keys in protected layers,
// and the counters of what it refused.

// documenter is a Signer that also hands out the node's signed identity
// document (the node's signer client does: the document carries the
// board and the image measurement, which the IPCP cannot know).
type documenter interface {
	Document(ctx context.Context) ([]byte, error)
}

// credentials returns what this IPCP enrolls and enrolls others with: its
// signer, its signed identity document (Config.Document, the signer's,
// or one it signs itself: no board, not measured) and certificate.
func (p *IPCP) credentials(ctx context.Context) (enroll.Credentials, error) {
	p.mu.Lock()
	doc := p.doc
	p.mu.Unlock()
	if doc == nil {
		var err error
		switch d, ok := p.cfg.Signer.(documenter); {
		case p.cfg.Document != nil:
			doc = p.cfg.Document
		case ok:
			doc, err = d.Document(ctx)
		default:
			doc, err = identity.NewDocument(p.cfg.Signer, p.cfg.Name, "", identity.Measurement{}, time.Now()).Sign(ctx, p.cfg.Signer)
		}
		if err != nil {
			return enroll.Credentials{}, fmt.Errorf("unicast: %s: identity document: %w", p.cfg.Name, err)
		}
		p.mu.Lock()
		p.doc = doc
		p.mu.Unlock()
	}
	return enroll.Credentials{Signer: p.cfg.Signer, Doc: doc, Cert: p.cfg.Cert, Clock: p.now}, nil
}

// Refusal reasons, as counted in Stats.Refused and shown by ouro stats
// as "refused.<reason>".
var refusalReasons = [...]struct {
	name string
	err  error
}{
	{"unknown_key", identity.ErrUnknownKey},
	{"bad_signature", identity.ErrBadSignature},
	{"expired", identity.ErrExpired},
	{"not_yet_valid", identity.ErrNotYetValid},
	{"revoked", identity.ErrRevoked},
	{"measurement", identity.ErrMeasurement},
	{"replay", identity.ErrReplay},
	{"scope", admission.ErrScope},
	{"malformed", identity.ErrMalformed},
	{"no_policy", admission.ErrNoPolicy},
}

// refusals counts enrollment refusals by reason; the last is "other".
type refusals struct {
	by   [len(refusalReasons) + 1]atomic.Uint64
	busy atomic.Uint64 // maxEnrolling in progress
}

// count counts err under the first reason it wraps.
func (r *refusals) count(err error) {
	for i, rr := range refusalReasons {
		if errors.Is(err, rr.err) {
			r.by[i].Add(1)
			return
		}
	}
	r.by[len(refusalReasons)].Add(1)
}

func (r *refusals) snapshot(into map[string]uint64) {
	for i, rr := range refusalReasons {
		into[rr.name] = r.by[i].Load()
	}
	into["other"] = r.by[len(refusalReasons)].Load()
	into["busy"] = r.busy.Load()
}

// Admit implements enroll.Member: the layer's admission policy applied to
// a new member that proved its key.
func (c *core) Admit(req enroll.Req, doc identity.Document) error {
	err := c.lc.Policy().Admit(doc, req.Cert, c.p.currentCRL(), c.p.now())
	return err
}

// keyAddr returns the address this IPCP's key derives in a protected
// layer with configuration lc.
func (p *IPCP) keyAddr(lc enroll.Config) layer.Addr {
	return addr.FromKey(lc.Layer, int(lc.AddrWidth), p.cfg.Signer.Public())
}

// assignProtected is assign for a protected layer: the address is the
// key's, whatever Config.Addr says (a static address different from it
// is an error), and one already in use is a collision nobody can resolve
// but by another key.
func (p *IPCP) assignProtected(lc enroll.Config, members enroll.Members) (layer.Addr, error) {
	a := p.keyAddr(lc)
	if p.cfg.Addr != 0 && p.cfg.Addr != a {
		return 0, fmt.Errorf("static address %d in layer %s, whose addresses derive from keys (this key's is %d): %w", p.cfg.Addr, lc.Layer, a, flow.ErrInvalid)
	}
	if members != nil && members.Has(a) {
		return 0, fmt.Errorf("address %d of this key is in use in layer %s (a collision of %d-byte addresses: use another key or a wider address): %w", a, lc.Layer, lc.AddrWidth, flow.ErrExists)
	}
	return a, nil
}

// checkPeer is the connection manager's Check: a neighbour that proved
// its key must pass the layer's admission policy and, in a protected
// layer, speak for the address it claims. A refusal is counted.
func (c *core) checkPeer(a layer.Addr, doc identity.Document, cert []byte) error {
	err := c.lc.Policy().Admit(doc, cert, c.p.currentCRL(), c.p.now())
	if err == nil && !c.bound(a, doc.Key) {
		err = fmt.Errorf("address %d is not that of key %s: %w", a, doc.ID, identity.ErrUnknownKey)
	}
	if k := c.router.KeyOf(a); err == nil && k != nil && !k.Equal(doc.Key) {
		// Even in an open layer, an address whose member routing knows
		// is that member's: nobody else takes over its adjacencies.
		err = fmt.Errorf("address %d belongs to key %s, not %s: %w", a, identity.NameOf(k), doc.ID, identity.ErrUnknownKey)
	}
	if err != nil {
		c.p.refused.count(err)
	}
	return err
}

// currentCRL returns the newest revocation list this IPCP knows, or nil.
func (p *IPCP) currentCRL() *identity.CRL {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crl
}

// takeCRL handles a revocation list from a neighbour: one of a layer
// authority's, newer than the one in use, replaces it, is passed on to
// every other neighbour and makes the membership loop check the
// neighbours again. An older list is a replay; a list of another issuer
// or one that does not verify is refused. Each is counted.
func (c *core) takeCRL(from connmgr.Neighbour, b []byte) {
	if err := c.takeCRLFrom(from, b); err != nil {
		c.p.refused.count(err)
		c.p.log().Warn("revocation list refused", "peer", from.Name, "err", err)
	}
}

// adoptCRL is takeCRL for a list given by management (ouro crl): the
// error is the caller's.
func (c *core) adoptCRL(b []byte) error {
	return c.takeCRLFrom(connmgr.Neighbour{Name: "management"}, b)
}

func (c *core) takeCRLFrom(from connmgr.Neighbour, b []byte) error {
	l, err := identity.DecodeCRL(b)
	if err == nil && !slices.ContainsFunc(c.lc.Admission.Authorities, func(k ed25519.PublicKey) bool { return k.Equal(l.Issuer) }) {
		err = fmt.Errorf("revocation list of %s, not an authority of the layer: %w", identity.NameOf(l.Issuer), identity.ErrUnknownKey)
	}
	c.p.mu.Lock()
	if err == nil && !l.Replaces(c.p.crl) {
		if c.p.crl != nil && l.Seq == c.p.crl.Seq {
			c.p.mu.Unlock()
			return nil // the list in use, back from a neighbour
		}
		err = fmt.Errorf("revocation list %d, %d in use: %w", l.Seq, c.p.crl.Seq, identity.ErrReplay)
	}
	if err == nil {
		c.p.crl, c.p.crlRaw = l, slices.Clone(b)
	}
	c.p.mu.Unlock()
	if err != nil {
		return err
	}
	c.p.log().Info("revocation list", "seq", l.Seq, "issuer", identity.NameOf(l.Issuer), "peer", from.Name, "serials", len(l.Serials), "keys", len(l.Keys))
	for _, n := range c.cm.Neighbours() {
		if n.Addr != from.Addr {
			c.cm.Send(n.Addr, connmgr.MsgCRL, b)
		}
	}
	select {
	case c.recheck <- struct{}{}:
	default:
	}
	return nil
}

// memberCheckPeriod is how often the membership loop checks the
// neighbours' certificates (expiry) without a new revocation list.
const memberCheckPeriod = 5 * time.Second

// memberLoop ends the adjacencies of neighbours that are no longer
// members: a certificate expired or revoked since the adjacency was made.
// It runs from start to stop.
func (c *core) memberLoop() {
	defer c.wg.Done()
	t := time.NewTicker(memberCheckPeriod)
	defer t.Stop()
	for {
		select {
		case <-c.ctlStop:
			return
		case <-t.C:
		case <-c.recheck:
		}
		if !c.lc.Protected() {
			continue
		}
		for _, n := range c.cm.Neighbours() {
			if err := c.checkPeer(n.Addr, n.Doc, n.Cert); err != nil {
				c.p.log().Warn("neighbour no longer a member", "peer", n.Name, "addr", n.Addr, "err", err)
				c.cm.Fail(n.Port, "membership ended: "+err.Error())
			}
		}
	}
}

// now is the time membership is checked at: the local clock, or, on a
// node whose clock is not set (a board counts from 1970 at boot), the
// clock of the member it enrolled through, as that member signed it in
// enrollment, advanced by the local clock since.
func (p *IPCP) now() time.Time {
	return time.Now().Add(time.Duration(p.clockOffset.Load()))
}

// learnClock adopts the enrolling member's clock if this node has none.
func (p *IPCP) learnClock(res enroll.Result) {
	if enroll.ClockSet(p.now()) || !enroll.ClockSet(res.MemberTime) {
		return
	}
	off := res.MemberTime.Sub(res.Received)
	p.clockOffset.Store(int64(off))
	p.log().Info("no clock here: membership is checked by the enroller's", "member", res.Member, "ahead", off.Round(time.Second))
}

// sealConfig is what the flow allocator seals flows with: this IPCP's
// credentials, and the configuration's policy.
func (p *IPCP) sealConfig(layerName string) *fa.SealConfig {
	sc := &fa.SealConfig{
		Layer: layerName, Require: p.cfg.Seal, MaxSDU: p.MaxSDU, TicketLife: p.cfg.SealTicketLife, AEAD: p.cfg.SealAEAD,
		Credentials: func(ctx context.Context) (identity.Signer, []byte, error) {
			c, err := p.credentials(ctx)
			return c.Signer, c.Doc, err
		},
	}
	if len(p.cfg.SealPeers) > 0 {
		allowed := slices.Clone(p.cfg.SealPeers)
		sc.Accept = func(d identity.Document) error {
			if !slices.Contains(allowed, d.ID) {
				return fmt.Errorf("node %s (%q) is not in seal_peers: %w", d.ID, d.Name, identity.ErrUnknownKey)
			}
			return nil
		}
	}
	return sc
}
