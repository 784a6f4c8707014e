package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fxamacker/cbor/v2"
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
}

type sockResult struct {
	resp SockResp
	fd   int // -1 if none came
}

var _ Broker = (*SocketBroker)(nil)

// Dial opens a session with the node listening on the Unix socket at path.
func Dial(path string) (*SocketBroker, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("flow: dial node at %s: %w", path, err)
	}
	b := &SocketBroker{conn: c, codec: NewCodec(), pending: make(map[uint64]chan sockResult), done: make(chan struct{})}
	go b.readLoop()
	return b, nil
}

func (b *SocketBroker) readLoop() {
	defer close(b.done)
	buf := make([]byte, MaxControlMsg)
	oob := make([]byte, syscall.CmsgSpace(4))
	for {
		n, oobn, _, _, err := b.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("flow: node closed the session: %w", ErrClosed)
			}
			b.fail(err)
			return
		}
		fd := -1
		if oobn > 0 {
			if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					if fds, err := syscall.ParseUnixRights(&m); err == nil {
						for _, f := range fds {
							if fd < 0 {
								fd = f
							} else {
								syscall.Close(f) // more than one: not ours to keep
							}
						}
					}
				}
			}
		}
		var resp SockResp
		if err := b.codec.Unmarshal(buf[:n], &resp); err != nil {
			if fd >= 0 {
				syscall.Close(fd)
			}
			b.fail(fmt.Errorf("flow: bad message from node: %w", err))
			return
		}
		b.mu.Lock()
		ch := b.pending[resp.ID]
		delete(b.pending, resp.ID)
		b.mu.Unlock()
		if ch == nil {
			if fd >= 0 {
				syscall.Close(fd) // an answer nobody waits for (cancelled)
			}
			continue
		}
		ch <- sockResult{resp: resp, fd: fd}
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

// call sends req and waits for its response (and the fd it carries).
func (b *SocketBroker) call(ctx context.Context, req SockReq) (SockResp, int, error) {
	ch := make(chan sockResult, 1)
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return SockResp{}, -1, err
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
		return SockResp{}, -1, fmt.Errorf("flow: send request: %w", err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			b.mu.Lock()
			err := b.err
			b.mu.Unlock()
			return SockResp{}, -1, err
		}
		if err := r.resp.Err.Err(); err != nil {
			if r.fd >= 0 {
				syscall.Close(r.fd)
			}
			return r.resp, -1, err
		}
		return r.resp, r.fd, nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, req.ID)
		b.mu.Unlock()
		// A late answer is dropped by readLoop (its fd closed, which
		// deallocates a flow that was allocated after all).
		return SockResp{}, -1, ctxErr(ctx.Err())
	}
}

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("flow: %w", ErrTimeout)
	}
	return fmt.Errorf("flow: %w", err)
}

func (b *SocketBroker) flowCall(ctx context.Context, req SockReq) (Port, Info, error) {
	resp, fd, err := b.call(ctx, req)
	if err != nil {
		return nil, Info{}, err
	}
	if fd < 0 {
		return nil, Info{}, fmt.Errorf("flow: node answered without a flow: %w", ErrInvalid)
	}
	p, err := newSeqpacketPort(fd)
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
// names); flows stay open.
func (b *SocketBroker) Close() error {
	err := b.conn.Close()
	<-b.done
	return err
}

// SeqpacketPort is a Port over one end of a SOCK_SEQPACKET socket pair:
// each message is one SDU. The node gateway and socket clients use it.
type SeqpacketPort struct {
	c *net.UnixConn
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
	if len(b) > MaxSDU {
		return fmt.Errorf("flow: write of %d bytes (max %d): %w", len(b), MaxSDU, ErrTooBig)
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
