package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/shmring"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

// Gateway returns the hosted socket gateway with the default options (see
// GatewayWith).
func Gateway(path string, log *slog.Logger) Extra {
	return GatewayWith(path, GatewayOptions{}, log)
}

// GatewayWith returns the hosted socket gateway as an Extra component: it
// listens on the node's Unix socket, checks each connecting program's
// credentials (SO_PEERCRED) and gives it a session with the IRM in a
// component of its own, with its own budget. Every flow it hands over is a
// SOCK_SEQPACKET socket pair and, to a program that announced
// flow.SockFeatureShm, a pair of shared-memory rings (flow/shmring) whose
// mapping is charged to the session's budget; the session's component
// copies SDUs between them and the flow's kernel rings
// (docs/wire/node-socket.md, docs/node.md).
func GatewayWith(path string, opts GatewayOptions, log *slog.Logger) Extra {
	opts.setDefaults()
	g := &gateway{path: path, opts: opts, log: logx.Or(log).With("component", "gateway")}
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
		// gateway's fault endpoint; one more session's worth is the
		// session prepared ahead for the next program.
		Bufs:    (opts.MaxSessions + 1) * opts.SessionBufs,
		Objects: opts.MaxSessions + 2,
		Prepare: prepare, Cleanup: cleanup, Program: g.run,
	}
}

// gateway is the socket gateway across its incarnations: the listener
// outlives a faulted incarnation, so a restart does not lose the socket.
type gateway struct {
	path string
	opts GatewayOptions
	log  *slog.Logger

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
	handed int     // sessions serving a program (at most MaxSessions)
	prep   *gwPrep // the session prepared for the next program, if any (also in sess)
	arming bool    // a session is being prepared
}

// gwSess is the gateway's record of one program's session.
type gwSess struct {
	id    uint64
	conn  *net.UnixConn // nil while the session is prepared, not handed out
	b     *irm.Broker   // the gateway's handle on the session (ends it)
	child kernel.Cap    // the session component
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
	// The first session prepared is for the node's own user, who runs
	// the tools most often; after that, for whoever connected last.
	g.mu.Lock()
	acc := g.acc
	g.mu.Unlock()
	self := peerCreds{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}
	if mgmt, ok := acc.role(self); ok {
		r.arm(sessKeyOf(self, mgmt))
	}
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
		r.admit(c)
	}
}

// sessKey is what a session is opened for: the principal and whether it
// manages the node. A prepared session serves only a program with the
// same key.
type sessKey struct {
	principal string
	mgmt      bool
}

func sessKeyOf(c peerCreds, mgmt bool) sessKey {
	return sessKey{principal: fmt.Sprintf("uid:%d", c.uid), mgmt: mgmt}
}

// admit gives the program at c a session, in a component of its own, if
// its credentials allow it. It runs in the accepting goroutine: the
// credential check is two getsockopt calls, and a program whose key
// matches the prepared session gets that session at once (its
// component, already waiting, reads the first request); only opening a
// session afresh goes on in a goroutine of its own.
func (r *gwRun) admit(c *net.UnixConn) {
	g := r.g
	cred, err := peerCred(c)
	if err != nil {
		g.log.Warn("connection refused", "err", err)
		c.Close()
		return
	}
	g.mu.Lock()
	acc := g.acc
	g.mu.Unlock()
	mgmt, ok := acc.role(cred)
	if !ok {
		g.log.Warn("connection refused: not root, this node's user or a member of the socket group, and socket_public is off", "uid", cred.uid, "gid", cred.gid)
		c.Close()
		return
	}
	key := sessKeyOf(cred, mgmt)
	r.mu.Lock()
	if r.handed >= g.opts.MaxSessions {
		r.mu.Unlock()
		g.log.Warn("session refused: max_sessions programs connected", "principal", key.principal, "max", g.opts.MaxSessions)
		c.Close()
		return
	}
	p := r.prep
	if p != nil && p.key == key {
		r.prep = nil
	} else {
		p = nil
	}
	r.mu.Unlock()
	// The next session is prepared once this one answered its first
	// request (or ended): preparing it meanwhile would compete for the
	// CPU with that request.
	next := func() { r.arm(key) }
	if p != nil {
		if p.h.give(c, next) {
			r.mu.Lock()
			live := r.sess[p.s.id] == p.s
			if live {
				p.s.conn = c
				r.handed++
			}
			r.mu.Unlock()
			if !live { // ended meanwhile (its component faulted)
				c.Close()
			}
			return
		}
		r.end(p.s.id) // its component ended before it had a program
	}
	r.pd.Go(func() {
		p, err := r.open(key)
		if err != nil {
			g.log.Warn("session refused", "principal", key.principal, "err", err)
			c.Close()
			return
		}
		r.mu.Lock()
		live := r.sess[p.s.id] == p.s
		full := r.handed >= g.opts.MaxSessions
		if live && !full {
			p.s.conn = c
			r.handed++
		}
		r.mu.Unlock()
		if !live || full || !p.h.give(c, next) { // its component ended already, or others took the room meanwhile
			c.Close()
			r.end(p.s.id)
			return
		}
	})
}

