// Package udp is the UDP shim: an IPCP that carries flows between nodes
// over UDP/IP (IPv4 and IPv6), one datagram per SDU, with names resolved
// from configuration. It does no routing, relaying or reliability.
package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// DefaultPort is the UDP port the shim binds and assumes for directory
// entries without one (Ouroboros' ipcpd-udp default).
const DefaultPort = 3435

// Device is the UDP socket the shim runs on. *net.UDPConn satisfies it
// hosted; on bare metal a small adapter over gVisor netstack's
// gonet.UDPConn (whose ReadFrom/WriteTo take net.Addr) does.
type Device interface {
	// ReadFromUDPAddrPort blocks until a datagram arrives, copies it into b
	// (the caller's buffer, not retained) and returns its length and
	// source. A datagram longer than b is truncated. One reader at a time.
	// After Close it returns an error (wrapping net.ErrClosed for sockets).
	ReadFromUDPAddrPort(b []byte) (n int, addr netip.AddrPort, err error)
	// WriteToUDPAddrPort sends b as one datagram to addr. b stays the
	// caller's and is not retained. It may block briefly on a full socket
	// buffer. Safe for concurrent use, also with ReadFromUDPAddrPort.
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	// LocalAddr returns the bound address.
	LocalAddr() net.Addr
	// Close releases the socket and unblocks a blocked read.
	Close() error
}

var (
	_ Device             = (*net.UDPConn)(nil)
	_ Device             = (*impair.UDPConn)(nil)
	_ ipcp.IPCP          = (*IPCP)(nil)
	_ ipcp.PeerAllocator = (*IPCP)(nil)

	_ engine.BatchWire[netip.AddrPort] = wire{}
)

// Config configures a UDP shim IPCP.
type Config struct {
	Layer string // the layer (shim instance) name; required
	Name  string // the IPCP's own name; required
	// Addr is the address to bind (zero: [::]:3435, dual stack; port 0:
	// DefaultPort). Ignored when Device is set.
	Addr netip.AddrPort
	// Dir resolves names to peers (port 0: DefaultPort). It is the only
	// name resolution of this shim: Query and Alloc see exactly these.
	Dir      map[string]netip.AddrPort
	HashAlgo layer.HashAlgo // how names are hashed on the wire (all members must agree)
	// MaxSDU is the largest SDU of the shim's flows (a sealed one's is
	// seal.Overhead less): 0 means flow.MaxSDU, which with the headers
	// fits a 1,500-byte path; more (up to flow.MaxJumboSDU) where the
	// path takes larger datagrams (a loopback, a jumbo-frame LAN) or IP
	// may fragment them. Every member of the layer must be configured
	// alike: a datagram longer than a receiver's MaxSDU is dropped there,
	// counted as malformed. A node holding such a shim sizes its packet
	// buffers for it.
	MaxSDU int
	// Device, if set, is used instead of binding Addr (an already bound
	// socket, a netstack socket, a test double). The IPCP closes it on Stop.
	Device Device
	// Impair impairs the transmit side (tests, lab setups).
	Impair impair.Config
	// AllocTimeout bounds allocations whose ctx has no deadline (default 10 s).
	AllocTimeout time.Duration
	// RetryBase is the first alloc retransmission timeout, doubling up to 1 s
	// (default 20 ms).
	RetryBase time.Duration
	// IdleTimeout deallocates a flow that carried nothing either way for
	// this long (default engine.DefaultIdleTimeout, 60 s; negative: never).
	IdleTimeout time.Duration
	// MaxFlowsPerPeer bounds the flows one peer address may allocate here
	// (default 256; negative: no bound); MaxPendingPerPeer its requests
	// waiting for the IRM at once (default 16). Requests beyond either are
	// refused as busy and counted in Stats().Drops.PeerLimit.
	MaxFlowsPerPeer   int
	MaxPendingPerPeer int
	// Signer, if set, lets the shim seal flows (QoS.Sealed, docs/shims.md
	// "Sealed flows"): the node's identity (in a node, a signing
	// capability to its signer component). Without it a sealed
	// allocation is refused, both ways.
	Signer identity.Signer
	// Seal seals every flow: those allocated here even if their QoS does
	// not ask, and unsealed requests are refused. Needs Signer.
	Seal bool
	// SealPeers, if not empty, are the only node ids (identity.NameOf) a
	// sealed flow may have at its other end, either way. Needs Signer.
	SealPeers []string
	// SealTicketLife is how long the ticket a sealed allocation leaves
	// both ends stays usable to resume the next one in one round trip
	// (0: 10 minutes; negative: never resume).
	SealTicketLife time.Duration
	// SealAEAD, if set, is the only AEAD sealed flows use (a peer that
	// does not take it fails their key exchange); zero negotiates:
	// AES-256-GCM where both ends have hardware AES, else
	// ChaCha20-Poly1305 (crypto/seal, crypto/kex).
	SealAEAD seal.AEAD
	// RecvBuffer and SendBuffer size the socket's kernel buffers in bytes
	// when the device is a socket of this kernel (sockopt_linux.go).
	// RecvBuffer 0 is DefaultSocketBuffer, SendBuffer 0 the kernel's
	// default (sockopt.go says why); negative: the kernel's default.
	RecvBuffer, SendBuffer int
	// Runner starts the IPCP's goroutines (in a node, its component's
	// kernel PD); required.
	Runner layer.Runner
}

