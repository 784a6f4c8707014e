// Package carrier is the carrier shim: an IPCP whose link is storage that
// is carried between nodes (a USB stick, an SD card, any directory that
// something moves). A sending flow's SDUs are gathered into bundles
// (deterministic CBOR, signed by the sending node, with an expiry) and
// written atomically (a temporary file, then a rename) into the Out
// directory, within a budget of bytes and files; the receiving side scans
// its In directory, refuses (and counts) what is malformed, tampered,
// from an unknown node, expired or already seen, delivers the rest and
// removes every file it took. There is no handshake: a flow is accepted
// at its first bundle. Where the storage is carried back too, signed
// acknowledgements (Ack) and resending (Resend, ack.go) recover bundles
// the carrier lost; bundles it reorders are delivered in the order they
// arrive (docs/intermittent.md). With State, the seen-set survives a
// restart (seen.go).
//
// Pipeline: one goroutine per sending flow reads SDUs into a bundle until
// MaxBundle bytes or Linger, then seals it and waits for room in the
// budget (back-pressure reaches the writer); one goroutine scans In every
// Poll and handles the bundles in name order (per sender, sequence order).
package carrier

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

var (
	_ ipcp.IPCP          = (*IPCP)(nil)
	_ ipcp.SDULimiter    = (*IPCP)(nil)
	_ ipcp.PeerAllocator = (*IPCP)(nil)
)

