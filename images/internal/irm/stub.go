package irm

import (
	"context"
	"fmt"
	"github.com/ouronet/ouro/layer/ipcp"
	"sync"
	"sync/atomic"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/rpc"
	"github.com/ouronet/ouro/kernel"
)

// Remote is the IRM's handle on an IPCP component: calls over the
// endpoint cap it holds to that component. Flow ends travel as ring caps.
type Remote struct {
	c *rpc.Client
}

// NewRemote returns the handle for the IPCP component behind ep (a cap in
// pd's CSpace with Write, GrantReply and Grant).
func NewRemote(pd *kernel.PD, ep kernel.Cap) *Remote { return &Remote{c: rpc.NewClient(pd, ep)} }

// Info asks the IPCP to describe itself.
func (r *Remote) Info(ctx context.Context) (ipcp.Info, error) {
	var info ipcp.Info
	_, err := r.c.Call(ctx, OpIPCPInfo, nil, nil, &info)
	return info, err
}

// Register implements the IPCP contract over the endpoint.
func (r *Remote) Register(ctx context.Context, name string) error {
	_, err := r.c.Call(ctx, OpIPCPRegister, NameArgs{Name: name}, nil, nil)
	return err
}

// Unregister implements the IPCP contract over the endpoint.
func (r *Remote) Unregister(ctx context.Context, name string) error {
	_, err := r.c.Call(ctx, OpIPCPUnregister, NameArgs{Name: name}, nil, nil)
	return err
}

// Query implements the IPCP contract over the endpoint.
func (r *Remote) Query(ctx context.Context, name string) error {
	_, err := r.c.Call(ctx, OpIPCPQuery, NameArgs{Name: name}, nil, nil)
	return err
}

// Alloc moves the flow end's caps (rx, tx) to the IPCP and asks it to
// allocate the flow; it returns the largest SDU the flow carries and, for
// a sealed flow, the peer's verified identity.
func (r *Remote) Alloc(ctx context.Context, req ipcp.AllocReq, end [2]kernel.Cap) (ipcp.AllocResult, error) {
	var res ipcp.AllocResult
	_, err := r.c.Call(ctx, OpIPCPAlloc, req, end[:], &res)
	return res, err
}

// Join moves the flow end's caps to a broadcast IPCP as a new member; it
// returns the largest SDU the layer carries.
func (r *Remote) Join(ctx context.Context, end [2]kernel.Cap) (int, error) {
	var res ipcp.AllocResult
	_, err := r.c.Call(ctx, OpIPCPJoin, nil, end[:], &res)
	return res.MaxSDU, err
}

// sduLimit is what impl says of its layer's SDUs (0: flow.MaxSDU).
func sduLimit(impl ipcp.IPCP) int {
	if l, ok := impl.(ipcp.SDULimiter); ok {
		return l.MaxSDU()
	}
	return 0
}

// Mgmt passes a management command to the IPCP.
func (r *Remote) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	var resp ipcp.MgmtResp
	_, err := r.c.Call(ctx, OpIPCPMgmt, req, nil, &resp)
	return resp, err
}