// IPCP is a UDP shim IPC process.
type IPCP struct {
	cfg   Config
	dir   map[string]netip.AddrPort
	eng   *engine.Engine[netip.AddrPort]
	state layer.Lifecycle

	mu     sync.Mutex // serialises Start and Stop
	dev    Device     // set by Start before the state becomes operational
	sock   *socket    // the kernel socket under dev, or nil (sockopt_*.go)
	bufs   bufSizes   // its buffers as the kernel granted them
	rxDone chan struct{}
	// maxDatagram bounds what is read: anything longer than a header and
	// MaxSDU is dropped anyway, this leaves room to tell it apart.
	maxDatagram int
}

// New checks cfg and returns an IPCP in state "init"; Start binds it.
func New(cfg Config, up ipcp.Upcalls) (*IPCP, error) {
	if cfg.Layer == "" || cfg.Name == "" {
		return nil, fmt.Errorf("udp: config needs a layer and a name: %w", flow.ErrInvalid)
	}
	if up == nil {
		return nil, fmt.Errorf("udp: %s: no upcalls: %w", cfg.Name, flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("udp: " + cfg.Name)
	}
	if err := cfg.Impair.Validate(); err != nil {
		return nil, fmt.Errorf("udp: %s: %w", cfg.Name, err)
	}
	dir := make(map[string]netip.AddrPort, len(cfg.Dir))
	for name, a := range cfg.Dir {
		if name == "" || !a.Addr().IsValid() || a.Addr().IsUnspecified() {
			return nil, fmt.Errorf("udp: %s: directory entry %q = %v: %w", cfg.Name, name, a, flow.ErrInvalid)
		}
		dir[name] = norm(withPort(a))
	}
	sc, err := engine.SealFrom("udp", cfg.Layer, cfg.Name, cfg.Signer, cfg.Seal, cfg.SealPeers, cfg.SealTicketLife, cfg.SealAEAD)
	if err != nil {
		return nil, err
	}
	p := &IPCP{cfg: cfg, dir: dir, rxDone: make(chan struct{})}
	eng, err := engine.New(engine.Config[netip.AddrPort]{
		Kind:              "udp",
		Wire:              wire{p},
		Headroom:          HeaderLen,
		MaxSDU:            cfg.MaxSDU,
		Upcalls:           up,
		HashAlgo:          cfg.HashAlgo,
		Timeout:           cfg.AllocTimeout,
		RetryBase:         cfg.RetryBase,
		IdleTimeout:       cfg.IdleTimeout,
		MaxFlowsPerPeer:   cfg.MaxFlowsPerPeer,
		MaxPendingPerPeer: cfg.MaxPendingPerPeer,
		Runner:            cfg.Runner,
		Seal:              sc,
	})
	if err != nil {
		return nil, fmt.Errorf("udp: %s: %w", cfg.Name, err)
	}
	p.eng = eng
	p.maxDatagram = HeaderLen + eng.MaxSDU() + 64
	return p, nil
}

// MaxSDU implements ipcp.SDULimiter: the largest SDU of the shim's
// unsealed flows (Config.MaxSDU).
func (p *IPCP) MaxSDU() int { return p.eng.MaxSDU() }

func withPort(a netip.AddrPort) netip.AddrPort {
	if a.Port() == 0 {
		return netip.AddrPortFrom(a.Addr(), DefaultPort)
	}
	return a
}

// norm unmaps IPv4-mapped IPv6 addresses, as a dual-stack socket reports
// IPv4 peers, so that a peer has one spelling.
func norm(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Start binds the socket (or adopts Config.Device) and starts receiving.
func (p *IPCP) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.Load() != layer.StateInit {
		return fmt.Errorf("udp: %s: start in state %s: %w", p.cfg.Name, p.state.Load(), flow.ErrInvalid)
	}
	dev := p.cfg.Device
	if dev == nil {
		a := p.cfg.Addr
		if !a.Addr().IsValid() {
			a = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(withPort(a)))
		if err != nil {
			return fmt.Errorf("udp: %s: %w", p.cfg.Name, err)
		}
		dev = c
	}
	sock, bufs, err := tuneSocket(dev, p.cfg)
	if err != nil {
		dev.Close()
		return fmt.Errorf("udp: %s: %w", p.cfg.Name, err)
	}
	p.sock, p.bufs = sock, bufs
	if p.cfg.Impair.Enabled() {
		ic := p.cfg.Impair
		ic.Runner = p.cfg.Runner
		w, err := impair.WrapUDP(dev, ic)
		if err != nil {
			dev.Close()
			return fmt.Errorf("udp: %s: %w", p.cfg.Name, err)
		}
		dev = w
	}
	p.dev = dev
	p.state.Store(layer.StateOperational)
	p.eng.Start()
	p.cfg.Runner.Go(p.rxLoop)
	return nil
}

// Stop deallocates every flow (telling the peers), closes the socket and
// waits for the IPCP's goroutines. Idempotent; an IPCP is not restarted.
func (p *IPCP) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.state.Swap(layer.StateShutdown)
	p.eng.Stop()
	if old == layer.StateOperational {
		p.dev.Close()
		<-p.rxDone
	}
	p.eng.Wait()
}