// Config configures a carrier shim IPCP.
type Config struct {
	Layer  string // required
	Name   string // required
	Runner layer.Runner

	Out string // the directory bundles are written to (carried away); required
	In  string // the directory bundles arrive in (carried here); required
	// State is a directory of this node's own (not carried) where the
	// seen-set is kept (SeenFile), so that a restarted receiver still
	// refuses bundles it took; "" keeps it in memory only.
	State string
	// Ack makes the receiving side write, after each scan that took
	// bundles, a signed acknowledgement per sender into Out (the return
	// path, if Out is carried back).
	Ack bool
	// Resend, if positive, keeps every bundle written in State/SentDir
	// until it is acknowledged; one that left Out without an
	// acknowledgement within Resend is written again (needs State).
	Resend time.Duration

	Signer identity.Signer // this node's key; required
	// Agreer opens bundles sealed to this node (the signer component's
	// agreement, or the identity); nil: sealed bundles are refused
	// (unopened).
	Agreer Agreer
	// Recipient is the node the bundles of sealed flows are sealed to;
	// nil: the only peer, if Peers has one.
	Recipient ed25519.PublicKey
	Peers     []ed25519.PublicKey // the nodes whose bundles are accepted; required
	Names     []string            // names reachable at the other side (what Query answers for)

	Expiry     time.Duration // a bundle's lifetime (default 24h)
	MinTimeout time.Duration // a flow whose QoS times out sooner is refused (default 1h; 0 = never times out is fine)
	Poll       time.Duration // how often In is scanned and a full budget looked at again (default 1s)
	Linger     time.Duration // a bundle waits this long for more SDUs (default 100ms)
	MaxBundle  int           // SDU bytes per bundle (default 256 KiB)
	MaxBytes   int64         // Out's budget, bytes of bundle files (default 64 MiB)
	MaxFiles   int           // Out's budget, bundle files (default 4096)
	MaxSeen    int           // bundles remembered against replays (default 65536)
	MaxFlows   int           // incoming flows open at once (default 256)

	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// BundleStats are the carrier's own counters, beside the shim's.
type BundleStats struct {
	BundlesOut  uint64 `json:"bundles_out"`  // bundles written to Out
	BundlesIn   uint64 `json:"bundles_in"`   // bundles accepted from In
	Malformed   uint64 `json:"malformed"`    // refused: not a bundle within the limits
	Tampered    uint64 `json:"tampered"`     // refused: bad signature
	UnknownPeer uint64 `json:"unknown_peer"` // refused: signed by a node not in Peers
	Expired     uint64 `json:"expired"`      // refused: past their expiry
	Replayed    uint64 `json:"replayed"`     // refused: seen before (sender and sequence)
	BudgetWaits uint64 `json:"budget_waits"` // times a bundle waited for room in Out
	StoreErrors uint64 `json:"store_errors"` // files that could not be written, read or removed
	Seen        uint64 `json:"seen"`         // entries in the seen-set
	Purged      uint64 `json:"purged"`       // expired bundles removed from Out, never carried
	AcksOut     uint64 `json:"acks_out"`     // acknowledgements written to Out
	AcksIn      uint64 `json:"acks_in"`      // acknowledgements taken from In
	Acked       uint64 `json:"acked"`        // bundles of ours acknowledged (no longer kept for resending)
	Resent      uint64 `json:"resent"`       // bundles written to Out again, unacknowledged
	Unopened    uint64 `json:"unopened"`     // refused: sealed to another node, or not opening
}

// IPCP is a carrier shim IPC process.
type IPCP struct {
	cfg   Config
	up    ipcp.Upcalls
	state layer.Lifecycle
	c     engine.Counters
	codec identity.Codec
	wg    sync.WaitGroup
	stop  chan struct{}

	bundlesOut, bundlesIn, malformed, tampered, unknownPeer atomic.Uint64
	expired, replayed, budgetWaits, storeErrs, seenLen      atomic.Uint64
	purged, acksOut, acksIn, acked, resent, unopened        atomic.Uint64

	seq    atomic.Uint64
	flowID atomic.Uint64
	store  sync.Mutex // one writer at a time judges the budget

	mu    sync.Mutex
	names shim.Names
	out   map[uint64]*txFlow
	in    map[inKey]*rxFlow
}

type counters struct{ pkts, bytes atomic.Uint64 }

type txFlow struct {
	id     uint64
	req    ipcp.AllocReq
	port   flow.Port
	to     ed25519.PublicKey // sealed to; nil: not sealed
	counts counters
}

type inKey struct {
	sender string // node name
	flow   uint64
}

type rxFlow struct {
	dst    string
	port   flow.Port
	sealed bool // its bundles are sealed (the first one was)
	counts counters
}

// New returns an IPCP in state "init".
func New(cfg Config, up ipcp.Upcalls) (*IPCP, error) {
	if cfg.Layer == "" || cfg.Name == "" {
		return nil, fmt.Errorf("carrier: config needs a layer and a name: %w", flow.ErrInvalid)
	}
	who := "carrier: " + cfg.Name
	switch {
	case up == nil:
		return nil, fmt.Errorf("%s: no upcalls: %w", who, flow.ErrInvalid)
	case cfg.Runner == nil:
		return nil, layer.NeedRunner(who)
	case cfg.Out == "" || cfg.In == "":
		return nil, fmt.Errorf("%s: config needs the out and in directories: %w", who, flow.ErrInvalid)
	case cfg.Signer == nil:
		return nil, fmt.Errorf("%s: config needs the node's signer: %w", who, flow.ErrInvalid)
	case len(cfg.Peers) == 0:
		return nil, fmt.Errorf("%s: no peers: nothing would be accepted: %w", who, flow.ErrInvalid)
	}
	for _, k := range cfg.Peers {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s: a peer key of %d bytes: %w", who, len(k), flow.ErrInvalid)
		}
	}
	if cfg.Recipient == nil && len(cfg.Peers) == 1 {
		cfg.Recipient = cfg.Peers[0]
	}
	if cfg.Recipient != nil {
		if _, err := identity.X25519Public(cfg.Recipient); err != nil {
			return nil, fmt.Errorf("%s: recipient: %w: %w", who, err, flow.ErrInvalid)
		}
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.Expiry, 24*time.Hour)
	def(&cfg.MinTimeout, time.Hour)
	def(&cfg.Poll, time.Second)
	def(&cfg.Linger, 100*time.Millisecond)
	for _, d := range []struct {
		v *int
		d int
	}{{&cfg.MaxBundle, 256 << 10}, {&cfg.MaxFiles, 4096}, {&cfg.MaxSeen, 65536}, {&cfg.MaxFlows, 256}} {
		if *d.v == 0 {
			*d.v = d.d
		}
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 64 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Expiry < 0 || cfg.Poll < 0 || cfg.Linger < 0 || cfg.MaxBundle < flow.MaxSDU ||
		cfg.MaxBundle > MaxBodySize/2 || cfg.MaxBytes < MaxFileSize || cfg.MaxFiles < 1 || cfg.MaxSeen < 1 || cfg.MaxFlows < 1 {
		return nil, fmt.Errorf("%s: negative durations, max_bundle outside [%d, %d], max_bytes below %d or a zero count: %w",
			who, flow.MaxSDU, MaxBodySize/2, MaxFileSize, flow.ErrInvalid)
	}
	if cfg.Resend < 0 || cfg.Resend > 0 && cfg.State == "" {
		return nil, fmt.Errorf("%s: resend needs a state directory (where unacknowledged bundles are kept) and must not be negative: %w", who, flow.ErrInvalid)
	}
	dirs := []string{cfg.Out, cfg.In}
	if cfg.State != "" {
		if cfg.State == cfg.Out || cfg.State == cfg.In {
			return nil, fmt.Errorf("%s: the state directory must not be out or in (it is not carried): %w", who, flow.ErrInvalid)
		}
		dirs = append(dirs, cfg.State)
	}
	for _, d := range dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s: %s is not a directory: %w", who, d, flow.ErrInvalid)
		}
	}
	if cfg.Resend > 0 {
		if err := os.MkdirAll(filepath.Join(cfg.State, SentDir), 0o700); err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
	}
	p := &IPCP{cfg: cfg, up: up, codec: identity.NewCodec(), stop: make(chan struct{}),
		out: map[uint64]*txFlow{}, in: map[inKey]*rxFlow{}}
	p.seq.Store(uint64(cfg.Now().UnixMicro())) // a restarted sender's bundles are newer
	return p, nil
}

