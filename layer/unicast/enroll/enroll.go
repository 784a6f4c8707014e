// Package enroll is enrollment in a unicast layer: the layer
// configuration a bootstrapper sets, and the exchange by which a new
// member obtains it from an existing member over a management N-1 flow
// (Ouroboros' enrollment component). It opens no flows and keeps no
// members: the IPCP hands it a connected port and the membership it knows.
//
// Enrollment is mutually authenticated (docs/wire/unicast.md,
// enrollment): each side sends its signed identity document and signs a
// transcript that holds both fresh nonces, both keys and the layer's
// name, so that neither a recorded exchange nor one made for another
// layer can be replayed. The member checks the layer's admission policy
// only once the new member has proved its key, and sends the layer's
// configuration only then. After the connection manager's Open with
// purpose "enroll":
//
//	new member                           member
//	   | Req [version, name, pubkey, layer,  |
//	   |      nonce, doc, cert]              |
//	   |------------------------------------>|
//	   | Challenge [result, msg, name, nonce,|
//	   |      doc, cert, sig(transcript)]    |
//	   |<------------------------------------|
//	   | Proof [sig(transcript)]             |
//	   |------------------------------------>|  policy check
//	   | Resp [result, msg, config,          |
//	   |       members, name, addr]          |
//	   |<------------------------------------|
//	   |  (picks an address not in members;  |
//	   |   in a protected layer, the one its |
//	   |   key derives)                      |
//	   | Done [addr]                         |
//	   |------------------------------------>|
//	   | Ack [result, msg]                   |  collision: pick again
//	   |<------------------------------------|
package enroll

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/addr"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// Version is the enrollment message format version (2: authenticated).
const Version = 2

// Result codes in Resp and Ack.
const (
	OK        uint8 = 0 // accepted
	Refused   uint8 = 1 // wrong layer, bad request, or the member is not enrolled itself
	Collision uint8 = 2 // the address is taken: pick another
	Busy      uint8 = 3 // too many enrollments at once
)

// MaxMembers bounds the member list in a Resp (the rest are learnt from
// routing; the list only makes address collisions unlikely).
const MaxMembers = 2048

// Config is a layer's configuration: what the bootstrapper sets and every
// member receives when it enrolls. Policies are names, so that a member
// can refuse a layer whose policies it does not have.
type Config struct {
	_ struct{} `cbor:",toarray"`
	// Layer is the layer's name.
	Layer string
	// Hash is the name hash algorithm (layer.HashAlgo).
	Hash layer.HashAlgo
	// AddrWidth is the address width in bytes: 4 or 8.
	AddrWidth uint8
	// Routing is the forwarding policy: "simple", "alternate" or "multipath".
	Routing string
	// CA is the congestion-avoidance policy: "nop", "mb-ecn" or
	// "mb-ecn-local" (the default: mb-ecn whose senders hear their own
	// node's marks at once, ca.Config.Local).
	CA string
	// Dir is the directory policy: "flood" or "dht".
	Dir string
	// Hello is the keepalive period on management N-1 flows, ms.
	Hello uint32
	// Dead is how many hello periods of silence make a neighbour dead.
	Dead uint32
	// Admission is who may join (crypto/admission): open, an allow-list
	// of node keys or a layer authority's certificates, optionally
	// measured. The bootstrapper must choose it: the zero policy is
	// refused by Validate. Under any policy but plain open, members
	// enroll with proof of their key and their addresses derive from
	// their keys (addr.FromKey), so that a signature proves who speaks
	// for an address.
	Admission admission.Policy
	// Names is who owns a name in the directory: "" (first come, and a
	// membership certificate listing the name outranks it) or
	// "certified" (only the names a member's certificate lists; needs
	// the dht directory and an authority admission policy). See
	// docs/security.md, "Signed directory".
	Names string
}

// NamesCertified is Config.Names for "certificates are the only source
// of names".
const NamesCertified = "certified"

// Policy returns the layer's admission policy scoped to the layer.
func (c *Config) Policy() admission.Policy {
	p := c.Admission
	if p.Layer == "" {
		p.Layer = c.Layer
	}
	return p
}

