// Package connmgr is the connection manager of a unicast IPCP: it keeps a
// management and a data-transfer N-1 flow to each neighbour, opened
// through a flow.Broker as any application opens flows, reconnects them
// with backoff, sends and checks keepalives, and reports adjacencies up
// and down (Ouroboros' connmgr). It knows nothing of what is below the
// broker, forwards no packets and computes no routes.
//
// Every N-1 flow of a unicast IPCP starts with an Open from the side that
// allocated it and an OpenResp from the acceptor (docs/wire/unicast.md).
// A neighbour is a pair of flows: first a management flow (purpose
// PurposeMgmt), then a data-transfer flow (PurposeDT) carrying the same
// nonce, which the acceptor pairs with the first. Management flows then
// carry Msg frames: hellos every Config.Hello and link-state messages.
//
// Goroutines (all started through Config.Runner): one dial loop per
// configured neighbour name, one receive loop per management flow, one
// hello ticker. Hooks are called one at a
// time (under hookMu), never with mu held.
package connmgr

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/unicast/pff"
)

// Version is the connection message format version (2: authenticated
// adjacencies).
const Version = 2

// Purposes of an N-1 flow, in its Open.
const (
	PurposeEnroll uint8 = 1 // an enrollment exchange follows (package enroll)
	PurposeMgmt   uint8 = 2 // the management flow of an adjacency: Msg frames follow
	PurposeDT     uint8 = 3 // the data-transfer flow of an adjacency: dt packets follow
)

// Results in an OpenResp.
const (
	OK      uint8 = 0
	Refused uint8 = 1 // wrong layer, not enrolled, unknown pairing
	Exists  uint8 = 2 // an adjacency this side dialed is up already
)

// Types of Msg frames on a management flow.
const (
	MsgHello uint8 = 1 // keepalive; empty body
	MsgLSU   uint8 = 2 // a link-state message (package routing) as the body
	// MsgAuth (3) is in auth.go.
	MsgCRL uint8 = 4 // a layer authority's signed revocation list (identity.CRL) as the body
)

// Open is the first SDU on every N-1 flow of a unicast IPCP.
type Open struct {
	_       struct{} `cbor:",toarray"`
	Version uint8
	Purpose uint8
	Layer   string     // the layer the sender is (or wants to be) a member of
	Name    string     // the sender's IPCP name
	Addr    layer.Addr // the sender's address; 0 while enrolling
	Nonce   uint64     // pairs an adjacency's management and data flows
	// On a management flow: the dialer's node key, fresh challenge
	// (ChallengeLen bytes), signed identity document and certificate.
	Key       []byte
	Challenge []byte
	Doc       []byte
	Cert      []byte
}

// OpenResp answers an Open.
type OpenResp struct {
	_      struct{} `cbor:",toarray"`
	Result uint8
	Msg    string
	Name   string
	Addr   layer.Addr
	// On an accepted management flow: the acceptor's key, challenge,
	// document, certificate and signature of the transcript.
	Key       []byte
	Challenge []byte
	Doc       []byte
	Cert      []byte
	Sig       []byte
}

// Msg is a frame on a management flow.
type Msg struct {
	_    struct{} `cbor:",toarray"`
	Type uint8
	Body []byte
}

var codec = flow.NewCodec()

// Marshal encodes a connection message.
func Marshal(v any) ([]byte, error) { return codec.Marshal(v) }