// gwPrep is a session opened ahead of its program: the IRM's session and
// its component, which waits for the connection it is to serve.
type gwPrep struct {
	key sessKey
	s   *gwSess
	h   *handoff
}

// handoff carries a program's connection to the session component that
// waits for it, which may end first (its gateway's incarnation ending).
type handoff struct {
	mu    sync.Mutex // guards gone, and sends on ch
	gone  bool       // the component stopped waiting
	first func()     // set by give
	ch    chan *net.UnixConn
}

func newHandoff() *handoff { return &handoff{ch: make(chan *net.UnixConn, 1)} }

// give hands c to the component, which calls first once it answered c's
// first request (or c ended); false if it ended, and c is the caller's
// still. It never blocks: a session is given one connection.
func (h *handoff) give(c *net.UnixConn, first func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return false
	}
	h.first = first
	h.ch <- c
	return true
}

// take waits for the connection until ctx ends; after that nothing can
// be given (a connection given meanwhile is closed), and it returns nil.
func (h *handoff) take(ctx context.Context) *net.UnixConn {
	select {
	case c := <-h.ch:
		return c
	case <-ctx.Done():
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone = true
	select {
	case c := <-h.ch:
		c.Close()
	default:
	}
	return nil
}

// arm prepares a session for key in the background, so that the next
// program with that key does not wait for the IRM and a component's
// spawn. At most one session is prepared at a time: one for another key
// is ended first. It does nothing once the incarnation ends.
func (r *gwRun) arm(key sessKey) {
	r.mu.Lock()
	if r.arming || r.pd.Context().Err() != nil || (r.prep != nil && r.prep.key == key) {
		r.mu.Unlock()
		return
	}
	old := r.prep
	r.prep = nil
	r.arming = true
	r.mu.Unlock()
	if old != nil {
		r.end(old.s.id)
	}
	r.pd.Go(func() {
		p, err := r.open(key)
		r.mu.Lock()
		r.arming = false
		if err == nil && r.prep == nil && r.pd.Context().Err() == nil {
			r.prep, p = p, nil
		}
		r.mu.Unlock()
		if err != nil {
			r.g.log.Debug("no session prepared", "principal", key.principal, "err", err)
			return
		}
		if p != nil { // the incarnation ended meanwhile
			r.end(p.s.id)
		}
	})
}

// open opens a session with the IRM for key and spawns its component,
// which waits on the returned gwPrep's conn for the program it serves.
func (r *gwRun) open(key sessKey) (*gwPrep, error) {
	g := r.g
	ctx, cancel := context.WithTimeout(r.pd.Context(), 10*time.Second)
	defer cancel()
	b, err := irm.OpenSession(ctx, r.pd, r.irmEP, irm.SessionReq{Principal: key.principal, Mgmt: key.mgmt})
	if err != nil {
		return nil, err
	}
	p := &gwPrep{key: key, h: newHandoff()}
	r.mu.Lock()
	r.next++
	s := &gwSess{id: r.next, b: b}
	r.sess[s.id] = s
	r.mu.Unlock()
	p.s = s
	child, err := r.pd.Spawn(kernel.ComponentSpec{
		Name:       sessionComponent(b.Session().ID),
		Budget:     kernel.Budget{Bufs: g.opts.SessionBufs},
		FaultCap:   r.faults,
		FaultBadge: kernel.Badge(s.id),
		Caps:       []kernel.CapSpec{{Name: slotSession, Src: b.Cap(), Rights: kernel.Write | kernel.Grant | kernel.GrantReply}},
	}, r.sessionProgram(s.id, p.h))
	if err != nil {
		r.end(s.id)
		return nil, err
	}
	r.mu.Lock()
	s.child = child
	r.mu.Unlock()
	return p, nil
}

// sessionComponent names the component of the IRM's session id: its
// IRM instance (the id's epoch) and number, "gateway.s1.7".
func sessionComponent(id uint64) string {
	return fmt.Sprintf("gateway.s%d.%d", id>>40, id&(1<<40-1))
}

// sessionProgram is the program of one session's component: it waits for
// the program's connection from h, serves the program's requests on it
// with the session's cap until it closes, then ends the session.
func (r *gwRun) sessionProgram(id uint64, h *handoff) kernel.Program {
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
		conn := h.take(pd.Context())
		if conn == nil {
			return nil // never handed out: the gateway ends the session
		}
		s := &gwSession{pd: pd, conn: conn, b: irm.SessionBroker(pd, sc), codec: flow.NewCodec(), log: r.g.log, first: h.first,
			slots: make(chan struct{}, maxSessionRequests)}
		ctx := pd.Context()
		pd.Go(func() {
			<-ctx.Done()
			conn.Close()
		})
		s.serve(ctx)
		s.rings.close(pd) // no flow comes after the session
		s.firstDone()
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
				r.g.log.Warn("session component faulted", "session", f.Component, "reason", f.Reason)
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
	if r.prep != nil && r.prep.s == s {
		r.prep = nil
	}
	if s != nil && s.conn != nil {
		r.handed--
	}
	r.mu.Unlock()
	if s == nil {
		return
	}
	if s.conn != nil {
		s.conn.Close()
	}
	s.b.Close()
	if s.child != 0 {
		r.pd.Delete(s.child)
	}
}

func (r *gwRun) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sess {
		if s.conn != nil {
			s.conn.Close()
		}
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
	log   *slog.Logger
	slots chan struct{}  // requests in progress
	flows sync.WaitGroup // request handlers in progress and spliced flows
	wmu   sync.Mutex     // serialises writes on conn
	shm   atomic.Bool    // the program announced flow.SockFeatureShm
	keep  atomic.Bool    // and flow.SockFeatureKeep
	rings keptRings      // the rings of the program's closed flows, kept for its next ones
	first func()         // called once, when the first request was answered (nil: none)
	once  sync.Once
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
			s.log.Info("session dropped", "err", err)
			return
		}
		if req.Op == flow.SockHello {
			// Served in order: the requests after it see its features.
			s.hello(req)
			continue
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

// hello grants the features the program announced that this node
// speaks: shared rings, and keeping them between flows.
func (s *gwSession) hello(req flow.SockReq) {
	var want uint64
	resp := flow.SockResp{ID: req.ID}
	if err := s.codec.Unmarshal(req.Body, &want); err != nil {
		resp.Err = flow.EncodeError(fmt.Errorf("gateway: hello: %w: %w", flow.ErrInvalid, err))
		s.send(resp, -1)
		return
	}
	granted := want & flow.SockFeatureShm
	if granted != 0 {
		granted |= want & flow.SockFeatureKeep
	}
	s.shm.Store(granted&flow.SockFeatureShm != 0)
	s.keep.Store(granted&flow.SockFeatureKeep != 0)
	resp.Body, _ = s.codec.Marshal(granted)
	s.send(resp, -1)
}

// firstDone calls s.first once.
func (s *gwSession) firstDone() {
	if s.first != nil {
		s.once.Do(s.first)
	}
}

func (s *gwSession) handle(ctx context.Context, req flow.SockReq) {
	defer s.firstDone()
	resp := flow.SockResp{ID: req.ID}
	var (
		port flow.Port
		err  error
		prep chan *flowPrep
		kept []uint64 // the rings the program keeps, for a flow
	)
	if req.Op == flow.SockAlloc || req.Op == flow.SockJoin || req.Op == flow.SockAccept {
		if kept, err = s.keptList(req.Body); err != nil {
			resp.Err = flow.EncodeError(err)
			s.send(resp, -1)
			return
		}
	}
	if req.Op == flow.SockAlloc || req.Op == flow.SockJoin {
		// What the hand-over takes (socket pair, shared rings) is made
		// while the layer allocates the flow, not after.
		prep = make(chan *flowPrep, 1)
		shm := s.shm.Load()
		s.pd.Go(func() { prep <- s.prepareFlow(shm, kept) })
	}
	switch req.Op {
	case flow.SockAlloc:
		port, resp.Info, err = s.b.Alloc(ctx, req.Name, req.QoS)
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
		var m ipcp.MgmtReq
		if err = s.codec.Unmarshal(req.Body, &m); err == nil {
			var r ipcp.MgmtResp
			if r, err = s.b.Mgmt(ctx, m); err == nil {
				resp.Body, err = s.codec.Marshal(r)
			}
		}
	default:
		err = fmt.Errorf("gateway: operation %d: %w", req.Op, flow.ErrInvalid)
	}
	resp.Err = flow.EncodeError(err)
	var fp *flowPrep
	if prep != nil {
		fp = <-prep
	}
	if port == nil {
		fp.release()
		s.send(resp, -1)
		return
	}
	if fp == nil { // an accepted flow: made now
		// The IPCP's answer to the requesting peer was queued for its
		// shim as this Accept returned: it goes out first. On one
		// processor (a quiet node: images/internal/procs) the hand-over
		// below, 40-150 µs of socket pair, descriptors and splice, ran
		// ahead of the shim's send, on the allocation's path; the
		// program gets its flow a moment later instead, off that path.
		runtime.Gosched()
		fp = s.prepareFlow(s.shm.Load(), kept)
	}
	s.handOver(resp, port, fp)
}

// flowPrep is what handing a flow over to the program takes: the flow's
// socket pair and, for a program that speaks them, shared rings whose
// mapping is charged to the session's budget.
type flowPrep struct {
	s      *gwSession
	mine   *net.UnixConn // the node's end of the flow's socket
	theirs int           // the program's end, sent with the answer
	err    error         // no socket pair: the flow cannot be handed over
	e      *shmring.End  // nil: the flow goes over as a socket
	m      *shmring.Mapping
	charge int    // what e's mapping costs the session's budget
	id     uint64 // the rings' number, for a program that keeps them (0: none)
	reused bool   // rings the program kept: it has them mapped already
}

// prepareFlow makes a flow's socket pair and, with shm, its shared rings:
// rings the program kept from a flow before (one of kept, if the session
// still has it), else new ones (the first shape the session's budget has
// room for; none if it has room for none, or the system for no mapping:
// the flow then goes over as a socket).
func (s *gwSession) prepareFlow(shm bool, kept []uint64) *flowPrep {
	fp := &flowPrep{s: s, theirs: -1}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		fp.err = fmt.Errorf("gateway: socketpair: %w: %w", flow.ErrBusy, err)
		return fp
	}
	if fp.mine, err = fileConn(fds[0]); err != nil {
		syscall.Close(fds[1])
		fp.err = err
		return fp
	}
	fp.theirs = fds[1]
	if shm && !s.reuse(fp, kept, flow.MaxSDU) {
		s.makeShm(fp, flow.MaxSDU)
	}
	return fp
}

// makeShm gives fp shared rings for SDUs of at most maxSDU bytes: the
// first shape the session's budget has room for (none if it has room for
// none, or the system for no mapping: the flow then goes over as a
// socket).
func (s *gwSession) makeShm(fp *flowPrep, maxSDU int) {
	var shape shmShape
	for pass := range 2 {
		for _, sh := range shmShapes(maxSDU, s.pd.BufSize()) {
			if s.pd.Reserve(sh.charge) == nil {
				shape = sh
				break
			}
		}
		if shape.charge != 0 || pass == 1 || !s.rings.drop(s.pd) {
			break
		}
		// The kept rings held the budget: new rings come first.
	}
	if shape.charge == 0 {
		return
	}
	m, err := shmring.Create(shape.geo)
	if err != nil {
		s.pd.Unreserve(shape.charge)
		s.log.Warn("no shared rings, the flow goes over as a socket", "err", err)
		return
	}
	evs, err := shmring.NewEventfds()
	if err != nil {
		m.Close()
		s.pd.Unreserve(shape.charge)
		s.log.Warn("no shared rings, the flow goes over as a socket", "err", err)
		return
	}
	e, err := shmring.NewEnd(m, shmring.Node, evs) // takes m and evs
	if err != nil {
		s.pd.Unreserve(shape.charge)
		s.log.Warn("no shared rings, the flow goes over as a socket", "err", err)
		return
	}
	fp.e, fp.m, fp.charge, fp.reused = e, m, shape.charge, false
	if s.keep.Load() {
		fp.id = s.rings.next()
	}
}

// releaseShm undoes the shared rings of fp, if any: rings the program
// kept go back to the session's kept rings (the program still has them),
// new ones are freed.
func (fp *flowPrep) releaseShm() {
	if fp.e == nil {
		return
	}
	if fp.reused {
		fp.s.rings.put(fp.s.pd, fp.id, fp.e.Detach(), fp.charge)
	} else {
		fp.m.CloseFD()
		fp.e.Release()
		fp.s.pd.Unreserve(fp.charge)
	}
	fp.e = nil
}

// release undoes all of fp, for a flow that was not allocated. Nil-safe.
func (fp *flowPrep) release() {
	if fp == nil {
		return
	}
	fp.releaseShm()
	if fp.mine != nil {
		fp.mine.Close()
		syscall.Close(fp.theirs)
	}
}

// handOver sends resp with the flow on port to the program, over what fp
// prepared, and splices the flow to it; on failure the flow is closed.
func (s *gwSession) handOver(resp flow.SockResp, port flow.Port, fp *flowPrep) {
	if fp.err != nil {
		fp.releaseShm()
		port.Close()
		resp.Err = flow.EncodeError(fp.err)
		s.send(resp, -1)
		return
	}
	// Counted before the reply: a program that closes its session as
	// soon as it has the flow (flow.DialName does) must not find the
	// session's component gone, and its flow with it.
	s.flows.Add(1)
	kp, isBuf := port.(bufPort)
	if !isBuf { // every node's flow is (irm.RingPort); any other goes as a socket
		fp.releaseShm()
	}
	limit := resp.Info.SDULimit()
	if fp.e != nil && fp.e.MaxSDU() < limit {
		// Rings made ahead for SDUs of flow.MaxSDU, a flow of a layer
		// that carries larger ones: rings of its size, or a socket.
		fp.releaseShm()
		s.makeShm(fp, limit)
	}
	if fp.e == nil {
		if !s.send(resp, fp.theirs) { // closes theirs
			fp.mine.Close()
			port.Close()
			s.flows.Done()
			return
		}
		splice(s.pd, port, flow.NewSeqpacketPort(fp.mine), limit, s.flows.Done)
		return
	}
	fds := []int{fp.theirs}
	if !fp.reused {
		ev := fp.e.FDs()
		fds = append(fds, fp.m.FD(), ev[0], ev[1], ev[2], ev[3])
	}
	if fp.id != 0 {
		resp.Body, _ = s.codec.Marshal(fp.id)
	}
	ok := s.sendFDs(resp, fds)
	syscall.Close(fp.theirs)
	if fp.m != nil {
		fp.m.CloseFD()
	}
	if !ok {
		fp.mine.Close()
		fp.e.Release()
		port.Close()
		s.pd.Unreserve(fp.charge)
		s.flows.Done()
		return
	}
	id, charge, keep := fp.id, fp.charge, fp.id != 0
	shmSplice(s.pd, kp, fp.e, fp.mine, s.log, keep, func(e *shmring.End, programClosed bool) {
		if keep && programClosed && e.Stats().Corrupt == 0 {
			// The program closed the flow, keeping its rings: they carry
			// its next flow, charged to the session as now.
			s.rings.put(s.pd, id, e.Detach(), charge)
		} else {
			e.Release()
			s.pd.Unreserve(charge)
		}
		s.flows.Done()
	})
}

// shmShape is a shape of the rings a flow may get, and what its mapping
// costs the session's budget, in packet buffers.
type shmShape struct {
	geo    shmring.Geometry
	charge int
}

// newShmShape is rings of slots slots of maxSDU bytes, charged as the
// packet buffers of bufSize bytes their memory would make.
func newShmShape(slots, maxSDU, bufSize int) shmShape {
	g := shmring.Geometry{Slots: slots, MaxSDU: maxSDU}
	return shmShape{geo: g, charge: (g.Size() + bufSize - 1) / bufSize}
}

// shmDeepSlots is the slots per ring of a flow's first choice of rings:
// deep enough that the node fills one part of a ring while the program
// empties another (with 16, a flood ping-pongs: the node fills the ring,
// the program empties all of it, the node is woken to fill it again; 64
// halved the CPU per SDU of a receiving perf server and cut its node's by
// a third, docs/benchmarks.md).
const shmDeepSlots = 64

// shmShapes are the rings a flow gets for SDUs of at most maxSDU bytes
// in a node of packet buffers of bufSize bytes, the first whose charge
// the session's budget has room for: deep rings (64 slots; of 1,400-byte
// slots 180 KiB, 90 buffers), then shallow ones (16 slots, 48 KiB, 24
// buffers); with room for neither, the flow goes over as a socket. A
// default session (256 buffers) has two deep flows and three shallow
// ones.
//
// A flow of larger SDUs (a layer that carries them) gets fewer slots:
// rings of at most four times the bytes (at least 2 slots), so that two
// deep flows leave the session's budget room for the packet buffers in
// flight, as flows of flow.MaxSDU do.
func shmShapes(maxSDU, bufSize int) [2]shmShape {
	deep, shallow := shmDeepSlots, shmring.DefaultSlots
	if maxSDU > flow.MaxSDU {
		deep, shallow = scaledSlots(deep, maxSDU), scaledSlots(shallow, maxSDU)
	}
	return [2]shmShape{newShmShape(deep, maxSDU, bufSize), newShmShape(shallow, maxSDU, bufSize)}
}

// scaledSlots is how many slots of maxSDU bytes make at most four times
// the bytes of slots of flow.MaxSDU: a power of two (shmring's rule), at
// least 2, at most slots.
func scaledSlots(slots, maxSDU int) int {
	n := 2
	for n < slots && n*2*maxSDU <= 4*slots*flow.MaxSDU {
		n *= 2
	}
	return n
}

// shmBatch is how many SDUs the node's side of shared rings moves at
// once, each way: a whole deep ring, so that a run the program wrote in
// one WriteBatch reaches the flow's port in one push, and a run queued
// for the program costs it one wake-up. (It was a shallow ring's 16 while
// flows had 64 slots: a flood woke the program, and the node, once per
// 16 SDUs; TestShmSpliceRuns.)
const shmBatch = shmDeepSlots

// shmSplice copies SDUs both ways between a flow's kernel rings (ring)
// and its shared rings (e) until either side ends: this copy out of the
// program's memory is the trust boundary (shmring checks each index and
// length). sock is the flow's socket: the program closing its end (or
// dying) ends the flow once what it wrote is forwarded. Then ring and
// sock are closed and end called with e, which is end's to release, and
// whether the program closed its end of sock.
//
// With keep (a program that keeps its flows' rings), a flow that ends on
// the node's side (the layer deallocated it) marks the rings closed and
// waits for the program to close its end of sock too before it calls
// end, so that the rings are the program's no longer; the node ending
// (its component's context) closes sock at once.
func shmSplice(pd *kernel.PD, ring bufPort, e *shmring.End, sock *net.UnixConn, log *slog.Logger, keep bool, end func(e *shmring.End, programClosed bool)) {
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ring.Close()
			e.Shutdown()
			if !keep {
				sock.Close()
			}
		})
	}
	cancel := context.AfterFunc(pd.Context(), func() {
		stop()
		sock.Close()
	})
	var wg sync.WaitGroup
	var programClosed atomic.Bool
	wg.Add(3)
	pd.Go(func() { // the program's liveness: nothing is sent on sock
		defer wg.Done()
		var b [1]byte
		_, err := sock.Read(b[:])
		programClosed.Store(errors.Is(err, io.EOF))
		e.PeerGone()
	})
	pd.Go(func() { // program → flow
		defer wg.Done()
		defer stop()
		shmToBufs(ring, e, log)
	})
	pd.Go(func() { // flow → program
		defer wg.Done()
		defer stop()
		bufsToShm(ring, e)
	})
	pd.Go(func() {
		wg.Wait()
		cancel()
		sock.Close()
		if st := e.Stats(); st.Drops > 0 {
			log.Warn("a flow's program wrote SDUs of impossible lengths, dropped", "sdus", st.Drops)
		}
		end(e, programClosed.Load())
	})
}