// Protected reports whether the layer binds addresses to keys and checks
// who joins: every policy but plain open (open with measurements too).
func (c *Config) Protected() bool {
	return c.Admission.Mode != admission.ModeOpen || len(c.Admission.Measured) > 0
}

// DefaultConfig returns the configuration a bootstrapper uses for the
// keys it was not given.
func DefaultConfig(layerName string) Config {
	return Config{Layer: layerName, Hash: layer.SHA3_256, AddrWidth: 4, Routing: "alternate", CA: "mb-ecn-local", Dir: "flood", Hello: 100, Dead: 3}
}

// Validate checks c's values (not whether this member has its policies).
func (c *Config) Validate() error {
	switch {
	case c.Layer == "":
		return fmt.Errorf("enroll: layer config without a layer name: %w", flow.ErrInvalid)
	case c.Hash != layer.SHA3_256 && c.Hash != layer.SHA256:
		return fmt.Errorf("enroll: hash algorithm %d: %w", c.Hash, flow.ErrInvalid)
	case c.AddrWidth != 4 && c.AddrWidth != 8:
		return fmt.Errorf("enroll: address width %d, want 4 or 8: %w", c.AddrWidth, flow.ErrInvalid)
	case c.Hello == 0 || c.Hello > 60_000 || c.Dead < 2 || c.Dead > 100:
		return fmt.Errorf("enroll: hello %d ms, dead after %d: %w", c.Hello, c.Dead, flow.ErrInvalid)
	}
	if _, err := pff.ParseKind(c.Routing); err != nil {
		return fmt.Errorf("enroll: %w: %w", flow.ErrInvalid, err)
	}
	switch c.CA {
	case "nop", "mb-ecn", "mb-ecn-local":
	default:
		return fmt.Errorf("enroll: congestion avoidance %q (want nop, mb-ecn or mb-ecn-local): %w", c.CA, flow.ErrInvalid)
	}
	if c.Dir == "" {
		return fmt.Errorf("enroll: no directory policy: %w", flow.ErrInvalid)
	}
	if err := c.Admission.Validate(); err != nil {
		return fmt.Errorf("enroll: layer %s: admission: %w: %w", c.Layer, flow.ErrInvalid, err)
	}
	switch {
	case c.Names != "" && c.Names != NamesCertified:
		return fmt.Errorf("enroll: layer %s: names %q (want certified, or nothing for first come): %w", c.Layer, c.Names, flow.ErrInvalid)
	case c.Names == NamesCertified && c.Dir != "dht":
		return fmt.Errorf("enroll: layer %s: names = certified needs the dht directory policy (directory %q signs nothing and cannot check certificates): %w", c.Layer, c.Dir, flow.ErrInvalid)
	case c.Names == NamesCertified && c.Admission.Mode != admission.ModeAuthority:
		return fmt.Errorf("enroll: layer %s: names = certified needs an authority admission policy (certificates come from the layer's authorities): %w", c.Layer, flow.ErrInvalid)
	}
	if c.Admission.Layer != "" && c.Admission.Layer != c.Layer {
		return fmt.Errorf("enroll: layer %s: admission policy for layer %q: %w", c.Layer, c.Admission.Layer, flow.ErrInvalid)
	}
	return nil
}

// Req asks a member to enroll the sender.
type Req struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	// Name is the new member's IPCP name.
	Name string
	// PubKey is the new member's node key (ed25519, 32 bytes); the Proof
	// shows it holds it.
	PubKey []byte
	// Layer is the layer the sender means to join.
	Layer string
	// Nonce is the new member's fresh challenge (NonceLen bytes).
	Nonce []byte
	// Doc is the new member's signed identity document
	// (identity.VerifyDocument), for PubKey.
	Doc []byte
	// Cert is its membership certificate, for layers whose admission is
	// by authority; empty otherwise.
	Cert []byte
}

// Challenge answers a Req: the member's own proof and its challenge, or
// a refusal (Result not OK: wrong layer, not a member, busy).
type Challenge struct {
	_      struct{} `cbor:",toarray"`
	Result uint8
	Msg    string
	Name   string // the member's IPCP name
	Nonce  []byte // the member's fresh challenge
	Doc    []byte // the member's signed identity document
	Cert   []byte // its membership certificate, if it has one
	// Time is the member's clock, Unix seconds: a new member without a
	// clock of its own (a board) checks certificates against it.
	Time int64
	// Sig is the member's signature of the transcript (role "member").
	Sig []byte
}