// UnmarshalOpen decodes and checks an Open.
func UnmarshalOpen(b []byte) (Open, error) {
	var o Open
	if err := codec.Unmarshal(b, &o); err != nil {
		return Open{}, fmt.Errorf("connmgr: open: %w", err)
	}
	if o.Version != Version || o.Purpose < PurposeEnroll || o.Purpose > PurposeDT || o.Name == "" || len(o.Name) > 255 {
		return Open{}, fmt.Errorf("connmgr: open version %d purpose %d: %w", o.Version, o.Purpose, flow.ErrInvalid)
	}
	if o.Purpose != PurposeEnroll && o.Addr == 0 {
		return Open{}, fmt.Errorf("connmgr: open without an address: %w", flow.ErrInvalid)
	}
	if o.Purpose == PurposeMgmt && (len(o.Key) != ed25519.PublicKeySize || len(o.Challenge) != ChallengeLen ||
		len(o.Doc) == 0 || len(o.Doc) > MaxDoc || len(o.Cert) > MaxCert) {
		return Open{}, fmt.Errorf("connmgr: management open without identity: %w", flow.ErrInvalid)
	}
	return o, nil
}

// UnmarshalOpenResp decodes an OpenResp.
func UnmarshalOpenResp(b []byte) (OpenResp, error) {
	var r OpenResp
	if err := codec.Unmarshal(b, &r); err != nil {
		return OpenResp{}, fmt.Errorf("connmgr: open response: %w", err)
	}
	if r.Result == OK && r.Addr == 0 && r.Name == "" {
		return OpenResp{}, fmt.Errorf("connmgr: open response without a name: %w", flow.ErrInvalid)
	}
	if len(r.Key) > ed25519.PublicKeySize || len(r.Challenge) > ChallengeLen || len(r.Doc) > MaxDoc || len(r.Cert) > MaxCert || len(r.Sig) > ed25519.SignatureSize {
		return OpenResp{}, fmt.Errorf("connmgr: open response with oversized identity: %w", flow.ErrInvalid)
	}
	return r, nil
}

// UnmarshalMsg decodes a management frame.
func UnmarshalMsg(b []byte) (Msg, error) {
	var m Msg
	if err := codec.Unmarshal(b, &m); err != nil {
		return Msg{}, fmt.Errorf("connmgr: frame: %w", err)
	}
	return m, nil
}

// ReadOpen reads and decodes the Open that starts an incoming flow.
func ReadOpen(port flow.Port, deadline time.Time) (Open, error) {
	buf := make([]byte, flow.MaxSDU)
	n, err := port.Read(buf, deadline)
	if err != nil {
		return Open{}, fmt.Errorf("connmgr: await open: %w", err)
	}
	return UnmarshalOpen(buf[:n])
}

// Reply answers an Open on port.
func Reply(port flow.Port, r OpenResp, deadline time.Time) error {
	b, err := Marshal(r)
	if err != nil {
		return err
	}
	return port.Write(b, deadline)
}

// Dial opens an N-1 flow to name for purpose and exchanges Open and
// OpenResp. On success the caller owns the port.
func Dial(ctx context.Context, b flow.Broker, name string, q flow.QoS, o Open) (flow.Port, OpenResp, error) {
	o.Version = Version
	port, _, err := b.Alloc(ctx, name, q)
	if err != nil {
		return nil, OpenResp{}, fmt.Errorf("connmgr: alloc N-1 flow to %q: %w", name, err)
	}
	dl := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		dl = d
	}
	// ctx's end closes the port while the exchange is in progress.
	release := context.AfterFunc(ctx, func() { port.Close() })
	defer release()
	msg, err := Marshal(o)
	if err == nil {
		err = port.Write(msg, dl)
	}
	if err != nil {
		port.Close()
		return nil, OpenResp{}, fmt.Errorf("connmgr: open to %q: %w", name, err)
	}
	buf := make([]byte, flow.MaxSDU)
	n, err := port.Read(buf, dl)
	if err != nil {
		port.Close()
		return nil, OpenResp{}, fmt.Errorf("connmgr: await open response from %q: %w", name, err)
	}
	r, err := UnmarshalOpenResp(buf[:n])
	if err != nil {
		port.Close()
		return nil, OpenResp{}, err
	}
	switch r.Result {
	case OK:
		if !release() {
			return nil, OpenResp{}, fmt.Errorf("connmgr: open to %q: %w", name, ctx.Err())
		}
		return port, r, nil
	case Exists:
		err = fmt.Errorf("connmgr: %q: %s: %w", name, r.Msg, flow.ErrExists)
	default:
		err = fmt.Errorf("connmgr: %q refused: %s: %w", name, r.Msg, flow.ErrRefused)
	}
	port.Close()
	return nil, r, err
}