// maxKeptRings bounds the rings a session keeps for its program's next
// flows (each still charged to the session's budget, which two deep
// flows' rings nearly fill); the program keeps at most flow.MaxKept.
const maxKeptRings = 2

// keptRings are the rings of a session's closed flows that its program
// said it keeps (flow.SockFeatureKeep), for its next flows: such a flow
// costs neither side a memfd, a mapping, eventfds or their registration
// in the poller, nor the hand-over of five descriptors. Each is charged
// to the session's budget while kept; the oldest go first.
type keptRings struct {
	mu     sync.Mutex
	last   uint64 // the last number given to rings
	closed bool   // the session ended: nothing is kept any more
	held   []keptSet
}

type keptSet struct {
	id     uint64
	k      *shmring.Kept
	charge int
}

// next numbers new rings.
func (r *keptRings) next() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	return r.last
}

// put keeps k (nil: nothing to keep), numbered id, whose charge stays
// reserved on pd; beyond maxKeptRings the oldest are freed.
func (r *keptRings) put(pd *kernel.PD, id uint64, k *shmring.Kept, charge int) {
	if k == nil {
		pd.Unreserve(charge)
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		k.Release()
		pd.Unreserve(charge)
		return
	}
	r.held = append(r.held, keptSet{id: id, k: k, charge: charge})
	var old []keptSet
	if n := len(r.held) - maxKeptRings; n > 0 {
		old = slices.Clone(r.held[:n])
		r.held = slices.Delete(r.held, 0, n)
	}
	r.mu.Unlock()
	free(pd, old)
}