// Proof answers a Challenge: the new member's signature of the
// transcript (role "new").
type Proof struct {
	_   struct{} `cbor:",toarray"`
	Sig []byte
}

// Resp answers a Req.
type Resp struct {
	_      struct{} `cbor:",toarray"`
	Result uint8
	Msg    string // why, if not OK
	Config Config
	// Members are the addresses in use, ascending (at most MaxMembers).
	Members []layer.Addr
	// Name and Addr are the enrolling member's.
	Name string
	Addr layer.Addr
}

// Done tells the member the address the new member chose.
type Done struct {
	_    struct{} `cbor:",toarray"`
	Addr layer.Addr
}

// Ack answers a Done.
type Ack struct {
	_      struct{} `cbor:",toarray"`
	Result uint8
	Msg    string
}

var codec = flow.NewCodec()

// Marshal encodes an enrollment message (deterministic CBOR).
func Marshal(v any) ([]byte, error) { return codec.Marshal(v) }

// UnmarshalReq decodes and checks a Req.
func UnmarshalReq(b []byte) (Req, error) {
	var r Req
	if err := codec.Unmarshal(b, &r); err != nil {
		return Req{}, fmt.Errorf("enroll: request: %w", err)
	}
	if r.Version != Version || r.Name == "" || len(r.Name) > 255 || len(r.PubKey) != ed25519.PublicKeySize || r.Layer == "" ||
		len(r.Nonce) != NonceLen || len(r.Doc) == 0 || len(r.Doc) > MaxDoc || len(r.Cert) > MaxCert {
		return Req{}, fmt.Errorf("enroll: request version %d name %q: %w", r.Version, r.Name, flow.ErrInvalid)
	}
	return r, nil
}

// UnmarshalResp decodes and checks a Resp.
func UnmarshalResp(b []byte) (Resp, error) {
	var r Resp
	if err := codec.Unmarshal(b, &r); err != nil {
		return Resp{}, fmt.Errorf("enroll: response: %w", err)
	}
	if len(r.Members) > MaxMembers {
		return Resp{}, fmt.Errorf("enroll: response with %d members: %w", len(r.Members), flow.ErrInvalid)
	}
	if r.Result == OK {
		if err := r.Config.Validate(); err != nil {
			return Resp{}, err
		}
		if r.Addr == 0 {
			return Resp{}, fmt.Errorf("enroll: response from a member without an address: %w", flow.ErrInvalid)
		}
	}
	return r, nil
}

// UnmarshalDone decodes and checks a Done.
func UnmarshalDone(b []byte) (Done, error) {
	var d Done
	if err := codec.Unmarshal(b, &d); err != nil {
		return Done{}, fmt.Errorf("enroll: done: %w", err)
	}
	if d.Addr == 0 {
		return Done{}, fmt.Errorf("enroll: done with address 0: %w", flow.ErrInvalid)
	}
	return d, nil
}

// UnmarshalAck decodes an Ack.
func UnmarshalAck(b []byte) (Ack, error) {
	var a Ack
	if err := codec.Unmarshal(b, &a); err != nil {
		return Ack{}, fmt.Errorf("enroll: ack: %w", err)
	}
	return a, nil
}

// errOf maps a refusal to an error wrapping a flow sentinel.
func errOf(result uint8, msg string) error {
	switch result {
	case OK:
		return nil
	case Collision:
		return fmt.Errorf("enroll: %s: %w", msg, flow.ErrExists)
	case Busy:
		return fmt.Errorf("enroll: %s: %w", msg, flow.ErrBusy)
	}
	return fmt.Errorf("enroll: %s: %w", msg, flow.ErrRefused)
}

// Members answers whether an address is in use; addr.Set implements it.
type Members interface {
	Has(layer.Addr) bool
}

// AssignFunc picks an address not in members for a layer with
// configuration cfg; an error (for example a policy this member does not
// have) abandons the enrollment.
type AssignFunc func(cfg Config, members Members) (layer.Addr, error)

type addrSet map[layer.Addr]struct{}

func (s addrSet) Has(a layer.Addr) bool { _, ok := s[a]; return ok }

