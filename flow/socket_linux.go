package flow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/flow/shmring"
)

// DefaultSocket is where a hosted node run by root listens unless
// configured otherwise (see SocketCandidates for other users).
const DefaultSocket = "/run/ouro/node.sock"

// SocketCandidates returns where a hosted node listens by default, in
// order of preference: $XDG_RUNTIME_DIR/ouro/node.sock (the user's
// runtime directory, when set), DefaultSocket, and a directory of the
// user's own under the temporary directory, /tmp/ouro-<uid>/node.sock.
// A node takes the first it can use; a program looks for a node at each.
func SocketCandidates() []string {
	var c []string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		c = append(c, filepath.Join(d, "ouro", "node.sock"))
	}
	c = append(c, DefaultSocket)
	return append(c, filepath.Join(os.TempDir(), fmt.Sprintf("ouro-%d", os.Geteuid()), "node.sock"))
}

// SocketPath returns the node socket a program uses by default:
// $OURO_SOCKET if set, else the first of SocketCandidates where a socket
// exists, else the first candidate.
func SocketPath() string {
	if p := os.Getenv("OURO_SOCKET"); p != "" {
		return p
	}
	c := SocketCandidates()
	for _, p := range c {
		if st, err := os.Stat(p); err == nil && st.Mode()&os.ModeSocket != 0 {
			return p
		}
	}
	return c[0]
}

// SocketBroker is a Broker for a program outside the node: it talks to a
// hosted node over its Unix socket. Safe for concurrent use.
type SocketBroker struct {
	conn  *net.UnixConn
	codec Codec

	wmu sync.Mutex // serialises writes on conn

	mu      sync.Mutex // guards nextID, pending, err
	nextID  uint64
	pending map[uint64]chan sockResult
	err     error // set once the connection failed; pending calls get it

	done chan struct{}

	keeps bool // the program keeps its flows' rings (SockFeatureKeep)
	kmu   sync.Mutex
	kept  []keptRings // the rings of closed flows, oldest first
	ended bool        // the session is closed: nothing is kept any more
}

// keptRings are the rings of a closed flow the program keeps for its next
// flows, and their number (the node's).
type keptRings struct {
	id uint64
	k  *shmring.Kept
}

type sockResult struct {
	resp SockResp
	fds  []int // the descriptors that came with it (SCM_RIGHTS), if any
}

// maxFlowFDs is the most descriptors a response carries: a flow's socket,
// and with shared rings its memfd and four eventfds.
const maxFlowFDs = 6

func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

var _ Broker = (*SocketBroker)(nil)

// Dial opens a session with the node listening on the Unix socket at path.
func Dial(path string) (*SocketBroker, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("flow: dial node at %s: %w", path, err)
	}
	b := &SocketBroker{conn: c, codec: NewCodec(), pending: make(map[uint64]chan sockResult), done: make(chan struct{})}
	// Announce shared rings. Nobody waits for the answer (ID 0 is never
	// a call's): a node that grants them hands flows over with a memfd,
	// one that predates SockHello answers ErrInvalid and hands sockets.
	if shmDisabled() {
		go b.readLoop()
		return b, nil
	}
	features := SockFeatureShm
	if b.keeps = os.Getenv("OURO_SHM_KEEP") != "0"; b.keeps {
		features |= SockFeatureKeep
	}
	hello, err := b.codec.Marshal(SockReq{Op: SockHello, Body: mustCBOR(b.codec, features)})
	if err == nil {
		_, err = c.Write(hello)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("flow: hello to node at %s: %w", path, err)
	}
	go b.readLoop()
	return b, nil
}

// shmDisabled reports whether $OURO_SHM is "0": the program then asks
// for sockets only (for comparisons, and for a node whose shared rings
// misbehave). $OURO_SHM_KEEP=0 keeps shared rings but not between flows:
// every flow gets new ones.
func shmDisabled() bool { return os.Getenv("OURO_SHM") == "0" }