// ServeIPCP is the body of an IPCP component: it serves the IRM's calls on
// ep with impl, turning flow ends that arrive as ring caps into Ports of
// pd. It returns when the component stops.
func ServeIPCP(pd *kernel.PD, ep kernel.Cap, impl ipcp.IPCP) error {
	return rpc.Serve(pd, ep, func(ctx context.Context, r *rpc.Request) (rpc.Response, error) {
		switch r.Op {
		case OpIPCPInfo:
			return rpc.Response{Body: impl.Info()}, nil
		case OpIPCPRegister, OpIPCPUnregister, OpIPCPQuery:
			var a NameArgs
			if err := r.Decode(&a); err != nil {
				return rpc.Response{}, err
			}
			switch r.Op {
			case OpIPCPRegister:
				return rpc.Response{}, impl.Register(ctx, a.Name)
			case OpIPCPUnregister:
				return rpc.Response{}, impl.Unregister(ctx, a.Name)
			}
			return rpc.Response{}, impl.Query(ctx, a.Name)
		case OpIPCPAlloc:
			var a ipcp.AllocReq
			if err := r.Decode(&a); err != nil {
				deleteCaps(pd, r.Caps)
				return rpc.Response{}, err
			}
			port, err := portFromCaps(pd, r.Caps)
			if err != nil {
				return rpc.Response{}, err
			}
			port.SetMaxSDU(sduLimit(impl))
			res := ipcp.AllocResult{MaxSDU: sduLimit(impl)}
			if pa, ok := impl.(ipcp.PeerAllocator); ok {
				var r ipcp.AllocResult
				if r, err = pa.AllocPeer(ctx, a, port); err == nil && r.MaxSDU > 0 {
					res.MaxSDU = r.MaxSDU
				}
				res.Peer = r.Peer
			} else {
				err = impl.Alloc(ctx, a, port)
			}
			if err != nil {
				port.Close()
				return rpc.Response{}, err
			}
			return rpc.Response{Body: res}, nil
		case OpIPCPJoin:
			port, err := portFromCaps(pd, r.Caps)
			if err != nil {
				return rpc.Response{}, err
			}
			j, ok := impl.(ipcp.Joiner)
			if !ok {
				port.Close()
				return rpc.Response{}, fmt.Errorf("irm: join: %s is not a broadcast IPCP: %w", impl.Info().Name, flow.ErrInvalid)
			}
			if err := j.Join(ctx, port); err != nil {
				port.Close()
				return rpc.Response{}, err
			}
			return rpc.Response{Body: ipcp.AllocResult{MaxSDU: sduLimit(impl)}}, nil
		case OpIPCPMgmt:
			var a ipcp.MgmtReq
			if err := r.Decode(&a); err != nil {
				return rpc.Response{}, err
			}
			mg, ok := impl.(ipcp.Manager)
			if !ok {
				return rpc.Response{}, fmt.Errorf("irm: %s has no command %q: %w", impl.Info().Name, a.Cmd, flow.ErrInvalid)
			}
			resp, err := mg.Mgmt(ctx, a)
			if err == nil {
				resp, err = pageAnswer(resp, a) // page.go
			}
			return rpc.Response{Body: resp}, err
		}
		return rpc.Response{}, fmt.Errorf("irm: IPCP operation %d: %w", r.Op, flow.ErrInvalid)
	})
}

func deleteCaps(pd *kernel.PD, caps []kernel.Cap) {
	for _, c := range caps {
		pd.Delete(c)
	}
}

// portFromCaps turns a flow end received as caps (rx, tx) into a Port.
func portFromCaps(pd *kernel.PD, caps []kernel.Cap) (*RingPort, error) {
	if len(caps) != 2 {
		deleteCaps(pd, caps)
		return nil, fmt.Errorf("irm: flow end with %d caps, want 2 (was the endpoint cap minted without Grant?): %w", len(caps), flow.ErrInvalid)
	}
	return NewRingPort(pd, caps[0], caps[1]), nil
}

// UpcallClient is an IPCP component's Upcalls: calls over its badged cap
// to the IRM's endpoint.
type UpcallClient struct {
	c     *rpc.Client
	limit atomic.Pointer[ipcp.SDULimiter] // the IPCP's, once it exists
}

var _ ipcp.Upcalls = (*UpcallClient)(nil)

// NewUpcalls returns the Upcalls of an IPCP component whose cap to the
// IRM's endpoint is irmEP.
func NewUpcalls(pd *kernel.PD, irmEP kernel.Cap) *UpcallClient {
	return &UpcallClient{c: rpc.NewClient(pd, irmEP)}
}

// Serve tells the upcalls which IPCP they serve (made after them): if it
// is an SDULimiter, incoming flows carry its layer's SDU limit.
func (u *UpcallClient) Serve(impl ipcp.IPCP) {
	if l, ok := impl.(ipcp.SDULimiter); ok {
		u.limit.Store(&l)
	}
}

// FlowReq implements Upcalls.
func (u *UpcallClient) FlowReq(ctx context.Context, req ipcp.AllocReq) (flow.Port, error) {
	if l := u.limit.Load(); l != nil && req.MaxSDU == 0 {
		req.MaxSDU = (*l).MaxSDU()
	}
	caps, err := u.c.Call(ctx, OpFlowReq, req, nil, nil)
	if err != nil {
		deleteCaps(u.c.PD(), caps)
		return nil, err
	}
	p, err := portFromCaps(u.c.PD(), caps)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	p.SetMaxSDU(req.MaxSDU)
	return p, nil
}

// Hello tells the IRM that the IPCP serves its endpoint: it is
// operational (again), and the IRM registers with it the names it is to
// have. An IPCP's component calls it once per incarnation.
func (u *UpcallClient) Hello(ctx context.Context, info ipcp.Info) error {
	_, err := u.c.Call(ctx, OpHello, info, nil, nil)
	return err
}

// Broker is the in-node flow.Broker: one session with the IRM, over the
// cap the IRM minted for it (its badge is the session's identity).
type Broker struct {
	c    *rpc.Client
	sess kernel.Cap
	info SessionInfo
	once sync.Once
}