// Addr returns the bound address (valid after Start).
func (p *IPCP) Addr() netip.AddrPort {
	if p.state.Load() == layer.StateInit {
		return netip.AddrPort{}
	}
	if a, ok := p.dev.LocalAddr().(*net.UDPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "udp", State: p.state.Load().String()}
}

// Register implements ipcp.IPCP: flows to name are accepted from peers.
func (p *IPCP) Register(_ context.Context, name string) error { return p.eng.Register(name) }

// Unregister implements ipcp.IPCP.
func (p *IPCP) Unregister(_ context.Context, name string) error { return p.eng.Unregister(name) }

// Query implements ipcp.IPCP: name is reachable if the directory has it.
func (p *IPCP) Query(_ context.Context, name string) error {
	if _, ok := p.dir[name]; !ok {
		return fmt.Errorf("udp: query %q: not in the directory: %w", name, flow.ErrNotFound)
	}
	return nil
}

// Alloc implements ipcp.IPCP: it asks the peer the directory names for
// req.Dst, retransmitting until ctx ends (Config.AllocTimeout without a
// deadline). A refusal maps to flow.ErrNotFound, flow.ErrRefused or
// flow.ErrBusy; silence to flow.ErrTimeout.
func (p *IPCP) Alloc(ctx context.Context, req ipcp.AllocReq, port flow.Port) error {
	_, err := p.AllocPeer(ctx, req, port)
	return err
}