func mustCBOR(c Codec, v any) cbor.RawMessage {
	b, err := c.Marshal(v)
	if err != nil {
		panic(err) // a uint always encodes
	}
	return b
}

func (b *SocketBroker) readLoop() {
	defer close(b.done)
	buf := make([]byte, MaxControlMsg)
	oob := make([]byte, syscall.CmsgSpace(4*maxFlowFDs))
	for {
		n, oobn, _, _, err := b.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("flow: node closed the session: %w", ErrClosed)
			}
			b.fail(err)
			return
		}
		var fds []int
		if oobn > 0 {
			if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if got, err := syscall.ParseUnixRights(&m); err == nil {
						fds = append(fds, got...)
					}
				}
			}
		}
		if len(fds) > maxFlowFDs {
			closeFDs(fds[maxFlowFDs:]) // more than a flow takes: not ours to keep
			fds = fds[:maxFlowFDs]
		}
		var resp SockResp
		if err := b.codec.Unmarshal(buf[:n], &resp); err != nil {
			closeFDs(fds)
			b.fail(fmt.Errorf("flow: bad message from node: %w", err))
			return
		}
		b.mu.Lock()
		ch := b.pending[resp.ID]
		delete(b.pending, resp.ID)
		b.mu.Unlock()
		if ch == nil {
			closeFDs(fds) // an answer nobody waits for (cancelled, or the hello)
			continue
		}
		ch <- sockResult{resp: resp, fds: fds}
	}
}

func (b *SocketBroker) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	for id, ch := range b.pending {
		close(ch)
		delete(b.pending, id)
	}
}

// call sends req and waits for its response (and the descriptors it
// carries: the caller's to close).
func (b *SocketBroker) call(ctx context.Context, req SockReq) (SockResp, []int, error) {
	ch := make(chan sockResult, 1)
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return SockResp{}, nil, err
	}
	b.nextID++
	req.ID = b.nextID
	b.pending[req.ID] = ch
	b.mu.Unlock()

	msg, err := b.codec.Marshal(req)
	if err == nil {
		b.wmu.Lock()
		_, err = b.conn.Write(msg)
		b.wmu.Unlock()
	}
	if err != nil {
		b.mu.Lock()
		delete(b.pending, req.ID)
		b.mu.Unlock()
		return SockResp{}, nil, fmt.Errorf("flow: send request: %w", err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			b.mu.Lock()
			err := b.err
			b.mu.Unlock()
			return SockResp{}, nil, err
		}
		if err := r.resp.Err.Err(); err != nil {
			closeFDs(r.fds)
			return r.resp, nil, err
		}
		return r.resp, r.fds, nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, req.ID)
		b.mu.Unlock()
		// A late answer is dropped by readLoop (its fd closed, which
		// deallocates a flow that was allocated after all).
		return SockResp{}, nil, ctxErr(ctx.Err())
	}
}

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("flow: %w", ErrTimeout)
	}
	return fmt.Errorf("flow: %w", err)
}

