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

// Gateway returns the hosted socket gateway as an Extra component: it
// listens on the node's Unix socket and gives each connected program a
// session with the IRM. Every flow it hands over is a SOCK_SEQPACKET
// socket pair spliced to the flow's rings (docs/wire/node-socket.md).
func Gateway(path string, logf func(string, ...any)) Extra {
	var l *net.UnixListener
	prepare := func() error {
		if err := claimSocket(path); err != nil { // socketpath_linux.go
			return err
		}
		var err error
		l, err = net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if err := os.Chmod(path, 0o660); err != nil {
			l.Close()
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	}
	return Extra{Name: gatewayName, Bufs: 16384, Prepare: prepare, Program: func(pd *kernel.PD) error {
		irmEP, err := pd.Slot(slotIRM)
		if err != nil {
			return err
		}
		if l == nil {
			return fmt.Errorf("gateway: not prepared: %w", flow.ErrInvalid)
		}
		g := &gateway{pd: pd, irmEP: irmEP, logf: logf, conns: make(map[*net.UnixConn]bool)}
		pd.Go(func() {
			<-pd.Context().Done()
			l.Close()
			g.closeAll()
		})
		var sid uint64
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				if pd.Context().Err() != nil {
					os.Remove(path)
					return nil
				}
				return fmt.Errorf("gateway: accept: %w", err)
			}
			sid++
			s := &gwSession{g: g, conn: c, b: irm.NewBroker(pd, irmEP, sid), codec: flow.NewCodec()}
			g.track(c, true)
			pd.Go(s.serve)
		}
	}}
}

type gateway struct {
	pd    *kernel.PD
	irmEP kernel.Cap
	logf  func(string, ...any)

	mu    sync.Mutex // guards conns
	conns map[*net.UnixConn]bool
}

func (g *gateway) track(c *net.UnixConn, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.conns[c] = true
	} else {
		delete(g.conns, c)
	}
}

func (g *gateway) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.Close()
	}
}

// gwSession is one program's control connection.
type gwSession struct {
	g     *gateway
	conn  *net.UnixConn
	b     *irm.Broker
	codec flow.Codec
	wmu   sync.Mutex // serialises writes on conn
}

func (s *gwSession) serve() {
	defer func() {
		s.conn.Close()
		s.g.track(s.conn, false)
		s.b.Close() // unbinds the session's names
	}()
	ctx, cancel := context.WithCancel(s.g.pd.Context())
	defer cancel() // abandons the session's pending Accepts
	buf := make([]byte, flow.MaxControlMsg)
	for {
		n, err := s.conn.Read(buf)
		if err != nil || n == 0 {
			return
		}
		var req flow.SockReq
		if err := s.codec.Unmarshal(buf[:n], &req); err != nil {
			s.g.logf("gateway: session dropped: %v", err)
			return
		}
		s.g.pd.Go(func() { s.handle(ctx, req) })
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
		port, resp.Info, err = s.b.Alloc(ctx, req.Name, req.QoS)
	case flow.SockJoin:
		port, resp.Info, err = s.b.Join(ctx, req.Layer)
	case flow.SockAccept:
		port, resp.Info, err = s.b.Accept(ctx)
	case flow.SockBind:
		err = s.b.Bind(ctx, req.Name)
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
	if !s.send(resp, fds[1]) {
		mine.Close()
		port.Close()
		return
	}
	splice(s.g.pd, port, flow.NewSeqpacketPort(mine))
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
		s.g.logf("gateway: encode response: %v", err)
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
// program's socket until either side ends, then closes both.
func splice(pd *kernel.PD, ring flow.Port, sock flow.Port) {
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ring.Close()
			sock.Close()
		})
	}
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
	pd.Go(func() { pump(ring, sock) })
	pd.Go(func() { pump(sock, ring) })
}