// take removes and returns kept rings whose number is in ids and whose
// slots hold SDUs of maxSDU bytes.
func (r *keptRings) take(ids []uint64, maxSDU int) (keptSet, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ks := range r.held {
		if slices.Contains(ids, ks.id) && ks.k.Geometry().MaxSDU >= maxSDU {
			r.held = slices.Delete(r.held, i, i+1)
			return ks, true
		}
	}
	return keptSet{}, false
}

// drop frees every kept ring and reports whether there were any.
func (r *keptRings) drop(pd *kernel.PD) bool {
	r.mu.Lock()
	old := r.held
	r.held = nil
	r.mu.Unlock()
	free(pd, old)
	return len(old) > 0
}

// close frees every kept ring and keeps none from now on.
func (r *keptRings) close(pd *kernel.PD) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.drop(pd)
}

func free(pd *kernel.PD, sets []keptSet) {
	for _, ks := range sets {
		ks.k.Release()
		pd.Unreserve(ks.charge)
	}
}

// keptList decodes the numbers of the rings a program keeps, from the
// Body of its Alloc, Join or Accept (flow.SockFeatureKeep).
func (s *gwSession) keptList(body []byte) ([]uint64, error) {
	if len(body) == 0 || !s.keep.Load() {
		return nil, nil
	}
	var ids []uint64
	if err := s.codec.Unmarshal(body, &ids); err != nil {
		return nil, fmt.Errorf("gateway: the rings the program keeps: %w: %w", flow.ErrInvalid, err)
	}
	if len(ids) > flow.MaxKept {
		return nil, fmt.Errorf("gateway: the program lists %d kept rings (at most %d): %w", len(ids), flow.MaxKept, flow.ErrInvalid)
	}
	return ids, nil
}