func (b *SocketBroker) flowCall(ctx context.Context, req SockReq) (Port, Info, error) {
	// The rings this program keeps go with the request, each to this
	// request only (another in progress lists others); those the node
	// does not use come back.
	claimed := b.claimKept()
	defer func() { b.unclaim(claimed) }()
	if len(claimed) > 0 {
		ids := make([]uint64, len(claimed))
		for i, kr := range claimed {
			ids[i] = kr.id
		}
		req.Body = mustCBOR(b.codec, ids)
	}
	resp, fds, err := b.call(ctx, req)
	if err != nil {
		return nil, Info{}, err
	}
	var id uint64 // the flow's rings' number: the node keeps them for this program
	if len(resp.Body) > 0 {
		if err := b.codec.Unmarshal(resp.Body, &id); err != nil {
			closeFDs(fds)
			return nil, Info{}, fmt.Errorf("flow: the node's answer names its rings badly: %w: %w", ErrInvalid, err)
		}
	}
	var p Port
	switch len(fds) {
	case 0:
		return nil, Info{}, fmt.Errorf("flow: node answered without a flow: %w", ErrInvalid)
	case 1:
		if id != 0 { // rings this program kept
			i := slices.IndexFunc(claimed, func(kr keptRings) bool { return kr.id == id })
			if i < 0 {
				closeFDs(fds)
				return nil, Info{}, fmt.Errorf("flow: the node answered with rings %d, which this program does not keep: %w", id, ErrInvalid)
			}
			k := claimed[i].k
			claimed = slices.Delete(claimed, i, i+1)
			p, err = adoptShmPort(fds[0], k.Renew(), id, b)
			break
		}
		var sp *SeqpacketPort
		if sp, err = newSeqpacketPort(fds[0]); err == nil {
			sp.max = resp.Info.SDULimit()
			p = sp
		}
	case maxFlowFDs:
		var sp *ShmPort
		if sp, err = newShmPort(fds); err == nil && id != 0 && b.keeps {
			sp.id, sp.keeper = id, b
		}
		p = sp
	default:
		closeFDs(fds)
		return nil, Info{}, fmt.Errorf("flow: node answered with %d descriptors (a flow is 1 or %d): %w", len(fds), maxFlowFDs, ErrInvalid)
	}
	if err != nil {
		return nil, Info{}, err
	}
	return p, resp.Info, nil
}

// Alloc implements Broker.
func (b *SocketBroker) Alloc(ctx context.Context, name string, q QoS) (Port, Info, error) {
	return b.flowCall(ctx, SockReq{Op: SockAlloc, Name: name, QoS: q})
}

// Join implements Broker.
func (b *SocketBroker) Join(ctx context.Context, layer string) (Port, Info, error) {
	return b.flowCall(ctx, SockReq{Op: SockJoin, Layer: layer})
}

// Accept implements Broker.
func (b *SocketBroker) Accept(ctx context.Context) (Port, Info, error) {
	return b.flowCall(ctx, SockReq{Op: SockAccept})
}

// Bind implements Broker.
func (b *SocketBroker) Bind(ctx context.Context, name string) error {
	_, _, err := b.call(ctx, SockReq{Op: SockBind, Name: name})
	return err
}

// BindPeers implements PeerBinder: the peers travel in the request's
// body.
func (b *SocketBroker) BindPeers(ctx context.Context, name string, peers []string) error {
	body, err := b.codec.Marshal(peers)
	if err != nil {
		return fmt.Errorf("flow: bind %q: %w", name, err)
	}
	_, _, err = b.call(ctx, SockReq{Op: SockBind, Name: name, Body: body})
	return err
}

// Unbind implements Broker.
func (b *SocketBroker) Unbind(ctx context.Context, name string) error {
	_, _, err := b.call(ctx, SockReq{Op: SockUnbind, Name: name})
	return err
}

// Mgmt sends a management request (CBOR-encoded req) and decodes the
// result into resp. The request and result types are the IRM's.
func (b *SocketBroker) Mgmt(ctx context.Context, req, resp any) error {
	body, err := b.codec.Marshal(req)
	if err != nil {
		return fmt.Errorf("flow: encode management request: %w", err)
	}
	r, _, err := b.call(ctx, SockReq{Op: SockMgmt, Body: cbor.RawMessage(body)})
	if err != nil {
		return err
	}
	if resp != nil {
		return b.codec.Unmarshal(r.Body, resp)
	}
	return nil
}

// Close implements Broker: it ends the session (the node unbinds its
// names); flows stay open. The rings kept for the session's next flows
// are freed.
func (b *SocketBroker) Close() error {
	err := b.conn.Close()
	<-b.done
	b.kmu.Lock()
	b.ended = true
	old := b.kept
	b.kept = nil
	b.kmu.Unlock()
	for _, kr := range old {
		kr.k.Release()
	}
	return err
}

// claimKept takes every kept ring for one request.
func (b *SocketBroker) claimKept() []keptRings {
	b.kmu.Lock()
	defer b.kmu.Unlock()
	c := b.kept
	b.kept = nil
	return c
}