// Neighbour is an adjacency as the hooks see it.
type Neighbour struct {
	Name string
	Addr layer.Addr
	// Port is the pff next-hop id of the data-transfer flow, unique for
	// the manager's life (a reconnected neighbour gets a new one).
	Port pff.Port
	// DT is the data-transfer N-1 flow. The IPCP reads and writes it;
	// the manager closes it when the adjacency goes down.
	DT flow.Port
	// Doc and Cert are the identity document (verified) and the
	// membership certificate the neighbour proved itself with: the IPCP
	// checks them again when its view of membership changes (expiry,
	// revocation).
	Doc  identity.Document
	Cert []byte
}

// Hooks is what the manager reports to the IPCP. The calls are made one
// at a time and never concurrently with each other; Up precedes the Down
// of the same adjacency.
type Hooks interface {
	// Up: an adjacency is established; its dt flow is ready.
	Up(n Neighbour)
	// Down: the adjacency is gone; its flows are closed.
	Down(n Neighbour)
	// Message: a management frame other than a hello arrived from a
	// neighbour. body is valid only during the call.
	Message(from Neighbour, typ uint8, body []byte)
}

// Receiver is what Hooks may also implement: when a packet last arrived
// on n's dt flow (zero: never). A neighbour whose hellos fall silent
// while its dt flow still delivers (hellos lost at a congested queue, a
// management flow starved of CPU) is alive: it is declared dead Dead
// hello periods after the later of its last hello and its last packet.
type Receiver interface {
	LastReceived(n Neighbour) time.Time
}

// Config configures a Manager. Zero durations take the defaults.
type Config struct {
	Layer  string      // the layer's name; required
	Name   string      // this IPCP's name; required
	Broker flow.Broker // where N-1 flows come from; required
	Hooks  Hooks       // required
	QoS    flow.QoS    // of the N-1 flows (default: raw)

	Hello      time.Duration // keepalive period (default 100 ms)
	Dead       int           // hello periods of silence before a neighbour is dead (default 3)
	BackoffMin time.Duration // first reconnect delay (default 50 ms)
	BackoffMax time.Duration // reconnect delay ceiling (default 2 s)
	Log        *slog.Logger  // nil discards
	// Cred proves this IPCP's key to its neighbours; required.
	Cred Credentials
	// Check decides whether a neighbour that proved its key may be one
	// (nil: all).
	Check CheckFunc
	// Runner starts the manager's goroutines (in a node, the IPCP
	// component's kernel PD); required.
	Runner layer.Runner
}

// Stats are the manager's counters.
type Stats struct {
	Dials, DialFailures, Accepted, Refused uint64
	Ups, Downs, DeadTimeouts               uint64
	HeardByData                            uint64 // hello silences bridged by dt traffic (Receiver)
	HellosSent, HellosRecv, MsgsSent       uint64
	MsgsRecv, Malformed, SendErrors        uint64
	// AuthRefused counts adjacencies refused at authentication: bad
	// document or signature, or refused by Check.
	AuthRefused uint64
}

type counters struct {
	authRefused                            atomic.Uint64
	dials, dialFailures, accepted, refused atomic.Uint64
	ups, downs, deadTimeouts               atomic.Uint64
	hellosSent, hellosRecv, msgsSent       atomic.Uint64
	heardByData                            atomic.Uint64
	msgsRecv, malformed, sendErrors        atomic.Uint64
}

