package node

// The signer component holds the node's identity key and signs for the
// other components, which hold only a capability to its endpoint (a
// "signing capability"), never the key. Each client's cap carries a badge;
// the badge decides which signature labels that client may have signed,
// so an IPCP that can sign link-state updates cannot sign, say, key
// exchanges, and nobody but the signer signs the node's identity
// document: the signer makes it itself from what the image measured.
//
// Integration (node.go): build a SignerComponent with NewSignerComponent,
// call AddTo on the system description once its clients are in it, and
// put its Program in the programs passed to Boot under SignerName. A
// client builds a SignerClient from its slot (SlotSigner) with DialSigner.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/rpc"
	"github.com/ouronet/ouro/kernel"
)

// Names of the signer in the system description.
const (
	SignerName     = "signer"    // the component
	SignerEndpoint = "signer.ep" // the endpoint it serves
	SlotSigner     = "signer"    // a client's slot for its signing cap
)

// Operations of the signer's endpoint.
const (
	opSignerPublic   rpc.Op = 1 // → signerKey: the node's public key
	opSignerSign     rpc.Op = 2 // signReq → signResp: a signature of a labelled message
	opSignerDocument rpc.Op = 3 // → signerDoc: the node's signed identity document
	opSignerAgree    rpc.Op = 4 // agreeReq → agreeResp: X25519 with the node key (identity.Identity.Agree)
)

// MaxSignMsg is the longest message the signer signs: what fits in one
// kernel message with its CBOR framing. A protocol with more to sign signs
// a digest of it.
const MaxSignMsg = kernel.MaxPayload - 16

type signReq struct {
	_   struct{} `cbor:",toarray"`
	Msg []byte
}

type signResp struct {
	_   struct{} `cbor:",toarray"`
	Sig []byte
}

type signerKey struct {
	_   struct{} `cbor:",toarray"`
	Key []byte
}

type signerDoc struct {
	_   struct{} `cbor:",toarray"`
	Doc []byte
}

type agreeReq struct {
	_    struct{} `cbor:",toarray"`
	Peer []byte   // an X25519 public key
}

type agreeResp struct {
	_      struct{} `cbor:",toarray"`
	Secret []byte
}

// SignerConfig is what the signer component needs.
type SignerConfig struct {
	// Identity is the node's key. It stays in the signer component.
	Identity *identity.Identity
	// Name, Board and Measurement go into the node's identity document,
	// which the signer signs once, when its program starts.
	Name        string
	Board       string
	Measurement identity.Measurement
	// Now is the clock for the document's Issued time; nil: time.Now.
	Now func() time.Time
	// Clients are the components that may ask for signatures.
	Clients []SignerClientSpec
}

// SignerClientSpec grants one component a signing cap.
type SignerClientSpec struct {
	Component string   // the client component's name in the system description
	Slot      string   // the cap's slot in it (default SlotSigner); one component may hold several, each its own grant
	Labels    []string // the signature labels it may use (identity.Label*); never identity.LabelDoc
	// Agree lets it have X25519 agreements made with the node key (to
	// open what was sealed to the node: the carrier shim's bundles).
	Agree bool
}

// SignerComponent is the signer's part of a system description and its
// program.
type SignerComponent struct {
	cfg    SignerConfig
	grants map[kernel.Badge]map[string]bool // the labels each client badge may sign
	agree  map[kernel.Badge]bool            // the client badges that may have agreements made
}