var _ flow.Broker = (*Broker)(nil)

// OpenSession opens a session with the IRM for component pd, whose cap to
// the IRM's endpoint is irmEP, and returns its broker. What the session
// may do follows the role of irmEP's badge (see Role); req matters only
// to the gateway. A component with several independent users (the
// socket gateway) opens a session for each.
func OpenSession(ctx context.Context, pd *kernel.PD, irmEP kernel.Cap, req SessionReq) (*Broker, error) {
	var info SessionInfo
	caps, err := rpc.NewClient(pd, irmEP).Call(ctx, OpSession, req, nil, &info)
	if err != nil {
		deleteCaps(pd, caps)
		return nil, err
	}
	if len(caps) != 1 {
		deleteCaps(pd, caps)
		return nil, fmt.Errorf("irm: session opened with %d caps, want 1 (was the cap to the IRM minted without Grant?): %w", len(caps), flow.ErrInvalid)
	}
	return &Broker{c: rpc.NewClient(pd, caps[0]), sess: caps[0], info: info}, nil
}

// SessionBroker returns the broker of a session whose cap sess component
// pd already holds (a gateway's session component starts with it).
func SessionBroker(pd *kernel.PD, sess kernel.Cap) *Broker {
	return &Broker{c: rpc.NewClient(pd, sess), sess: sess}
}

// Session describes the session (zero for a SessionBroker).
func (b *Broker) Session() SessionInfo { return b.info }

// Cap returns the session cap in the component's CSpace, from which the
// component may derive a child component's cap (the gateway's session
// components); the IRM revokes all of them when the session ends.
func (b *Broker) Cap() kernel.Cap { return b.sess }

func (b *Broker) flowCall(ctx context.Context, op rpc.Op, args any) (flow.Port, flow.Info, error) {
	var info flow.Info
	caps, err := b.c.Call(ctx, op, args, nil, &info)
	if err != nil {
		deleteCaps(b.c.PD(), caps)
		return nil, flow.Info{}, err
	}
	p, err := portFromCaps(b.c.PD(), caps)
	if err != nil {
		return nil, flow.Info{}, err
	}
	p.SetMaxSDU(info.SDULimit())
	return p, info, nil
}

// Alloc implements flow.Broker.
func (b *Broker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	return b.flowCall(ctx, OpAlloc, AllocArgs{Name: name, QoS: q})
}

// Accept implements flow.Broker.
func (b *Broker) Accept(ctx context.Context) (flow.Port, flow.Info, error) {
	return b.flowCall(ctx, OpAccept, nil)
}

// Join implements flow.Broker.
func (b *Broker) Join(ctx context.Context, layer string) (flow.Port, flow.Info, error) {
	return b.flowCall(ctx, OpJoin, JoinArgs{Layer: layer})
}

// Bind implements flow.Broker.
func (b *Broker) Bind(ctx context.Context, name string) error {
	_, err := b.c.Call(ctx, OpBind, NameArgs{Name: name}, nil, nil)
	return err
}

// BindPeers implements flow.PeerBinder.
func (b *Broker) BindPeers(ctx context.Context, name string, peers []string) error {
	if err := CheckPeers(peers); err != nil {
		return err
	}
	_, err := b.c.Call(ctx, OpBind, NameArgs{Name: name, Peers: peers}, nil, nil)
	return err
}

// Unbind implements flow.Broker.
func (b *Broker) Unbind(ctx context.Context, name string) error {
	_, err := b.c.Call(ctx, OpUnbind, NameArgs{Name: name}, nil, nil)
	return err
}

// Mgmt sends a management command to the IRM.
func (b *Broker) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	var resp ipcp.MgmtResp
	_, err := b.c.Call(ctx, OpMgmt, req, nil, &resp)
	return resp, err
}

// Go starts f as a goroutine of the broker's component (under the kernel:
// a panic in f is a fault of that component). flow.Client finds it by type
// assertion and starts its accept loop with it.
func (b *Broker) Go(f func()) { b.c.PD().Go(f) }

// Close implements flow.Broker: the session ends, its names are unbound
// and its cap is revoked; flows stay open. Idempotent.
func (b *Broker) Close() error {
	var err error
	b.once.Do(func() {
		pd := b.c.PD()
		ctx, cancel := context.WithTimeout(pd.Context(), defaultCallTimeout)
		defer cancel()
		_, err = b.c.Call(ctx, OpEndSession, nil, nil, nil)
		pd.Delete(b.sess)
	})
	return err
}