// adj is one adjacency (half-open until dt is set).
type adj struct {
	n       Neighbour
	nonce   uint64
	dialed  bool
	mgmt    flow.Port
	created time.Time
	wmu     sync.Mutex // serialises writes on mgmt
	down    chan struct{}
	once    sync.Once
}

// Manager keeps a unicast IPCP's adjacencies. Safe for concurrent use.
type Manager struct {
	cfg    Config
	c      counters
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	hookMu sync.Mutex // serialises hook calls

	mu       sync.Mutex // guards the fields below
	self     layer.Addr
	started  bool
	stopped  bool
	adjs     map[layer.Addr]*adj           // up adjacencies by neighbour address
	half     map[uint64]*adj               // accepted management flows awaiting their dt flow, by nonce
	dialing  map[string]context.CancelFunc // names with a dial loop, and how to end it
	nextPort pff.Port
}

// New returns a Manager; Start starts it once the IPCP has an address.
func New(cfg Config) (*Manager, error) {
	if cfg.Layer == "" || cfg.Name == "" || cfg.Broker == nil || cfg.Hooks == nil {
		return nil, fmt.Errorf("connmgr: config needs Layer, Name, Broker and Hooks: %w", flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("connmgr: " + cfg.Name)
	}
	if cfg.Cred.Signer == nil || len(cfg.Cred.Doc) == 0 {
		return nil, fmt.Errorf("connmgr: %s: no credentials: %w", cfg.Name, flow.ErrInvalid)
	}
	cfg.Hello = cmp.Or(cfg.Hello, 100*time.Millisecond)
	cfg.Dead = cmp.Or(cfg.Dead, 3)
	cfg.BackoffMin = cmp.Or(cfg.BackoffMin, 50*time.Millisecond)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, 2*time.Second)
	if cfg.QoS == (flow.QoS{}) {
		cfg.QoS = flow.Raw()
	}
	cfg.Log = logx.Or(cfg.Log)
	if cfg.Dead < 2 {
		return nil, fmt.Errorf("connmgr: dead after %d hellos, want >= 2: %w", cfg.Dead, flow.ErrInvalid)
	}
	m := &Manager{cfg: cfg, adjs: make(map[layer.Addr]*adj), half: make(map[uint64]*adj), dialing: make(map[string]context.CancelFunc)}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Start starts the hello ticker; self is the IPCP's address.
func (m *Manager) Start(self layer.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.stopped || self == 0 {
		return fmt.Errorf("connmgr: start (address %d): %w", self, flow.ErrInvalid)
	}
	m.started, m.self = true, self
	m.wg.Add(1)
	m.cfg.Runner.Go(m.helloLoop)
	return nil
}

// Stop closes every adjacency (reporting Down) and waits for the
// manager's goroutines. Idempotent.
func (m *Manager) Stop() {
	m.mu.Lock()
	m.stopped = true
	as := make([]*adj, 0, len(m.adjs)+len(m.half))
	for _, a := range m.adjs {
		as = append(as, a)
	}
	for _, a := range m.half {
		as = append(as, a)
	}
	m.mu.Unlock()
	m.cancel()
	for _, a := range as {
		m.teardown(a, "stopped")
	}
	m.wg.Wait()
}

// Connect makes the manager keep an adjacency with the IPCP named name:
// it dials it now and again, with backoff, whenever the adjacency is
// down. Connecting a name twice is not an error.
func (m *Manager) Connect(name string) error {
	if name == "" || name == m.cfg.Name {
		return fmt.Errorf("connmgr: connect %q: %w", name, flow.ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.stopped {
		return fmt.Errorf("connmgr: connect %q: not running: %w", name, flow.ErrInvalid)
	}
	if m.dialing[name] != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.dialing[name] = cancel
	m.wg.Add(1)
	m.cfg.Runner.Go(func() { m.dialLoop(ctx, name) })
	return nil
}

// Forget undoes Connect: the manager stops dialling name. An adjacency
// with it that is up stays until it dies (hello/dead) or the neighbour
// ends it; it is not redialled. Forgetting a name not connected is not
// an error.
func (m *Manager) Forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cancel := m.dialing[name]; cancel != nil {
		cancel()
		delete(m.dialing, name)
	}
}

// upByName returns the up adjacency with the neighbour named name.
func (m *Manager) upByName(name string) *adj {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.adjs {
		if a.n.Name == name {
			return a
		}
	}
	return nil
}

func (m *Manager) dialLoop(ctx context.Context, name string) {
	defer m.wg.Done()
	backoff := m.cfg.BackoffMin
	for {
		if a := m.upByName(name); a != nil {
			select {
			case <-a.down:
				backoff = m.cfg.BackoffMin
				continue
			case <-ctx.Done():
				return
			}
		}
		err := m.dial(name)
		if err == nil {
			backoff = m.cfg.BackoffMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		m.c.dialFailures.Add(1)
		m.cfg.Log.Info("connect failed, retrying", "peer", name, "err", err, "delay", backoff)
		// Jitter keeps two neighbours dialing each other out of step.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, m.cfg.BackoffMax)
	}
}

// dial establishes one adjacency with name.
func (m *Manager) dial(name string) error {
	m.c.dials.Add(1)
	m.mu.Lock()
	self := m.self
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	ch, err := challenge()
	if err != nil {
		return err
	}
	o := Open{Purpose: PurposeMgmt, Layer: m.cfg.Layer, Name: m.cfg.Name, Addr: self, Nonce: rand.Uint64(),
		Key: m.cfg.Cred.Signer.Public(), Challenge: ch, Doc: m.cfg.Cred.Doc, Cert: m.cfg.Cred.Cert}
	mgmt, r, err := Dial(ctx, m.cfg.Broker, name, m.cfg.QoS, o)
	if err != nil {
		return err
	}
	if r.Addr == 0 || r.Addr == self {
		mgmt.Close()
		return fmt.Errorf("connmgr: %q answered with address %d: %w", name, r.Addr, flow.ErrRefused)
	}
	doc, err := m.proveDialer(ctx, mgmt, o, r)
	if err != nil {
		mgmt.Close()
		return fmt.Errorf("connmgr: %q: %w", name, err)
	}
	o = Open{Purpose: PurposeDT, Layer: o.Layer, Name: o.Name, Addr: o.Addr, Nonce: o.Nonce}
	dtp, r2, err := Dial(ctx, m.cfg.Broker, name, m.cfg.QoS, o)
	if err != nil {
		mgmt.Close()
		return err
	}
	if r2.Addr != r.Addr {
		mgmt.Close()
		dtp.Close()
		return fmt.Errorf("connmgr: %q changed address %d → %d while connecting: %w", name, r.Addr, r2.Addr, flow.ErrRefused)
	}
	a := &adj{n: Neighbour{Name: r.Name, Addr: r.Addr, DT: dtp, Doc: doc, Cert: r.Cert}, nonce: o.Nonce, dialed: true, mgmt: mgmt, created: time.Now(), down: make(chan struct{})}
	if a.n.Name == "" {
		a.n.Name = name
	}
	return m.establish(a)
}

// establish installs a complete adjacency, replacing an older one with the
// same neighbour, and reports it up.
func (m *Manager) establish(a *adj) error {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		a.mgmt.Close()
		a.n.DT.Close()
		return fmt.Errorf("connmgr: stopped: %w", flow.ErrClosed)
	}
	m.nextPort++
	a.n.Port = m.nextPort
	old := m.adjs[a.n.Addr]
	m.adjs[a.n.Addr] = a
	m.wg.Add(1)
	m.mu.Unlock()
	if old != nil {
		m.teardown(old, "replaced")
	}
	m.c.ups.Add(1)
	m.hookMu.Lock()
	m.cfg.Hooks.Up(a.n)
	m.hookMu.Unlock()
	m.cfg.Runner.Go(func() { m.rxLoop(a) })
	return nil
}

// Accept takes an incoming N-1 flow whose Open (a management or data
// flow) the IPCP has read. It answers the Open; on success the manager
// owns port, otherwise it is closed.
func (m *Manager) Accept(port flow.Port, o Open) {
	dl := time.Now().Add(2 * time.Second)
	refuse := func(res uint8, msg string) {
		m.c.refused.Add(1)
		Reply(port, OpenResp{Result: res, Msg: msg, Name: m.cfg.Name}, dl)
		port.Close()
	}
	m.mu.Lock()
	self := m.self
	switch {
	case !m.started || m.stopped:
		m.mu.Unlock()
		refuse(Refused, "not enrolled")
		return
	case o.Layer != m.cfg.Layer:
		m.mu.Unlock()
		refuse(Refused, "wrong layer")
		return
	case o.Addr == self:
		m.mu.Unlock()
		refuse(Refused, "own address")
		return
	}
	switch o.Purpose {
	case PurposeMgmt:
		if cur := m.adjs[o.Addr]; cur != nil && cur.dialed && self < o.Addr {
			// Both sides dialed; the lower address's adjacency stays.
			m.mu.Unlock()
			refuse(Exists, "adjacency up")
			return
		}
		m.mu.Unlock()
		// Who is this? Checked before anything is kept for it.
		doc, err := m.peerDoc(o.Addr, o.Key, o.Doc, o.Cert)
		if err != nil {
			m.cfg.Log.Warn("adjacency refused", "peer", o.Name, "err", err)
			refuse(Refused, err.Error())
			return
		}
		t := adjTranscript{Layer: m.cfg.Layer, DialerAddr: o.Addr, DialerKey: o.Key, DialerNonce: o.Challenge,
			AccAddr: self, AccKey: m.cfg.Cred.Signer.Public(), Pairing: o.Nonce}
		if t.AccNonce, err = challenge(); err != nil {
			refuse(Refused, "no challenge")
			return
		}
		ctx, cancel := m.signCtx()
		sig, err := t.sign(ctx, m.cfg.Cred.Signer, "acceptor")
		cancel()
		if err != nil {
			refuse(Refused, "cannot sign")
			return
		}
		resp := OpenResp{Result: OK, Name: m.cfg.Name, Addr: self, Key: t.AccKey, Challenge: t.AccNonce, Doc: m.cfg.Cred.Doc, Cert: m.cfg.Cred.Cert, Sig: sig}
		if err := Reply(port, resp, dl); err != nil {
			port.Close()
			return
		}
		// The dialer's proof is its first frame.
		buf := make([]byte, flow.MaxSDU)
		n, err := port.Read(buf, dl)
		var f Msg
		if err == nil {
			f, err = UnmarshalMsg(buf[:n])
		}
		if err != nil || f.Type != MsgAuth || !t.verify(o.Key, "dialer", f.Body) {
			m.c.authRefused.Add(1)
			m.c.refused.Add(1)
			m.cfg.Log.Warn("neighbour did not prove its key", "peer", o.Name, "addr", o.Addr, "err", err)
			port.Close()
			return
		}
		m.mu.Lock()
		for n, h := range m.half {
			if time.Since(h.created) > 5*time.Second {
				delete(m.half, n)
				h.mgmt.Close()
			}
		}
		if len(m.half) >= 64 {
			m.mu.Unlock()
			refuse(Refused, "too many half-open adjacencies")
			return
		}
		if m.half[o.Nonce] != nil {
			m.mu.Unlock()
			port.Close()
			return
		}
		m.half[o.Nonce] = &adj{n: Neighbour{Name: o.Name, Addr: o.Addr, Doc: doc, Cert: o.Cert}, nonce: o.Nonce, mgmt: port, created: time.Now(), down: make(chan struct{})}
		m.mu.Unlock()
	case PurposeDT:
		a := m.half[o.Nonce]
		// The management flow's goroutine may still be checking the
		// dialer's proof, sent just before this Open: wait a little.
		for wait := time.Now().Add(time.Second); a == nil && time.Now().Before(wait) && !m.stopped; a = m.half[o.Nonce] {
			m.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			m.mu.Lock()
		}
		if a == nil || a.n.Addr != o.Addr {
			m.mu.Unlock()
			refuse(Refused, "no management flow for this nonce")
			return
		}
		delete(m.half, o.Nonce)
		m.mu.Unlock()
		if err := Reply(port, OpenResp{Result: OK, Name: m.cfg.Name, Addr: self}, dl); err != nil {
			port.Close()
			a.mgmt.Close()
			return
		}
		a.n.DT = port
		m.c.accepted.Add(1)
		m.establish(a)
	default:
		m.mu.Unlock()
		refuse(Refused, "not an adjacency flow")
	}
}

// rxLoop reads a's management flow until it breaks or falls silent.
func (m *Manager) rxLoop(a *adj) {
	defer m.wg.Done()
	buf := make([]byte, flow.MaxSDU)
	silence := time.Duration(m.cfg.Dead) * m.cfg.Hello
	rcv, _ := m.cfg.Hooks.(Receiver)
	deadline := time.Now().Add(silence)
	for {
		n, err := a.mgmt.Read(buf, deadline)
		if err != nil {
			reason := "management flow closed"
			if errors.Is(err, flow.ErrTimeout) && rcv != nil {
				if last := rcv.LastReceived(a.n); time.Since(last) < silence {
					deadline = last.Add(silence) // its data still arrives: alive
					m.c.heardByData.Add(1)
					continue
				}
			}
			if errors.Is(err, flow.ErrTimeout) {
				m.c.deadTimeouts.Add(1)
				reason = fmt.Sprintf("silent for %v", silence)
			}
			m.teardown(a, reason)
			return
		}
		deadline = time.Now().Add(silence)
		faultinject.Check("unicast/mgmt", buf[:n])
		f, err := UnmarshalMsg(buf[:n])
		if err != nil {
			m.c.malformed.Add(1)
			continue
		}
		if f.Type == MsgHello {
			m.c.hellosRecv.Add(1)
			continue
		}
		m.c.msgsRecv.Add(1)
		m.hookMu.Lock()
		select {
		case <-a.down: // no messages after Down
		default:
			m.cfg.Hooks.Message(a.n, f.Type, f.Body)
		}
		m.hookMu.Unlock()
	}
}

// Fail tears down the adjacency whose dt flow is port (the IPCP saw its
// Read fail). Unknown ports are ignored.
func (m *Manager) Fail(port pff.Port, reason string) {
	m.mu.Lock()
	var a *adj
	for _, x := range m.adjs {
		if x.n.Port == port {
			a = x
		}
	}
	m.mu.Unlock()
	if a != nil {
		m.teardown(a, reason)
	}
}

// teardown closes a once and reports it down if it was up.
func (m *Manager) teardown(a *adj, reason string) {
	a.once.Do(func() {
		m.mu.Lock()
		wasUp := m.adjs[a.n.Addr] == a
		if wasUp {
			delete(m.adjs, a.n.Addr)
		}
		if m.half[a.nonce] == a {
			delete(m.half, a.nonce)
		}
		m.mu.Unlock()
		a.mgmt.Close()
		if a.n.DT != nil {
			a.n.DT.Close()
		}
		m.hookMu.Lock()
		close(a.down)
		if a.n.DT != nil {
			m.c.downs.Add(1)
			m.cfg.Hooks.Down(a.n)
		}
		m.hookMu.Unlock()
		m.cfg.Log.Info("adjacency down", "peer", a.n.Name, "addr", a.n.Addr, "reason", reason)
	})
}

func (m *Manager) helloLoop() {
	defer m.wg.Done()
	hello, _ := Marshal(Msg{Type: MsgHello})
	t := time.NewTicker(m.cfg.Hello)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		as := make([]*adj, 0, len(m.adjs))
		for _, a := range m.adjs {
			as = append(as, a)
		}
		m.mu.Unlock()
		for _, a := range as {
			if m.write(a, hello) == nil {
				m.c.hellosSent.Add(1)
			}
		}
	}
}

func (m *Manager) write(a *adj, b []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	err := a.mgmt.Write(b, time.Now().Add(m.cfg.Hello))
	if err != nil {
		m.c.sendErrors.Add(1)
	}
	return err
}

// Send sends a management frame to the neighbour at addr. It blocks at
// most one hello period on back-pressure.
func (m *Manager) Send(to layer.Addr, typ uint8, body []byte) error {
	m.mu.Lock()
	a := m.adjs[to]
	m.mu.Unlock()
	if a == nil {
		return fmt.Errorf("connmgr: send to %d: no adjacency: %w", to, flow.ErrNotFound)
	}
	b, err := Marshal(Msg{Type: typ, Body: body})
	if err != nil {
		return err
	}
	if err := m.write(a, b); err != nil {
		return fmt.Errorf("connmgr: send to %s: %w", a.n.Name, err)
	}
	m.c.msgsSent.Add(1)
	return nil
}

// Neighbours returns the up adjacencies, ascending by address.
func (m *Manager) Neighbours() []Neighbour {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Neighbour, 0, len(m.adjs))
	for _, a := range m.adjs {
		out = append(out, a.n)
	}
	slices.SortFunc(out, func(x, y Neighbour) int { return cmp.Compare(x.Addr, y.Addr) })
	return out
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats {
	c := &m.c
	return Stats{
		Dials: c.dials.Load(), DialFailures: c.dialFailures.Load(), Accepted: c.accepted.Load(), Refused: c.refused.Load(),
		Ups: c.ups.Load(), Downs: c.downs.Load(), DeadTimeouts: c.deadTimeouts.Load(), HeardByData: c.heardByData.Load(),
		HellosSent: c.hellosSent.Load(), HellosRecv: c.hellosRecv.Load(), MsgsSent: c.msgsSent.Load(),
		MsgsRecv: c.msgsRecv.Load(), Malformed: c.malformed.Load(), SendErrors: c.sendErrors.Load(),
		AuthRefused: c.authRefused.Load(),
	}
}

// proveDialer checks the acceptor's answer to a management Open (its
// document, the layer's Check, its signature) and sends the dialer's
// signature of the same transcript.
func (m *Manager) proveDialer(ctx context.Context, mgmt flow.Port, o Open, r OpenResp) (identity.Document, error) {
	doc, err := m.peerDoc(r.Addr, r.Key, r.Doc, r.Cert)
	if err != nil {
		return doc, err
	}
	t := adjTranscript{Layer: m.cfg.Layer, DialerAddr: o.Addr, DialerKey: o.Key, DialerNonce: o.Challenge,
		AccAddr: r.Addr, AccKey: r.Key, AccNonce: r.Challenge, Pairing: o.Nonce}
	if len(r.Challenge) != ChallengeLen || !t.verify(r.Key, "acceptor", r.Sig) {
		m.c.authRefused.Add(1)
		return doc, fmt.Errorf("member at %d did not prove its key: %w: %w", r.Addr, flow.ErrRefused, identity.ErrBadSignature)
	}
	sig, err := t.sign(ctx, m.cfg.Cred.Signer, "dialer")
	if err != nil {
		return doc, err
	}
	b, err := Marshal(Msg{Type: MsgAuth, Body: sig})
	if err != nil {
		return doc, err
	}
	dl := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		dl = d
	}
	return doc, mgmt.Write(b, dl)
}