// AllocPeer implements ipcp.PeerAllocator: Alloc that also returns a
// sealed flow's verified peer and its largest SDU.
func (p *IPCP) AllocPeer(ctx context.Context, req ipcp.AllocReq, port flow.Port) (ipcp.AllocResult, error) {
	if port == nil {
		return ipcp.AllocResult{}, fmt.Errorf("udp: alloc %q: nil port: %w", req.Dst, flow.ErrInvalid)
	}
	if err := p.state.Ready("udp", "alloc", req.Dst); err != nil {
		return ipcp.AllocResult{}, err
	}
	dst, ok := p.dir[req.Dst]
	if !ok {
		p.eng.C.AllocFailed.Add(1)
		return ipcp.AllocResult{}, fmt.Errorf("udp: alloc %q: not in the directory: %w", req.Dst, flow.ErrNotFound)
	}
	return p.eng.AllocPeer(ctx, dst, req, port)
}

// Stats returns the IPCP's counters, with the kernel's drops at the socket.
func (p *IPCP) Stats() shim.Stats {
	s := p.eng.C.Snapshot()
	if p.state.Load() != layer.StateInit {
		s.Drops.SocketOverflow, _ = p.sock.drops()
	}
	return s
}

// Flows lists the open flows.
func (p *IPCP) Flows() []shim.FlowInfo { return p.eng.Flows() }

// Capture answers the capture management command (layer/capture.Cmd).
func (p *IPCP) Capture(args map[string]string) (ipcp.MgmtResp, error) {
	return p.eng.Capture(p.cfg.Name, args)
}

// wire puts the engine's packets on the socket.
type wire struct{ p *IPCP }

// Send implements engine.Wire.
func (w wire) Send(pkt []byte, dst netip.AddrPort, eid uint32) error {
	Header(pkt).SetEID(eid)
	_, err := w.p.dev.WriteToUDPAddrPort(pkt, dst)
	return err
}

// rxLoop receives until the device closes: in batches through recvmmsg(2)
// when the device is a *net.UDPConn on Linux, else one datagram at a time.
func (p *IPCP) rxLoop() {
	defer close(p.rxDone)
	br := newBatchReader(p.dev, p.maxDatagram)
	var buf []byte
	if br == nil {
		buf = make([]byte, p.maxDatagram)
	}
	// A batch's SDUs for one flow go to its port in one write.
	rb := p.eng.NewRxBatch(engine.TxBatch)
	backoff := time.Duration(0)
	for {
		var n int
		var from netip.AddrPort
		var err error
		if br != nil {
			n, err = br.read()
		} else {
			n, from, err = p.dev.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.state.Load() == layer.StateShutdown {
				return
			}
			p.eng.C.RxError.Add(1)
			// A socket failing repeatedly is not spun on.
			backoff = min(max(2*backoff, 100*time.Microsecond), 50*time.Millisecond)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if br == nil {
			p.input(buf[:n], from)
			continue
		}
		for i := range n {
			a := br.addr(i)
			seg := br.segment(i)
			if !a.IsValid() || seg < 0 {
				p.eng.C.Malformed.Add(1)
				continue
			}
			// A coalesced run (UDP GRO): datagrams of seg bytes, the
			// last one shorter or as long; each has its own header.
			d := br.bufs[i][:br.length(i)]
			for {
				k := len(d)
				if seg > 0 && seg < k {
					k = seg
				}
				if h, ok := p.header(d[:k]); ok {
					rb.Input(h.Payload(), norm(a), h.EID())
				}
				if d = d[k:]; len(d) == 0 {
					break
				}
			}
		}
		// The batch's buffers are reused by the next read: deliver now.
		rb.Flush()
	}
}

// input dispatches one received datagram; it allocates nothing for data.
func (p *IPCP) input(b []byte, from netip.AddrPort) {
	if h, ok := p.header(b); ok {
		p.eng.Input(h.Payload(), norm(from), h.EID())
	}
}

// header checks a received datagram's shim header (counting a malformed
// one).
func (p *IPCP) header(b []byte) (Header, bool) {
	faultinject.Check("udp/input", b)
	h := Header(b)
	if !h.IsValid() {
		p.eng.C.Malformed.Add(1)
		return nil, false
	}
	return h, true
}