// Start makes the IPCP operational and starts scanning In.
func (p *IPCP) Start() error {
	if !p.state.CompareAndSwap(layer.StateInit, layer.StateOperational) {
		return fmt.Errorf("carrier: %s: start in state %s: %w", p.cfg.Name, p.state.Load(), flow.ErrInvalid)
	}
	r := newReceiver(p)
	if p.cfg.State != "" {
		l, err := r.loadSeen(p.cfg.State, p.cfg.Now().Unix())
		switch {
		case l == nil:
			p.state.Store(layer.StateInit)
			return fmt.Errorf("carrier: %s: %w", p.cfg.Name, err)
		case err != nil: // damaged: what it held up to the damage is kept
			p.storeErrs.Add(1)
		}
		r.log = l
	}
	p.wg.Add(1)
	p.cfg.Runner.Go(r.run)
	return nil
}

// Stop ends every flow and waits for the goroutines. Bundles already in
// Out stay there: they are the carrier's. Idempotent.
func (p *IPCP) Stop() {
	if p.state.Swap(layer.StateShutdown) != layer.StateShutdown {
		close(p.stop)
	}
	p.wg.Wait()
}

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "carrier", State: p.state.Load().String()}
}

// MaxSDU implements ipcp.SDULimiter.
func (p *IPCP) MaxSDU() int { return flow.MaxSDU }

// Register implements ipcp.IPCP: the names this side accepts flows for.
func (p *IPCP) Register(_ context.Context, name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("carrier: register %q: too long: %w", name, flow.ErrInvalid)
	}
	return p.names.Register("carrier", name)
}

// Unregister implements ipcp.IPCP.
func (p *IPCP) Unregister(_ context.Context, name string) error {
	return p.names.Unregister("carrier", name)
}

// Query implements ipcp.IPCP: the configured Names are reachable (nothing
// can be asked across storage that is not here).
func (p *IPCP) Query(_ context.Context, name string) error {
	if slices.Contains(p.cfg.Names, name) {
		return nil
	}
	return fmt.Errorf("carrier: query %q: not a configured name: %w", name, flow.ErrNotFound)
}

// Alloc implements ipcp.IPCP: what is written to port is bundled into Out
// for the other side, whose IRM is asked to accept the flow when the
// first bundle arrives. A flow whose QoS would declare the peer dead
// sooner than MinTimeout is refused: carried storage takes hours.
func (p *IPCP) Alloc(ctx context.Context, req ipcp.AllocReq, port flow.Port) error {
	_, err := p.AllocPeer(ctx, req, port)
	return err
}