// Result is what a new member learnt by enrolling.
type Result struct {
	Config     Config
	Addr       layer.Addr // the address it chose
	Member     string     // the enrolling member's IPCP name
	MemberAddr layer.Addr
	Members    []layer.Addr
	// MemberDoc is the enrolling member's verified identity document.
	MemberDoc identity.Document
	// MemberTime is the member's clock when it answered (signed), and
	// Received when this side got it, by its own clock.
	MemberTime time.Time
	Received   time.Time
}

// ClockSet reports whether t looks like a set wall clock: boards without
// one count from 1970 at boot.
func ClockSet(t time.Time) bool { return t.Year() >= 2020 }

// MaxTries is how many addresses Enroll proposes before giving up.
const MaxTries = 8

// Enroll runs the new member's side over port (an N-1 flow to a member,
// already opened for enrollment): it proves its key and checks the
// member's, receives the layer's configuration and members, picks an
// address with assign and confirms it. req's Name and Layer are the new
// member's; the rest is filled from cred. It does not close port. ctx
// bounds the whole exchange.
func Enroll(ctx context.Context, port flow.Port, req Req, cred Credentials, assign AssignFunc) (Result, error) {
	if err := cred.check(); err != nil {
		return Result{}, err
	}
	var err error
	req.Version = Version
	req.PubKey = cred.Signer.Public()
	req.Doc, req.Cert = cred.Doc, cred.Cert
	if req.Nonce, err = nonce(); err != nil {
		return Result{}, err
	}
	b, err := Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("enroll: %w", err)
	}
	dl := deadline(ctx)
	if err := port.Write(b, dl); err != nil {
		return Result{}, fmt.Errorf("enroll: send request: %w", err)
	}
	buf := make([]byte, flow.MaxSDU)
	n, err := port.Read(buf, dl)
	if err != nil {
		return Result{}, fmt.Errorf("enroll: await challenge: %w", err)
	}
	ch, err := UnmarshalChallenge(buf[:n])
	if err != nil {
		return Result{}, err
	}
	if ch.Result != OK {
		return Result{}, errOf(ch.Result, "refused by "+ch.Name+": "+ch.Msg)
	}
	received := cred.Now()
	mdoc, err := identity.VerifyDocument(ch.Doc)
	if err != nil {
		return Result{}, fmt.Errorf("enroll: member %s: %w: %w", ch.Name, flow.ErrRefused, err)
	}
	t := transcript{Layer: req.Layer, NewName: req.Name, NewKey: req.PubKey, NewNonce: req.Nonce,
		MemberName: ch.Name, MemberKey: mdoc.Key, MemberNonce: ch.Nonce, MemberTime: ch.Time}
	if !t.verify(mdoc.Key, roleMember, ch.Sig) {
		return Result{}, fmt.Errorf("enroll: member %s (%s) did not prove its key: %w: %w", ch.Name, mdoc.ID, flow.ErrRefused, identity.ErrBadSignature)
	}
	var p Proof
	if p.Sig, err = t.sign(ctx, cred.Signer, roleNew); err != nil {
		return Result{}, fmt.Errorf("enroll: %w", err)
	}
	if b, err = Marshal(p); err != nil {
		return Result{}, fmt.Errorf("enroll: %w", err)
	}
	if err := port.Write(b, dl); err != nil {
		return Result{}, fmt.Errorf("enroll: send proof: %w", err)
	}
	if n, err = port.Read(buf, dl); err != nil {
		return Result{}, fmt.Errorf("enroll: await response: %w", err)
	}
	resp, err := UnmarshalResp(buf[:n])
	if err != nil {
		return Result{}, err
	}
	if resp.Result != OK {
		return Result{}, errOf(resp.Result, "refused by "+resp.Name+": "+resp.Msg)
	}
	if resp.Config.Layer != req.Layer {
		return Result{}, fmt.Errorf("enroll: %s is in layer %q, not %q: %w", resp.Name, resp.Config.Layer, req.Layer, flow.ErrRefused)
	}
	if resp.Config.Protected() {
		// The member must itself pass the policy it hands out, and speak
		// for its address: else it is no member of a protected layer.
		now := cred.Now()
		if !ClockSet(now) && ch.Time != 0 { // no clock here: the member's, which it signed
			now = time.Unix(ch.Time, 0).Add(now.Sub(received))
		}
		if err := resp.Config.Policy().Admit(mdoc, ch.Cert, nil, now); err != nil {
			return Result{}, fmt.Errorf("enroll: member %s fails its own layer's policy: %w: %w", resp.Name, flow.ErrRefused, err)
		}
		if want := addr.FromKey(resp.Config.Layer, int(resp.Config.AddrWidth), mdoc.Key); resp.Addr != want {
			return Result{}, fmt.Errorf("enroll: member %s has address %d, its key's is %d: %w", resp.Name, resp.Addr, want, flow.ErrRefused)
		}
	}
	taken := make(addrSet, len(resp.Members)+1)
	for _, a := range resp.Members {
		taken[a] = struct{}{}
	}
	taken[resp.Addr] = struct{}{}
	for try := 0; try < MaxTries; try++ {
		a, err := assign(resp.Config, taken)
		if err != nil {
			return Result{}, fmt.Errorf("enroll: assign address: %w", err)
		}
		b, err := Marshal(Done{Addr: a})
		if err != nil {
			return Result{}, err
		}
		if err := port.Write(b, dl); err != nil {
			return Result{}, fmt.Errorf("enroll: send done: %w", err)
		}
		n, err := port.Read(buf, dl)
		if err != nil {
			return Result{}, fmt.Errorf("enroll: await ack: %w", err)
		}
		ack, err := UnmarshalAck(buf[:n])
		if err != nil {
			return Result{}, err
		}
		switch ack.Result {
		case OK:
			return Result{Config: resp.Config, Addr: a, Member: resp.Name, MemberAddr: resp.Addr, Members: resp.Members, MemberDoc: mdoc,
				MemberTime: time.Unix(ch.Time, 0), Received: received}, nil
		case Collision:
			taken[a] = struct{}{}
			continue
		}
		return Result{}, errOf(ack.Result, ack.Msg)
	}
	return Result{}, fmt.Errorf("enroll: %d addresses collided: %w", MaxTries, flow.ErrExists)
}