// unclaim gives back the kept rings a request did not use.
func (b *SocketBroker) unclaim(c []keptRings) {
	for _, kr := range c {
		b.keep(kr.id, kr.k)
	}
}

// keep keeps the rings k, numbered id, for the session's next flows: at
// most MaxKept, the oldest freed first; none once the session ended.
func (b *SocketBroker) keep(id uint64, k *shmring.Kept) {
	b.kmu.Lock()
	if b.ended {
		b.kmu.Unlock()
		k.Release()
		return
	}
	b.kept = append(b.kept, keptRings{id: id, k: k})
	var old []keptRings
	if n := len(b.kept) - MaxKept; n > 0 {
		old = slices.Clone(b.kept[:n])
		b.kept = slices.Delete(b.kept, 0, n)
	}
	b.kmu.Unlock()
	for _, kr := range old {
		kr.k.Release()
	}
}

// SeqpacketPort is a Port over one end of a SOCK_SEQPACKET socket pair:
// each message is one SDU. The node gateway and socket clients use it.
type SeqpacketPort struct {
	c   *net.UnixConn
	max int // the longest SDU Write takes: the flow's limit (0: MaxSDU)
}

var _ Port = (*SeqpacketPort)(nil)

func newSeqpacketPort(fd int) (*SeqpacketPort, error) {
	f := os.NewFile(uintptr(fd), "ouro-flow")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("flow: adopt flow socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("flow: flow socket is %T: %w", c, ErrInvalid)
	}
	return &SeqpacketPort{c: uc}, nil
}

// NewSeqpacketPort wraps an already connected SOCK_SEQPACKET socket.
func NewSeqpacketPort(c *net.UnixConn) *SeqpacketPort { return &SeqpacketPort{c: c} }

func sockErr(op string, err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("flow: %s: %w", op, ErrTimeout)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("flow: %s: %w", op, ErrClosed)
	}
	return fmt.Errorf("flow: %s: %w", op, err)
}

// Read implements Port. A zero-length message is end of flow.
func (p *SeqpacketPort) Read(b []byte, deadline time.Time) (int, error) {
	if err := p.c.SetReadDeadline(deadline); err != nil {
		return 0, sockErr("read", err)
	}
	// MSG_TRUNC would tell the real size; a buffer of MaxSDU+1 bytes
	// tells whether it was longer than the caller's without syscalls.
	n, _, flags, _, err := p.c.ReadMsgUnix(b, nil)
	if err != nil {
		return 0, sockErr("read", err)
	}
	if n == 0 && flags&syscall.MSG_TRUNC == 0 {
		return 0, fmt.Errorf("flow: read: %w", ErrClosed)
	}
	if flags&syscall.MSG_TRUNC != 0 {
		return n, fmt.Errorf("flow: read into %d bytes: %w", len(b), ErrTruncated)
	}
	return n, nil
}

// Write implements Port.
func (p *SeqpacketPort) Write(b []byte, deadline time.Time) error {
	if max := cmp.Or(p.max, MaxSDU); len(b) > max {
		return fmt.Errorf("flow: write of %d bytes (max %d): %w", len(b), max, ErrTooBig)
	}
	if len(b) == 0 {
		return nil // a zero-length message would read as end of flow
	}
	if err := p.c.SetWriteDeadline(deadline); err != nil {
		return sockErr("write", err)
	}
	if _, err := p.c.Write(b); err != nil {
		return sockErr("write", err)
	}
	return nil
}