// AllocPeer implements ipcp.PeerAllocator: Alloc that also returns, for a
// sealed flow, the node its bundles are sealed to (the only one that can
// read them).
func (p *IPCP) AllocPeer(ctx context.Context, req ipcp.AllocReq, port flow.Port) (res ipcp.AllocResult, err error) {
	defer func() {
		if err != nil {
			p.c.AllocFailed.Add(1)
		}
	}()
	if port == nil {
		return res, fmt.Errorf("carrier: alloc %q: nil port: %w", req.Dst, flow.ErrInvalid)
	}
	if err := p.state.Ready("carrier", "alloc", req.Dst); err != nil {
		return res, err
	}
	if req.QoS.Timeout != 0 && req.QoS.Timeout < p.cfg.MinTimeout {
		return res, fmt.Errorf("carrier: alloc %q: QoS timeout %v is shorter than the carrier's %v (use the delay_tolerant preset): %w",
			req.Dst, req.QoS.Timeout, p.cfg.MinTimeout, flow.ErrRefused)
	}
	var to ed25519.PublicKey
	if req.QoS.Sealed {
		if to = p.cfg.Recipient; to == nil {
			return res, fmt.Errorf("carrier: alloc %q: sealed, and no recipient to seal to (several peers: configure the recipient): %w", req.Dst, flow.ErrRefused)
		}
		res.Peer = &flow.Peer{Key: to, ID: identity.NameOf(to)}
	}
	if err := p.Query(ctx, req.Dst); err != nil {
		return res, err
	}
	f := &txFlow{id: p.flowID.Add(1), req: req, port: port, to: to}
	p.mu.Lock()
	if p.state.Load() == layer.StateShutdown {
		p.mu.Unlock()
		return res, fmt.Errorf("carrier: alloc %q: stopped: %w", req.Dst, flow.ErrClosed)
	}
	p.out[f.id] = f
	p.wg.Add(1)
	p.mu.Unlock()
	p.c.FlowsOut.Add(1)
	p.c.FlowsActive.Add(1)
	p.cfg.Runner.Go(func() { p.send(f) })
	return res, nil
}

// stopPoll bounds how long a sending flow waits for an SDU before it
// looks whether the IPCP is stopping (Stop cannot unblock a Read on the
// IPCP's own end).
const stopPoll = 250 * time.Millisecond

// send is a sending flow's goroutine: SDUs into bundles, bundles into Out.
func (p *IPCP) send(f *txFlow) {
	defer p.wg.Done()
	defer func() {
		f.port.Close()
		p.mu.Lock()
		delete(p.out, f.id)
		p.mu.Unlock()
		p.c.FlowsActive.Add(^uint64(0))
	}()
	g := newGather(p.cfg.MaxBundle)
	var first time.Time
	flush := func(end bool) bool {
		if len(g.sdus) == 0 && !end {
			return true
		}
		ok := p.store1(f, g.sdus, end)
		g.reset()
		return ok
	}
	for {
		deadline := time.Now().Add(stopPoll)
		if len(g.sdus) > 0 {
			deadline = first.Add(p.cfg.Linger)
		}
		n, err := f.port.Read(g.room(), deadline)
		switch {
		case errors.Is(err, flow.ErrTruncated):
			p.c.Truncated.Add(1)
			continue
		case errors.Is(err, flow.ErrTimeout):
			if p.state.Load() == layer.StateShutdown || !flush(false) {
				return
			}
			continue
		case err != nil: // closed: the last bundle says so
			flush(true)
			return
		}
		if len(g.sdus) == 0 {
			first = time.Now()
		}
		g.add(n)
		f.counts.pkts.Add(1)
		f.counts.bytes.Add(uint64(n))
		p.c.PacketsOut.Add(1)
		p.c.BytesOut.Add(uint64(n))
		if g.used >= p.cfg.MaxBundle || len(g.sdus) == MaxSDUs {
			if !flush(false) {
				return
			}
		}
	}
}

// gather is a bundle's SDUs under construction: read straight into one
// arena, reused from bundle to bundle, so that gathering allocates
// nothing per SDU.
type gather struct {
	arena []byte
	sdus  [][]byte
	used  int
}

func newGather(maxBundle int) *gather {
	return &gather{arena: make([]byte, maxBundle+flow.MaxSDU), sdus: make([][]byte, 0, MaxSDUs)}
}

// room is where the next SDU is read.
func (g *gather) room() []byte { return g.arena[g.used : g.used+flow.MaxSDU] }

// add takes the n bytes just read into room as an SDU.
func (g *gather) add(n int) {
	g.sdus = append(g.sdus, g.arena[g.used:g.used+n])
	g.used += n
}

func (g *gather) reset() { g.sdus, g.used = g.sdus[:0], 0 }