// reuse gives fp rings the program kept (one of kept, for SDUs of maxSDU
// bytes), emptied for the new flow, and reports whether it did.
func (s *gwSession) reuse(fp *flowPrep, kept []uint64, maxSDU int) bool {
	if len(kept) == 0 || !s.keep.Load() {
		return false
	}
	ks, ok := s.rings.take(kept, maxSDU)
	if !ok {
		return false
	}
	fp.e, fp.m, fp.id, fp.charge, fp.reused = ks.k.Renew(), nil, ks.id, ks.charge, true
	return true
}

// bufPort is a flow's port that hands kernel buffers over
// (irm.RingPort): with it the splice copies an SDU once each way, between
// the program's slots and a kernel buffer, instead of through a buffer of
// its own (docs/flow.md, "Copies").
type bufPort interface {
	flow.Port
	AllocBufs(bufs []*kernel.Buf) (int, error)
	FreeBufs(bufs []*kernel.Buf)
	PushBufs(bufs []*kernel.Buf, deadline time.Time) (int, error)
	PopBufs(bufs []*kernel.Buf, deadline time.Time) (int, error)
}

// past is a deadline already passed: a RecvBatch that must not wait.
var past = time.Unix(1, 0)

// shmToBufs moves what the program writes into its shared ring to the
// flow, copying each SDU straight out of its slot into a kernel buffer:
// the one copy the trust boundary needs (shmring checks the index and
// the length, then copies; the node uses only its copy). It takes only as
// many buffers as SDUs wait; with none left in the session's budget it
// drops one SDU, as a port that answers flow.ErrBusy does. It returns
// when either side ends.
func shmToBufs(kp bufPort, e *shmring.End, log *slog.Logger) {
	kb := make([]*kernel.Buf, shmBatch)
	wins, sizes := make([][]byte, shmBatch), make([]int, shmBatch)
	scratch := [][]byte{make([]byte, e.MaxSDU())}
	for {
		n, err := e.Ready(time.Time{})
		if n == 0 {
			if errors.Is(err, shmring.ErrCorrupt) {
				log.Warn("shared rings corrupt, flow closed", "err", err, "stats", fmt.Sprintf("%+v", e.Stats()))
			}
			return
		}
		m, _ := kp.AllocBufs(kb[:min(n, shmBatch)])
		if m == 0 {
			if _, err := e.RecvBatch(scratch, sizes[:1], past); errors.Is(err, shmring.ErrCorrupt) || errors.Is(err, shmring.ErrClosed) {
				return
			}
			continue
		}
		for i, b := range kb[:m] {
			b.Reset()
			wins[i] = b.Extend(min(e.MaxSDU(), b.TailSpace()))
		}
		k, err := e.RecvBatch(wins[:m], sizes[:m], past)
		clear(wins[:m])
		for i, b := range kb[:k] {
			b.Truncate(sizes[i])
		}
		kp.FreeBufs(kb[k:m]) // SDUs of impossible lengths, dropped (counted by e)
		if k == 0 && (errors.Is(err, shmring.ErrCorrupt) || errors.Is(err, shmring.ErrClosed)) {
			return
		}
		for done := 0; done < k; {
			c, err := kp.PushBufs(kb[done:k], time.Time{})
			done += c
			if c > 0 {
				continue
			}
			if errors.Is(err, flow.ErrBusy) { // the SDU is dropped, the flow kept
				kp.FreeBufs(kb[done : done+1])
				done++
				continue
			}
			kp.FreeBufs(kb[done:k])
			return
		}
	}
}

