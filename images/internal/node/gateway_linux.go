package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/kernel"
)

// Gateway returns the hosted socket gateway with the default options (see
// GatewayWith).
func Gateway(path string, logf func(string, ...any)) Extra {
	return GatewayWith(path, GatewayOptions{}, logf)
}

// GatewayWith returns the hosted socket gateway as an Extra component: it
// listens on the node's Unix socket, checks each connecting program's
// credentials (SO_PEERCRED) and gives it a session with the IRM in a
// component of its own, with its own budget. Every flow it hands over is a
// SOCK_SEQPACKET socket pair spliced to the flow's rings
// (docs/wire/node-socket.md, docs/node.md).
func GatewayWith(path string, opts GatewayOptions, logf func(string, ...any)) Extra {
	opts.setDefaults()
	g := &gateway{path: path, opts: opts, logf: logf}
	prepare := func() error {
		if err := claimSocket(path); err != nil { // socketpath_linux.go
			return err
		}
		acc, err := newSocketAccess(opts)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		l, err := listenSocket(path, acc.mode(), acc.gid)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		g.mu.Lock()
		g.l, g.acc = l, acc
		g.mu.Unlock()
		return nil
	}
	cleanup := func() {
		g.mu.Lock()
		l := g.l
		g.l = nil
		g.mu.Unlock()
		if l != nil {
			l.Close()
			os.Remove(path)
		}
	}
	return Extra{
		Name: gatewayName,
		// Each session's budget is carved from the gateway's; each
		// session is one run-time object (the component), plus the
		// gateway's fault endpoint.
		Bufs:    opts.MaxSessions * opts.SessionBufs,
		Objects: opts.MaxSessions + 1,
		Prepare: prepare, Cleanup: cleanup, Program: g.run,
	}
}

// gateway is the socket gateway across its incarnations: the listener
// outlives a faulted incarnation, so a restart does not lose the socket.
type gateway struct {
	path string
	opts GatewayOptions
	logf func(string, ...any)

	mu  sync.Mutex // guards l, acc, inc
	l   *net.UnixListener
	acc socketAccess
	inc uint64 // the running incarnation's number
}

// gwRun is one incarnation of the gateway.
type gwRun struct {
	g      *gateway
	pd     *kernel.PD
	irmEP  kernel.Cap
	faults kernel.Cap         // its sessions' faults arrive here
	exited chan uint64        // sessions whose program returned
	mu     sync.Mutex         // guards below
	sess   map[uint64]*gwSess // by id (the session component's fault badge)
	next   uint64
}

// gwSess is the gateway's record of one program's session.
type gwSess struct {
	id    uint64
	conn  *net.UnixConn
	b     *irm.Broker // the gateway's handle on the session (ends it)
	child kernel.Cap  // the session component
}

func (g *gateway) run(pd *kernel.PD) error {
	irmEP, err := pd.Slot(slotIRM)
	if err != nil {
		return err
	}
	g.mu.Lock()
	l := g.l
	g.inc++
	inc := g.inc
	if l != nil {
		l.SetDeadline(time.Time{}) // a previous incarnation may have set it
	}
	g.mu.Unlock()
	if l == nil {
		return fmt.Errorf("gateway: not prepared: %w", flow.ErrInvalid)
	}
	faults, err := pd.NewEndpoint()
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	r := &gwRun{g: g, pd: pd, irmEP: irmEP, faults: faults, sess: make(map[uint64]*gwSess),
		exited: make(chan uint64, g.opts.MaxSessions+1)}
	ctx := pd.Context()
	pd.Go(func() {
		<-ctx.Done()
		// Wake the accept below without closing the listener: the next
		// incarnation serves it on.
		g.mu.Lock()
		if g.inc == inc && g.l != nil {
			g.l.SetDeadline(time.Now())
		}
		g.mu.Unlock()
		r.closeAll()
	})
	pd.Go(r.superviseSessions)
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return nil // the node stopped
			}
			return fmt.Errorf("gateway: accept: %w", err)
		}
		pd.Go(func() { r.admit(c) })
	}
}