// Close implements Port.
func (p *SeqpacketPort) Close() error {
	if err := p.c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// ShmPort is a program's Port over a flow's shared-memory rings
// (flow/shmring): SDUs go through the mapping the node handed over, and
// the flow's socket only tells that the node closed the flow or is gone
// (closing the port closes it, which deallocates the flow).
type ShmPort struct {
	e    *shmring.End
	c    *net.UnixConn
	once sync.Once
	gone chan struct{} // closed when the socket watcher returned

	id       uint64        // the rings' number, when the session keeps them
	keeper   *SocketBroker // nil: the rings are freed at Close
	reused   bool          // the rings came from a flow before
	nodeGone atomic.Bool   // the node closed the flow's socket
}

// Reused reports whether the flow goes over rings the session kept from
// one of its flows before (SockFeatureKeep): its allocation mapped
// nothing new.
func (p *ShmPort) Reused() bool { return p.reused }

var (
	_ Port         = (*ShmPort)(nil)
	_ BatchPort    = (*ShmPort)(nil)
	_ InPlacePort  = (*ShmPort)(nil)
	_ directReader = (*ShmPort)(nil)
)

// newShmPort adopts fds: the flow's socket, the memfd and four eventfds.
func newShmPort(fds []int) (*ShmPort, error) {
	c, err := newSeqpacketPort(fds[0])
	if err != nil {
		closeFDs(fds[1:])
		return nil, err
	}
	m, err := shmring.Open(fds[1])
	if err != nil {
		c.Close()
		closeFDs(fds[2:])
		return nil, fmt.Errorf("flow: the node's flow mapping: %w: %w", ErrInvalid, err)
	}
	e, err := shmring.NewEnd(m, shmring.Program, [4]int(fds[2:6]))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("flow: the node's flow mapping: %w: %w", ErrInvalid, err)
	}
	return shmPortOver(c.c, e), nil
}

// adoptShmPort adopts fd, the flow's socket, for a flow over rings the
// session kept (e, renewed), numbered id.
func adoptShmPort(fd int, e *shmring.End, id uint64, keeper *SocketBroker) (*ShmPort, error) {
	c, err := newSeqpacketPort(fd)
	if err != nil {
		if k := e.Detach(); k != nil {
			keeper.keep(id, k) // the node got no flow's socket back: unused
		}
		return nil, err
	}
	p := shmPortOver(c.c, e)
	p.id, p.keeper, p.reused = id, keeper, true
	return p, nil
}

func shmPortOver(c *net.UnixConn, e *shmring.End) *ShmPort {
	p := &ShmPort{e: e, c: c, gone: make(chan struct{})}
	go p.watch()
	return p
}

// watch waits on the flow's socket: nothing is sent on it, so any return
// means the node closed its end (or died), or Close closed it.
func (p *ShmPort) watch() {
	defer close(p.gone)
	var b [1]byte
	p.c.Read(b[:])
	p.nodeGone.Store(true)
	p.e.PeerGone()
}

func shmErr(op string, err error) error {
	switch {
	case errors.Is(err, shmring.ErrInterrupted):
		return errInterrupted
	case errors.Is(err, shmring.ErrClosed):
		return fmt.Errorf("flow: %s: %w", op, ErrClosed)
	case errors.Is(err, shmring.ErrTimeout):
		return fmt.Errorf("flow: %s: %w", op, ErrTimeout)
	case errors.Is(err, shmring.ErrTooBig):
		return fmt.Errorf("flow: %s: %w", op, ErrTooBig)
	case errors.Is(err, shmring.ErrTruncated):
		return fmt.Errorf("flow: %s: %w", op, ErrTruncated)
	}
	return fmt.Errorf("flow: %s: %w: %w", op, ErrInvalid, err)
}

// Read implements Port.
func (p *ShmPort) Read(b []byte, deadline time.Time) (int, error) {
	n, err := p.e.Recv(b, deadline)
	if err != nil {
		return n, shmErr("read", err)
	}
	return n, nil
}

// Write implements Port.
func (p *ShmPort) Write(b []byte, deadline time.Time) error {
	if max := p.e.MaxSDU(); len(b) > max {
		return fmt.Errorf("flow: write of %d bytes (max %d): %w", len(b), max, ErrTooBig)
	}
	if err := p.e.Send(b, deadline); err != nil {
		return shmErr("write", err)
	}
	return nil
}