// bufsToShm moves what arrives on the flow into the program's shared
// ring, copying each SDU straight out of its kernel buffer into a slot.
// It pops only as many buffers as the ring has free slots, so it never
// holds the session's buffers while it waits for a slow program. An SDU
// longer than a slot (none should be: the flow's SDUs are at most
// flow.MaxSDU) is dropped. Each slot carries its buffer's mark (what a
// delivering unicast layer said of the packet's congestion), for a
// program that asks (an IP bridge). It returns when either side ends.
func bufsToShm(kp bufPort, e *shmring.End) {
	kb := make([]*kernel.Buf, shmBatch)
	views := make([][]byte, shmBatch)
	marks := make([]uint8, shmBatch)
	for {
		room, _ := e.Room(time.Time{})
		if room == 0 {
			return
		}
		n, _ := kp.PopBufs(kb[:min(room, shmBatch)], time.Time{})
		if n == 0 {
			return
		}
		for i, b := range kb[:n] {
			views[i], marks[i] = b.Bytes(), b.Mark()
		}
		sent := 0
		for sent < n {
			k, err := e.SendMarked(views[sent:n], marks[sent:n], time.Time{})
			sent += k
			if err == nil {
				break
			}
			if !errors.Is(err, shmring.ErrTooBig) {
				clear(views[:n])
				kp.FreeBufs(kb[:n])
				return
			}
			sent++ // too big for a slot: dropped
		}
		clear(views[:n])
		kp.FreeBufs(kb[:n])
	}
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
	if fd < 0 {
		return s.sendFDs(resp, nil)
	}
	defer syscall.Close(fd)
	return s.sendFDs(resp, []int{fd})
}