// NewSignerComponent checks cfg and returns the signer component.
func NewSignerComponent(cfg SignerConfig) (*SignerComponent, error) {
	if cfg.Identity == nil {
		return nil, fmt.Errorf("node: signer: no identity")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &SignerComponent{cfg: cfg, grants: make(map[kernel.Badge]map[string]bool), agree: make(map[kernel.Badge]bool)}
	seen := make(map[string]bool)
	for i, c := range cfg.Clients {
		key := c.Component + "\x00" + c.slot()
		if c.Component == "" || c.Component == SignerName || seen[key] {
			return nil, fmt.Errorf("node: signer: client %q (slot %q): empty, the signer itself, or listed twice", c.Component, c.slot())
		}
		seen[key] = true
		labels := make(map[string]bool, len(c.Labels))
		for _, l := range c.Labels {
			if l == identity.LabelDoc {
				return nil, fmt.Errorf("node: signer: client %s: the identity document is signed by the signer only", c.Component)
			}
			if got, ok := identity.LabelOf(identity.Labeled(l, nil)); !ok || got != l {
				return nil, fmt.Errorf("node: signer: client %s: bad label %q", c.Component, l)
			}
			labels[l] = true
		}
		s.grants[signerBadge(i)] = labels
		s.agree[signerBadge(i)] = c.Agree
	}
	return s, nil
}

// slot is the client's slot for its signing cap.
func (c SignerClientSpec) slot() string {
	if c.Slot == "" {
		return SlotSigner
	}
	return c.Slot
}

// signerBadge is the badge of client i's cap (never 0: unbadged).
func signerBadge(i int) kernel.Badge { return kernel.Badge(i + 1) }

// Public returns the node's public key.
func (s *SignerComponent) Public() ed25519.PublicKey { return s.cfg.Identity.Public() }

// AddTo adds the signer to sys: its endpoint, the component (which alone
// can receive on the endpoint), and to each client component a Write cap
// (with GrantReply, for Call; without Grant: no caps go to the signer)
// named SlotSigner, badged per client. The clients must be in sys.
func (s *SignerComponent) AddTo(sys *kernel.System) error {
	sys.Endpoints = append(sys.Endpoints, kernel.ObjectSpec{Name: SignerEndpoint})
	sys.Components = append(sys.Components, kernel.ComponentSpec{
		Name: SignerName,
		Caps: []kernel.CapSpec{{Name: slotEP, Object: SignerEndpoint, Rights: kernel.Read}},
	})
	for i, c := range s.cfg.Clients {
		j := -1
		for k := range sys.Components {
			if sys.Components[k].Name == c.Component {
				j = k
			}
		}
		if j < 0 {
			return fmt.Errorf("node: signer: no component %q for a signing cap", c.Component)
		}
		sys.Components[j].Caps = append(sys.Components[j].Caps, kernel.CapSpec{
			Name: c.slot(), Object: SignerEndpoint, Rights: kernel.Write | kernel.GrantReply, Badge: signerBadge(i),
		})
	}
	return nil
}

// Program is the signer component's program: sign the node's document,
// then serve requests until the component ends.
func (s *SignerComponent) Program(pd *kernel.PD) error {
	ep, err := pd.Slot(slotEP)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	doc, err := identity.NewDocument(s.cfg.Identity, s.cfg.Name, s.cfg.Board, s.cfg.Measurement, s.cfg.Now()).
		Sign(pd.Context(), s.cfg.Identity)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	return rpc.Serve(pd, ep, func(ctx context.Context, r *rpc.Request) (rpc.Response, error) {
		for _, c := range r.Caps { // nothing is granted to the signer; drop what came anyway
			pd.Delete(c)
		}
		labels, ok := s.grants[r.Badge]
		if !ok {
			return rpc.Response{}, fmt.Errorf("signer: caller badge %#x: %w", r.Badge, flow.ErrRefused)
		}
		switch r.Op {
		case opSignerPublic:
			return rpc.Response{Body: signerKey{Key: s.cfg.Identity.Public()}}, nil
		case opSignerDocument:
			return rpc.Response{Body: signerDoc{Doc: doc}}, nil
		case opSignerSign:
			var req signReq
			if err := r.Decode(&req); err != nil {
				return rpc.Response{}, err
			}
			label, ok := identity.LabelOf(req.Msg)
			if !ok {
				return rpc.Response{}, fmt.Errorf("signer: message without a label: %w", flow.ErrRefused)
			}
			if !labels[label] {
				return rpc.Response{}, fmt.Errorf("signer: label %q not granted to caller %#x: %w", label, r.Badge, flow.ErrRefused)
			}
			sig, err := s.cfg.Identity.Sign(ctx, req.Msg)
			if err != nil {
				return rpc.Response{}, err
			}
			return rpc.Response{Body: signResp{Sig: sig}}, nil
		case opSignerAgree:
			if !s.agree[r.Badge] {
				return rpc.Response{}, fmt.Errorf("signer: agreement not granted to caller %#x: %w", r.Badge, flow.ErrRefused)
			}
			var req agreeReq
			if err := r.Decode(&req); err != nil {
				return rpc.Response{}, err
			}
			secret, err := s.cfg.Identity.Agree(ctx, req.Peer)
			if err != nil {
				return rpc.Response{}, err
			}
			return rpc.Response{Body: agreeResp{Secret: secret}}, nil
		}
		return rpc.Response{}, fmt.Errorf("signer: unknown operation %d: %w", r.Op, flow.ErrInvalid)
	})
}

// SignerClient is a signing capability: identity.Signer over a cap to the
// signer component's endpoint. Safe for concurrent use.
type SignerClient struct {
	c   *rpc.Client
	pub ed25519.PublicKey
}

var _ identity.Signer = (*SignerClient)(nil)

// NewSignerClient returns the client for the signer behind ep in pd's
// CSpace, whose public key is pub (known from the configuration).
func NewSignerClient(pd *kernel.PD, ep kernel.Cap, pub ed25519.PublicKey) *SignerClient {
	return &SignerClient{c: rpc.NewClient(pd, ep), pub: pub}
}

// DialSigner returns the client for the signer behind ep, asking it for
// the node's public key.
func DialSigner(ctx context.Context, pd *kernel.PD, ep kernel.Cap) (*SignerClient, error) {
	c := rpc.NewClient(pd, ep)
	var k signerKey
	if _, err := c.Call(ctx, opSignerPublic, nil, nil, &k); err != nil {
		return nil, fmt.Errorf("signer: public key: %w", err)
	}
	if len(k.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("signer: public key of %d bytes: %w", len(k.Key), flow.ErrInvalid)
	}
	return &SignerClient{c: c, pub: ed25519.PublicKey(k.Key)}, nil
}

// Public returns the node's public key.
func (c *SignerClient) Public() ed25519.PublicKey { return c.pub }

// Sign asks the signer for a signature of msg, which must be a labelled
// message (identity.SignLabeled builds it) under a label granted to this
// client, of at most MaxSignMsg bytes. It blocks until the signer answers
// or ctx ends.
func (c *SignerClient) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	if len(msg) > MaxSignMsg {
		return nil, fmt.Errorf("signer: message of %d bytes, limit %d: %w", len(msg), MaxSignMsg, flow.ErrTooBig)
	}
	var r signResp
	if _, err := c.c.Call(ctx, opSignerSign, signReq{Msg: msg}, nil, &r); err != nil {
		return nil, err
	}
	if len(r.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signer: signature of %d bytes: %w", len(r.Sig), flow.ErrInvalid)
	}
	return r.Sig, nil
}

// Agree asks the signer for the X25519 agreement of the node key with
// peer (identity.Identity.Agree); refused unless this client was granted
// agreements.
func (c *SignerClient) Agree(ctx context.Context, peer []byte) ([]byte, error) {
	var r agreeResp
	if _, err := c.c.Call(ctx, opSignerAgree, agreeReq{Peer: peer}, nil, &r); err != nil {
		return nil, err
	}
	if len(r.Secret) != 32 {
		return nil, fmt.Errorf("signer: agreement of %d bytes: %w", len(r.Secret), flow.ErrInvalid)
	}
	return r.Secret, nil
}

// Document returns the node's signed identity document (check it with
// identity.VerifyDocument).
func (c *SignerClient) Document(ctx context.Context) ([]byte, error) {
	var d signerDoc
	if _, err := c.c.Call(ctx, opSignerDocument, nil, nil, &d); err != nil {
		return nil, fmt.Errorf("signer: document: %w", err)
	}
	return d.Doc, nil
}