// admit gives the program at c a session, in a component of its own, if
// its credentials allow it.
func (r *gwRun) admit(c *net.UnixConn) {
	g := r.g
	cred, err := peerCred(c)
	if err != nil {
		g.logf("gateway: refused a connection: %v", err)
		c.Close()
		return
	}
	g.mu.Lock()
	acc := g.acc
	g.mu.Unlock()
	mgmt, ok := acc.role(cred)
	if !ok {
		g.logf("gateway: refused uid %d (gid %d): not root, this node's user or a member of the socket group, and socket_public is off", cred.uid, cred.gid)
		c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(r.pd.Context(), 10*time.Second)
	defer cancel()
	principal := fmt.Sprintf("uid:%d", cred.uid)
	b, err := irm.OpenSession(ctx, r.pd, r.irmEP, irm.SessionReq{Principal: principal, Mgmt: mgmt})
	if err != nil {
		g.logf("gateway: session for %s: %v", principal, err)
		c.Close()
		return
	}
	r.mu.Lock()
	r.next++
	s := &gwSess{id: r.next, conn: c, b: b}
	r.sess[s.id] = s
	r.mu.Unlock()
	child, err := r.pd.Spawn(kernel.ComponentSpec{
		Name:       sessionComponent(b.Session().ID),
		Budget:     kernel.Budget{Bufs: g.opts.SessionBufs},
		FaultCap:   r.faults,
		FaultBadge: kernel.Badge(s.id),
		Caps:       []kernel.CapSpec{{Name: slotSession, Src: b.Cap(), Rights: kernel.Write | kernel.Grant | kernel.GrantReply}},
	}, r.sessionProgram(s.id, c))
	if err != nil {
		g.logf("gateway: session for %s: %v", principal, err)
		r.end(s.id)
		return
	}
	r.mu.Lock()
	s.child = child
	r.mu.Unlock()
}

// sessionComponent names the component of the IRM's session id: its
// IRM instance (the id's epoch) and number, "gateway.s1.7".
func sessionComponent(id uint64) string {
	return fmt.Sprintf("gateway.s%d.%d", id>>40, id&(1<<40-1))
}

// sessionProgram is the program of one session's component: it serves
// the program's requests on conn with the session's cap, until conn
// closes, then ends the session.
func (r *gwRun) sessionProgram(id uint64, conn *net.UnixConn) kernel.Program {
	return func(pd *kernel.PD) error {
		defer func() {
			select {
			case r.exited <- id:
			default: // the gateway's incarnation is gone: it ended everything
			}
		}()
		sc, err := pd.Slot(slotSession)
		if err != nil {
			return err
		}
		s := &gwSession{pd: pd, conn: conn, b: irm.SessionBroker(pd, sc), codec: flow.NewCodec(), logf: r.g.logf, obs: r.g.opts.Allocs,
			slots: make(chan struct{}, maxSessionRequests)}
		ctx := pd.Context()
		pd.Go(func() {
			<-ctx.Done()
			conn.Close()
		})
		s.serve(ctx)
		// The program's flows outlive its session: each is a socket of
		// its own, spliced here, on this component's budget.
		s.flows.Wait()
		return nil
	}
}

// superviseSessions ends the sessions whose component exited or faulted.
func (r *gwRun) superviseSessions() {
	ctx := r.pd.Context()
	msg := kernel.Msg{Payload: make([]byte, 0, kernel.MaxPayload)}
	faults := make(chan uint64)
	r.pd.Go(func() {
		for {
			msg.Payload = msg.Payload[:0]
			info, err := r.pd.RecvCtx(ctx, r.faults, &msg)
			if err != nil && !errors.Is(err, kernel.ErrTruncated) {
				return
			}
			if f, ok := kernel.DecodeFault(&msg); ok {
				r.g.logf("gateway: session component %s faulted: %s", f.Component, f.Reason)
				select {
				case faults <- uint64(info.Badge):
				case <-ctx.Done():
					return
				}
			}
		}
	})
	for {
		select {
		case id := <-r.exited:
			r.end(id)
		case id := <-faults:
			r.end(id)
		case <-ctx.Done():
			return
		}
	}
}

// end ends session id: the IRM ends it (revoking its caps), the program's
// connection closes and its component is destroyed (its budget returns).
func (r *gwRun) end(id uint64) {
	r.mu.Lock()
	s := r.sess[id]
	delete(r.sess, id)
	r.mu.Unlock()
	if s == nil {
		return
	}
	s.conn.Close()
	s.b.Close()
	if s.child != 0 {
		r.pd.Delete(s.child)
	}
}

func (r *gwRun) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sess {
		s.conn.Close()
	}
}

// maxSessionRequests bounds the requests one program may have in
// progress at once (blocked Accepts among them).
const maxSessionRequests = 256

// gwSession is one program's control connection, served in the session's
// component.
type gwSession struct {
	pd    *kernel.PD
	conn  *net.UnixConn
	b     *irm.Broker
	codec flow.Codec
	logf  func(string, ...any)
	obs   AllocObserver  // nil: allocations are not observed
	slots chan struct{}  // requests in progress
	flows sync.WaitGroup // request handlers in progress and spliced flows
	wmu   sync.Mutex     // serialises writes on conn
}

