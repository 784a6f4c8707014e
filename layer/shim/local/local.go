// Package local is the local shim: an IPCP whose layer spans one node, so
// that programs on the node reach each other's names. It splices the two
// ends' ports with copy loops; it has no wire format and no device.
package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

var _ ipcp.IPCP = (*IPCP)(nil)

// Config configures a local shim IPCP.
type Config struct {
	Layer string // the layer name; required
	Name  string // the IPCP's own name; required
	// Runner starts the copy loops (in a node, the component's kernel
	// PD); required.
	Runner layer.Runner
}

// IPCP is a local shim IPC process. Its counters count SDUs from
// allocating to accepting programs as out, the other way as in.
type IPCP struct {
	cfg   Config
	up    ipcp.Upcalls
	state layer.Lifecycle
	c     engine.Counters
	wg    sync.WaitGroup

	mu     sync.Mutex
	names  shim.Names
	flows  map[uint64]*splice
	nextID uint64
}

// splice is one flow: the allocator's port a joined to the acceptor's b.
type splice struct {
	id   uint64
	name string
	qos  flow.QoS
	a, b flow.Port
	once sync.Once
	// SDUs a->b (out) and b->a (in).
	pktsOut, bytesOut, pktsIn, bytesIn atomic.Uint64
}

// New returns an IPCP in state "init".
func New(cfg Config, up ipcp.Upcalls) (*IPCP, error) {
	if cfg.Layer == "" || cfg.Name == "" {
		return nil, fmt.Errorf("local: config needs a layer and a name: %w", flow.ErrInvalid)
	}
	if up == nil {
		return nil, fmt.Errorf("local: %s: no upcalls: %w", cfg.Name, flow.ErrInvalid)
	}
	if cfg.Runner == nil {
		return nil, layer.NeedRunner("local: " + cfg.Name)
	}
	return &IPCP{cfg: cfg, up: up, flows: make(map[uint64]*splice)}, nil
}

// Start makes the IPCP operational.
func (p *IPCP) Start() error {
	if !p.state.CompareAndSwap(layer.StateInit, layer.StateOperational) {
		return fmt.Errorf("local: %s: start in state %s: %w", p.cfg.Name, p.state.Load(), flow.ErrInvalid)
	}
	return nil
}

// Stop closes every flow and waits for the copy loops. Idempotent.
func (p *IPCP) Stop() {
	p.state.Store(layer.StateShutdown)
	p.mu.Lock()
	var ss []*splice
	for _, s := range p.flows {
		ss = append(ss, s)
	}
	p.mu.Unlock()
	for _, s := range ss {
		p.end(s)
	}
	p.wg.Wait()
}

// Info implements ipcp.IPCP.
func (p *IPCP) Info() ipcp.Info {
	return ipcp.Info{Name: p.cfg.Name, Layer: p.cfg.Layer, Kind: "local", State: p.state.Load().String()}
}

// Register implements ipcp.IPCP.
func (p *IPCP) Register(_ context.Context, name string) error {
	return p.names.Register("local", name)
}

// Unregister implements ipcp.IPCP.
func (p *IPCP) Unregister(_ context.Context, name string) error {
	return p.names.Unregister("local", name)
}

// Query implements ipcp.IPCP: name is reachable if it is registered here.
func (p *IPCP) Query(_ context.Context, name string) error {
	if !p.names.Has(name) {
		return fmt.Errorf("local: query %q: %w", name, flow.ErrNotFound)
	}
	return nil
}

// Alloc implements ipcp.IPCP: it asks the IRM to accept the flow for the
// registered name and splices port to the acceptor's end.
func (p *IPCP) Alloc(ctx context.Context, req ipcp.AllocReq, port flow.Port) (err error) {
	defer func() {
		if err != nil {
			p.c.AllocFailed.Add(1)
		}
	}()
	if port == nil {
		return fmt.Errorf("local: alloc %q: nil port: %w", req.Dst, flow.ErrInvalid)
	}
	if err := p.state.Ready("local", "alloc", req.Dst); err != nil {
		return err
	}
	if err := p.Query(ctx, req.Dst); err != nil {
		return err
	}
	peer, err := p.up.FlowReq(ctx, ipcp.AllocReq{Dst: req.Dst, Src: req.Src, QoS: req.QoS})
	if err != nil {
		if !errors.Is(err, flow.ErrNotFound) && !errors.Is(err, flow.ErrBusy) && !errors.Is(err, flow.ErrRefused) {
			err = fmt.Errorf("%w (%w)", flow.ErrRefused, err)
		}
		return fmt.Errorf("local: alloc %q: %w", req.Dst, err)
	}
	if peer == nil {
		return fmt.Errorf("local: alloc %q: no port from the IRM: %w", req.Dst, flow.ErrRefused)
	}
	s := &splice{name: req.Dst, qos: req.QoS, a: port, b: peer}
	p.mu.Lock()
	if p.state.Load() == layer.StateShutdown {
		p.mu.Unlock()
		peer.Close()
		return fmt.Errorf("local: alloc %q: stopped: %w", req.Dst, flow.ErrClosed)
	}
	p.nextID++
	s.id = p.nextID
	p.flows[s.id] = s
	p.wg.Add(2)
	p.mu.Unlock()
	p.c.FlowsOut.Add(1)
	p.c.FlowsIn.Add(1)
	p.c.FlowsActive.Add(1)
	p.cfg.Runner.Go(func() { p.copy(s, s.a, s.b, &s.pktsOut, &s.bytesOut, &p.c.PacketsOut, &p.c.BytesOut) })
	p.cfg.Runner.Go(func() { p.copy(s, s.b, s.a, &s.pktsIn, &s.bytesIn, &p.c.PacketsIn, &p.c.BytesIn) })
	return nil
}

// copy moves SDUs from src to dst until either end closes, then ends the
// flow. Writes block: back-pressure reaches the writer end to end. It
// allocates nothing per SDU.
func (p *IPCP) copy(s *splice, src, dst flow.Port, pkts, bytes, allPkts, allBytes *atomic.Uint64) {
	defer p.wg.Done()
	buf := make([]byte, flow.MaxSDU)
	for {
		n, err := src.Read(buf, time.Time{})
		if errors.Is(err, flow.ErrTruncated) {
			p.c.Truncated.Add(1)
			continue
		}
		if err != nil {
			break
		}
		if dst.Write(buf[:n], time.Time{}) != nil {
			break
		}
		pkts.Add(1)
		bytes.Add(uint64(n))
		allPkts.Add(1)
		allBytes.Add(uint64(n))
	}
	p.end(s)
}

// end closes both ports of s once: each side reads what was in flight,
// then flow.ErrClosed.
func (p *IPCP) end(s *splice) {
	s.once.Do(func() {
		s.a.Close()
		s.b.Close()
		p.mu.Lock()
		delete(p.flows, s.id)
		p.mu.Unlock()
		p.c.FlowsActive.Add(^uint64(0))
	})
}

// Stats returns the IPCP's counters.
func (p *IPCP) Stats() shim.Stats { return p.c.Snapshot() }

// Flows lists the open flows.
func (p *IPCP) Flows() []shim.FlowInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]shim.FlowInfo, 0, len(p.flows))
	for _, s := range p.flows {
		out = append(out, shim.FlowInfo{
			LocalEID: s.id, Peer: "local", Name: s.name, Outgoing: true, QoS: s.qos,
			PacketsIn: s.pktsIn.Load(), BytesIn: s.bytesIn.Load(),
			PacketsOut: s.pktsOut.Load(), BytesOut: s.bytesOut.Load(),
		})
	}
	return out
}