// sendFDs writes resp with fds (the caller's still) as SCM_RIGHTS.
func (s *gwSession) sendFDs(resp flow.SockResp, fds []int) bool {
	b, err := s.codec.Marshal(resp)
	if err != nil {
		s.log.Error("encode response failed", "err", err)
		b, _ = s.codec.Marshal(flow.SockResp{ID: resp.ID, Err: flow.EncodeError(err)})
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, _, err = s.conn.WriteMsgUnix(b, oob, nil)
	return err == nil
}

// forward writes sdus to dst in order, in runs where dst is a BatchPort;
// an SDU dst refuses as too big or busy is dropped (counted by the port's
// owner) and the flow kept. It reports false once dst ended.
func forward(dst flow.Port, sdus [][]byte) bool {
	bp, _ := dst.(flow.BatchPort)
	for len(sdus) > 0 {
		k := 0
		var err error
		if bp != nil {
			k, err = bp.WriteBatch(sdus, time.Time{})
		} else if err = dst.Write(sdus[0], time.Time{}); err == nil {
			k = 1
		}
		sdus = sdus[k:]
		if err != nil {
			if len(sdus) > 0 && (errors.Is(err, flow.ErrTooBig) || errors.Is(err, flow.ErrBusy)) {
				sdus = sdus[1:]
				continue
			}
			return false
		}
	}
	return true
}

// splice copies SDUs both ways between a flow's ring port and the
// program's socket until either side ends, then closes both and calls
// done: runs of up to shmBatch out of the ring where it is a BatchPort
// (one ring operation a run), one SDU a message on the socket. The
// flow's socket is closed when pd's incarnation ends.
func splice(pd *kernel.PD, ring flow.Port, sock flow.Port, limit int, done func()) {
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
		bsrc, _ := src.(flow.BatchPort)
		k := 1
		if bsrc != nil {
			k = shmBatch
		}
		// limit+1: a longer message from the program is cut to one byte
		// over, which the ring refuses as too big.
		bufs, views, sizes := make([][]byte, k), make([][]byte, k), make([]int, k)
		for i := range bufs {
			bufs[i] = make([]byte, limit+1)
		}
		for {
			var (
				n   int
				err error
			)
			if bsrc != nil {
				n, err = bsrc.ReadBatch(bufs, sizes, time.Time{})
			} else if sizes[0], err = src.Read(bufs[0], time.Time{}); err == nil || errors.Is(err, flow.ErrTruncated) {
				n = 1
			}
			if n == 0 {
				return
			}
			for i := range n {
				views[i] = bufs[i][:sizes[i]]
			}
			if !forward(dst, views[:n]) {
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