func (s *gwSession) serve(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer func() {
		cancel() // abandons the session's pending Accepts
		s.conn.Close()
		s.b.Close() // ends the session: unbinds its names
	}()
	buf := make([]byte, flow.MaxControlMsg)
	for {
		n, err := s.conn.Read(buf)
		if err != nil || n == 0 {
			return
		}
		var req flow.SockReq
		if err := s.codec.Unmarshal(buf[:n], &req); err != nil {
			s.logf("gateway: session dropped: %v", err)
			return
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.send(flow.SockResp{ID: req.ID, Err: flow.EncodeError(fmt.Errorf("gateway: %d requests in progress: %w", maxSessionRequests, flow.ErrBusy))}, -1)
			continue
		}
		s.flows.Add(1) // the handler: its flow, if any, is counted before the reply goes
		s.pd.Go(func() {
			defer func() { <-s.slots }()
			defer s.flows.Done()
			s.handle(ctx, req)
		})
	}
}

func (s *gwSession) handle(ctx context.Context, req flow.SockReq) {
	resp := flow.SockResp{ID: req.ID}
	var (
		port flow.Port
		err  error
	)
	switch req.Op {
	case flow.SockAlloc:
		start := time.Now()
		port, resp.Info, err = s.b.Alloc(ctx, req.Name, req.QoS)
		if s.obs != nil {
			s.obs.ObserveAlloc(resp.Info.Layer, time.Since(start), err)
		}
	case flow.SockJoin:
		port, resp.Info, err = s.b.Join(ctx, req.Layer)
	case flow.SockAccept:
		port, resp.Info, err = s.b.Accept(ctx)
	case flow.SockBind:
		var peers []string
		if len(req.Body) > 0 {
			err = s.codec.Unmarshal(req.Body, &peers)
		}
		if err == nil {
			err = s.b.BindPeers(ctx, req.Name, peers)
		}
	case flow.SockUnbind:
		err = s.b.Unbind(ctx, req.Name)
	case flow.SockMgmt:
		var m irm.MgmtReq
		if err = s.codec.Unmarshal(req.Body, &m); err == nil {
			var r irm.MgmtResp
			if r, err = s.b.Mgmt(ctx, m); err == nil {
				resp.Body, err = s.codec.Marshal(r)
			}
		}
	default:
		err = fmt.Errorf("gateway: operation %d: %w", req.Op, flow.ErrInvalid)
	}
	resp.Err = flow.EncodeError(err)
	if port == nil {
		s.send(resp, -1)
		return
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		port.Close()
		resp.Err = flow.EncodeError(fmt.Errorf("gateway: socketpair: %w: %w", flow.ErrBusy, err))
		s.send(resp, -1)
		return
	}
	mine, err := fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		port.Close()
		resp.Err = flow.EncodeError(err)
		s.send(resp, -1)
		return
	}
	// Counted before the reply: a program that closes its session as
	// soon as it has the flow (flow.DialName does) must not find the
	// session's component gone, and its flow with it.
	s.flows.Add(1)
	if !s.send(resp, fds[1]) {
		mine.Close()
		port.Close()
		s.flows.Done()
		return
	}
	splice(s.pd, port, flow.NewSeqpacketPort(mine), s.flows.Done)
}

func fileConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "ouro-flow")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return c.(*net.UnixConn), nil
}

// send writes resp, with fd (closed here) as SCM_RIGHTS if fd >= 0.
func (s *gwSession) send(resp flow.SockResp, fd int) bool {
	b, err := s.codec.Marshal(resp)
	if err != nil {
		s.logf("gateway: encode response: %v", err)
		b, _ = s.codec.Marshal(flow.SockResp{ID: resp.ID, Err: flow.EncodeError(err)})
	}
	var oob []byte
	if fd >= 0 {
		oob = syscall.UnixRights(fd)
		defer syscall.Close(fd)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, _, err = s.conn.WriteMsgUnix(b, oob, nil)
	return err == nil
}

// splice copies SDUs both ways between a flow's ring port and the
// program's socket until either side ends, then closes both and calls
// done. The flow's socket is closed when pd's incarnation ends.
func splice(pd *kernel.PD, ring flow.Port, sock flow.Port, done func()) {
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ring.Close()
			sock.Close()
		})
	}
	var pumps sync.WaitGroup
	pumps.Add(2)
	pump := func(dst, src flow.Port) {
		defer stop()
		buf := make([]byte, flow.MaxSDU+1)
		for {
			n, err := src.Read(buf, time.Time{})
			if err != nil && !errors.Is(err, flow.ErrTruncated) {
				return
			}
			if err := dst.Write(buf[:n], time.Time{}); err != nil {
				if errors.Is(err, flow.ErrTooBig) || errors.Is(err, flow.ErrBusy) {
					continue // counted by the port's owner; keep the flow
				}
				return
			}
		}
	}
	cancel := context.AfterFunc(pd.Context(), stop)
	pd.Go(func() { defer pumps.Done(); pump(ring, sock) })
	pd.Go(func() { defer pumps.Done(); pump(sock, ring) })
	pd.Go(func() {
		pumps.Wait()
		cancel()
		done()
	})
}