// Member is the enrolling member as Serve needs it.
type Member interface {
	// Admit checks the layer's admission policy for a new member that
	// has proved it holds the key of doc (verified): nil, or why not (an
	// error wrapping a crypto/admission sentinel).
	Admit(req Req, doc identity.Document) error
	// Offer returns the response to req: the layer's configuration, the
	// member's name and address and the addresses in use (Result OK), or
	// a refusal.
	Offer(req Req) Resp
	// Claim reserves addr for the new member req.Name, reporting false if
	// it is taken (or, in a protected layer, not the address of req's
	// key). A reservation outlives the exchange for as long as the
	// member takes to appear in routing.
	Claim(req Req, addr layer.Addr) bool
}

// Serve runs the member's side over port for a request already read
// (first, undecoded): it proves its key with cred, checks the new
// member's proof and the admission policy (m.Admit), and only then sends
// the layer's configuration. It does not close port. It returns the new
// member's request (its PubKey proved) and address once acknowledged;
// a refusal is an error that wraps flow.ErrRefused and, where there is
// one, the crypto/identity sentinel of why.
func Serve(ctx context.Context, port flow.Port, first []byte, m Member, cred Credentials) (Req, layer.Addr, error) {
	if err := cred.check(); err != nil {
		return Req{}, 0, err
	}
	dl := deadline(ctx)
	refuse := func(v any, err error) (Req, layer.Addr, error) {
		if b, merr := Marshal(v); merr == nil {
			port.Write(b, dl) // best effort: the error is what counts
		}
		return Req{}, 0, err
	}
	req, err := UnmarshalReq(first)
	if err != nil {
		return refuse(Challenge{Result: Refused, Msg: "bad request"}, err)
	}
	doc, err := identity.VerifyDocument(req.Doc)
	if err == nil && !doc.Key.Equal(ed25519.PublicKey(req.PubKey)) {
		err = fmt.Errorf("document for %s, request for %s: %w", doc.ID, identity.NameOf(req.PubKey), identity.ErrUnknownKey)
	}
	if err != nil {
		return refuse(Challenge{Result: Refused, Msg: "identity document: " + err.Error()},
			fmt.Errorf("enroll: %s: %w: %w", req.Name, flow.ErrRefused, err))
	}
	mine := cred.Signer.Public()
	ch := Challenge{Result: OK, Doc: cred.Doc, Cert: cred.Cert}
	if now := cred.Now(); ClockSet(now) {
		ch.Time = now.Unix()
	}
	t := transcript{Layer: req.Layer, NewName: req.Name, NewKey: req.PubKey, NewNonce: req.Nonce, MemberKey: mine, MemberTime: ch.Time}
	if ch.Nonce, err = nonce(); err != nil {
		return Req{}, 0, err
	}
	offer := m.Offer(req) // the name the member answers with, and an early refusal
	ch.Name, t.MemberName, t.MemberNonce = offer.Name, offer.Name, ch.Nonce
	if offer.Result != OK {
		return refuse(Challenge{Result: offer.Result, Msg: offer.Msg, Name: offer.Name}, errOf(offer.Result, "refused "+req.Name+": "+offer.Msg))
	}
	if ch.Sig, err = t.sign(ctx, cred.Signer, roleMember); err != nil {
		return Req{}, 0, fmt.Errorf("enroll: %w", err)
	}
	b, err := Marshal(ch)
	if err != nil {
		return Req{}, 0, fmt.Errorf("enroll: encode challenge: %w", err)
	}
	if err := port.Write(b, dl); err != nil {
		return Req{}, 0, fmt.Errorf("enroll: send challenge: %w", err)
	}
	buf := make([]byte, flow.MaxSDU)
	n, err := port.Read(buf, dl)
	if err != nil {
		return Req{}, 0, fmt.Errorf("enroll: await proof from %s: %w", req.Name, err)
	}
	p, err := UnmarshalProof(buf[:n])
	if err == nil && !t.verify(doc.Key, roleNew, p.Sig) {
		err = fmt.Errorf("enroll: %s (%s) did not prove its key (forged or replayed): %w: %w", req.Name, doc.ID, flow.ErrRefused, identity.ErrBadSignature)
	}
	if err != nil {
		return refuse(Resp{Result: Refused, Msg: "proof of key does not verify", Name: offer.Name}, err)
	}
	if err := m.Admit(req, doc); err != nil {
		return refuse(Resp{Result: Refused, Msg: err.Error(), Name: offer.Name},
			fmt.Errorf("enroll: %s: %w: %w", req.Name, flow.ErrRefused, err))
	}
	resp := m.Offer(req) // again: the members may have changed meanwhile
	if len(resp.Members) > MaxMembers {
		resp.Members = resp.Members[:MaxMembers]
	}
	if b, err = Marshal(resp); err != nil {
		return Req{}, 0, fmt.Errorf("enroll: encode response: %w", err)
	}
	if err := port.Write(b, dl); err != nil {
		return Req{}, 0, fmt.Errorf("enroll: send response: %w", err)
	}
	if resp.Result != OK {
		return Req{}, 0, errOf(resp.Result, "refused "+req.Name+": "+resp.Msg)
	}
	for try := 0; try < MaxTries; try++ {
		n, err := port.Read(buf, dl)
		if err != nil {
			return Req{}, 0, fmt.Errorf("enroll: await done from %s: %w", req.Name, err)
		}
		done, err := UnmarshalDone(buf[:n])
		if err != nil {
			return Req{}, 0, err
		}
		ack := Ack{Result: OK}
		if !m.Claim(req, done.Addr) {
			ack = Ack{Result: Collision, Msg: "address in use"}
		}
		b, err := Marshal(ack)
		if err != nil {
			return Req{}, 0, err
		}
		if err := port.Write(b, dl); err != nil {
			return Req{}, 0, fmt.Errorf("enroll: send ack: %w", err)
		}
		if ack.Result == OK {
			return req, done.Addr, nil
		}
	}
	return Req{}, 0, fmt.Errorf("enroll: %s: %d collisions: %w", req.Name, MaxTries, flow.ErrExists)
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(10 * time.Second)
}

// IsRefusal reports whether err is a member's refusal (as opposed to a
// transport failure worth retrying with another member).
func IsRefusal(err error) bool { return errors.Is(err, flow.ErrRefused) }