// store1 seals one bundle and writes it into Out once the budget has room
// for it; it reports false if the IPCP stopped first (the bundle is lost).
func (p *IPCP) store1(f *txFlow, sdus [][]byte, end bool) bool {
	seq := p.seq.Add(1)
	b := &Bundle{Version: BundleVersion, Sender: p.cfg.Signer.Public(), Seq: seq,
		Expires: p.cfg.Now().Add(p.cfg.Expiry).Unix(), Flow: f.id, Dst: f.req.Dst, Src: f.req.Src, SDUs: sdus, End: end}
	var err error
	if f.to != nil {
		b.To = f.to
		err = sealSDUs(p.codec, b)
	}
	var file []byte
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		file, err = Seal(ctx, p.codec, p.cfg.Signer, b)
		cancel()
	}
	if err != nil {
		p.storeErrs.Add(1)
		return true // the SDUs are dropped; the flow goes on
	}
	name := FileName(p.cfg.Signer.Public(), seq)
	if p.cfg.Resend > 0 {
		if err := p.keepSent(name, file); err != nil {
			p.storeErrs.Add(1) // written once, never again
		}
	}
	for waited := false; ; waited = true {
		if ok, err := p.writeIfRoom(name, file); ok || err != nil {
			if err == nil {
				p.bundlesOut.Add(1)
			}
			return true
		}
		if !waited {
			p.budgetWaits.Add(1)
		}
		select {
		case <-p.stop:
			return false
		case <-time.After(p.cfg.Poll):
		}
	}
}

// writeIfRoom writes file into Out as name if Out's budget has room for
// it (after purging expired bundles), under the store lock so that
// writers judge the budget one at a time. It reports whether it wrote;
// no room, or Out that cannot be listed (counted), is (false, nil): try
// later; a failed write is counted and returned.
func (p *IPCP) writeIfRoom(name string, file []byte) (bool, error) {
	p.store.Lock()
	defer p.store.Unlock()
	bytes, files, purged, err := usage(p.cfg.Out, p.cfg.Now().Add(-p.cfg.Expiry))
	p.purged.Add(uint64(purged))
	switch {
	case err != nil:
		p.storeErrs.Add(1)
		return false, nil
	case bytes+int64(len(file)) > p.cfg.MaxBytes || files+1 > p.cfg.MaxFiles:
		return false, nil
	}
	if err := writeAtomic(p.cfg.Out, name, file); err != nil {
		p.storeErrs.Add(1)
		return false, err
	}
	return true, nil
}

// usage sums the files in dir (temporaries included: they take room
// too), first removing the bundles written before stale: expired, they
// would be refused where they are carried.
func usage(dir string, stale time.Time) (bytes int64, files, purged int, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed since the listing: by the carrier
		}
		if isBundleName(e.Name()) && info.ModTime().Before(stale) && os.Remove(filepath.Join(dir, e.Name())) == nil {
			purged++
			continue
		}
		bytes += info.Size()
		files++
	}
	return bytes, files, purged, nil
}

// writeAtomic writes data as dir/name: into a temporary file (a dot
// name, which no reader takes; one left by a crash is overwritten),
// synced, then renamed, so that a reader or a carrier never sees half a
// file.
func writeAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Stats returns the IPCP's shim counters (SDUs and flows).
func (p *IPCP) Stats() shim.Stats { return p.c.Snapshot() }

// Bundles returns the carrier's own counters.
func (p *IPCP) Bundles() BundleStats {
	return BundleStats{
		BundlesOut: p.bundlesOut.Load(), BundlesIn: p.bundlesIn.Load(),
		Malformed: p.malformed.Load(), Tampered: p.tampered.Load(), UnknownPeer: p.unknownPeer.Load(),
		Expired: p.expired.Load(), Replayed: p.replayed.Load(), BudgetWaits: p.budgetWaits.Load(),
		StoreErrors: p.storeErrs.Load(), Seen: p.seenLen.Load(), Purged: p.purged.Load(),
		AcksOut: p.acksOut.Load(), AcksIn: p.acksIn.Load(), Acked: p.acked.Load(), Resent: p.resent.Load(),
		Unopened: p.unopened.Load(),
	}
}

// Flows lists the open flows.
func (p *IPCP) Flows() []shim.FlowInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []shim.FlowInfo
	for _, f := range p.out {
		out = append(out, shim.FlowInfo{LocalEID: f.id, Peer: "carrier:" + p.cfg.Out, Name: f.req.Dst, Outgoing: true,
			QoS: f.req.QoS, PacketsOut: f.counts.pkts.Load(), BytesOut: f.counts.bytes.Load()})
	}
	for k, f := range p.in {
		out = append(out, shim.FlowInfo{RemoteEID: k.flow, Peer: k.sender, Name: f.dst, QoS: flow.DelayTolerant(),
			PacketsIn: f.counts.pkts.Load(), BytesIn: f.counts.bytes.Load()})
	}
	return out
}