// WriteWith implements InPlacePort: the SDU is written into the shared
// ring's slot by fill.
func (p *ShmPort) WriteWith(n int, fill func(sdu []byte), deadline time.Time) error {
	if max := p.e.MaxSDU(); n > max || n <= 0 {
		return fmt.Errorf("flow: write of %d bytes (1 to %d): %w", n, max, ErrTooBig)
	}
	if err := p.e.SendWith(n, fill, deadline); err != nil {
		return shmErr("write", err)
	}
	return nil
}

// ReadWith implements InPlacePort: use gets the SDU in the shared ring's
// slot.
func (p *ShmPort) ReadWith(use func(sdu []byte), deadline time.Time) error {
	if err := p.e.RecvWith(use, deadline); err != nil {
		return shmErr("read", err)
	}
	return nil
}

// ReadBatch implements BatchPort.
func (p *ShmPort) ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error) {
	n, err := p.e.RecvBatch(bufs, sizes, deadline)
	if err != nil {
		return n, shmErr("read", err)
	}
	return n, nil
}

// ReadMarked is ReadBatch that also gives each SDU's mark (what the node
// said of the packet's congestion: the level a delivering unicast layer
// saw, 0 if none) in marks[i]; it reads at most len(marks) SDUs.
func (p *ShmPort) ReadMarked(bufs [][]byte, sizes []int, marks []uint8, deadline time.Time) (int, error) {
	n, err := p.e.RecvMarked(bufs, sizes, marks, deadline)
	if err != nil {
		return n, shmErr("read", err)
	}
	return n, nil
}

// interruptRead wakes the read in progress (directReader).
func (p *ShmPort) interruptRead() { p.e.InterruptRecv() }

// WriteBatch implements BatchPort.
func (p *ShmPort) WriteBatch(sdus [][]byte, deadline time.Time) (int, error) {
	n, err := p.e.SendBatch(sdus, deadline)
	if err != nil {
		if n < len(sdus) && len(sdus[n]) > p.e.MaxSDU() {
			return n, fmt.Errorf("flow: write of %d bytes (max %d): %w", len(sdus[n]), p.e.MaxSDU(), ErrTooBig)
		}
		return n, shmErr("write", err)
	}
	return n, nil
}

// Close implements Port: the rings are marked closed, the socket closes
// (the node deallocates the flow) and the mapping is released once the
// calls in progress returned; or, where the session keeps its flows'
// rings (SockFeatureKeep) and the node has not closed the flow's socket,
// kept for the session's next flow: before the socket closes, since the
// node may offer them as soon as it sees that.
func (p *ShmPort) Close() error {
	p.once.Do(func() {
		if p.keeper != nil && !p.nodeGone.Load() {
			if k := p.e.Detach(); k != nil {
				p.keeper.keep(p.id, k)
			}
		}
		p.e.Shutdown()
		p.c.Close()
		<-p.gone
		p.e.Release()
	})
	return nil
}

// Listen binds name on the hosted node at SocketPath() and returns a
// listener of byte-stream connections over reliable flows (see Stream),
// so net/http and other Go network code serve over flows unchanged.
// Closing the listener unbinds name and ends the session.
func Listen(name string) (net.Listener, error) {
	b, err := Dial(SocketPath())
	if err != nil {
		return nil, err
	}
	c := NewClient(b)
	l, err := c.Listen(name)
	if err != nil {
		c.Close()
		b.Close()
		return nil, err
	}
	return &sessionListener{Listener: l, c: c, b: b}, nil
}

// sessionListener ends its session with the node when closed.
type sessionListener struct {
	net.Listener
	c *Client
	b *SocketBroker
}

func (l *sessionListener) Close() error {
	err := l.Listener.Close()
	l.c.Close()
	l.b.Close()
	return err
}

// DialName allocates a reliable flow to name through the hosted node at
// SocketPath() and returns it as a byte-stream net.Conn (see Stream).
func DialName(ctx context.Context, name string) (net.Conn, error) {
	b, err := Dial(SocketPath())
	if err != nil {
		return nil, err
	}
	// The flow outlives the session: it is a socket of its own.
	defer b.Close()
	c := NewClient(b)
	defer c.Close()
	return c.Dial(ctx, name)
}
