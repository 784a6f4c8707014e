// Package mgmtflow carries a node's read-only management commands over a
// flow: the in-node "mgmt" application (images/internal/node, [[app]]
// kind = "mgmt") answers them, and "ouro --via NAME" asks them, so that a
// host observes a board (or any node) it has no socket to. The requests
// and answers are the node socket's (ipcp.MgmtReq, ipcp.MgmtResp), CBOR
// encoded and split over SDUs, each behind a one-byte flag: 0 more
// follow, 1 the message's last (docs/observability.md, "Remote nodes").
//
// Only sealed flows from the node ids on the application's allow-list
// are accepted (the IRM refuses the others when the name is bound with
// BindPeers, and Admit checks again), and only the commands in ReadOnly
// are answered: a remote operator watches, never changes, the node.
package mgmtflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
)

// Limits of one message.
const (
	MaxRequest  = 16 << 10 // an encoded request
	MaxResponse = 4 << 20  // an encoded answer (a capture page, a page of a listing)
)

// Fragment flags: the first byte of every SDU of a message.
const (
	fragMore = 0x00 // more SDUs of this message follow
	fragLast = 0x01 // the message's last SDU
)

// CmdStatus is answered by the application itself: the node's status page
// (images/internal/status) as JSON in the answer's Text.
const CmdStatus = "status"

// ReadOnly are the commands a remote operator may run: listings,
// counters, the topology, the status page and captures. Capture arms a
// ring at an IPCP, but only observes; every other command (reg, unreg,
// create, destroy, bootstrap, enroll, connect, crl, ...) stays local to
// the node's socket.
var ReadOnly = map[string]bool{
	ipcp.CmdIPCPs: true, ipcp.CmdNames: true, ipcp.CmdFlows: true, ipcp.CmdSystem: true,
	ipcp.CmdID: true, ipcp.CmdComponents: true, ipcp.CmdKernel: true, ipcp.CmdAllocs: true, ipcp.CmdBridges: true,
	"stats": true, "members": true, "routes": true, "pff": true, "dir": true, "ports": true,
	"graph": true, capture.Cmd: true, CmdStatus: true,
}

// Allowed says whether a remote operator may run req.
func Allowed(req ipcp.MgmtReq) error {
	if !ReadOnly[req.Cmd] {
		return fmt.Errorf("mgmtflow: %q changes the node or is unknown: only read-only commands are answered over a flow: %w", req.Cmd, flow.ErrRefused)
	}
	return nil
}

// Admit says whether the application takes a flow: sealed, its peer
// verified and one of peers (node ids as "ouro id" prints them).
func Admit(info flow.Info, peers []string) error {
	if !info.QoS.Sealed || info.Peer == nil {
		return fmt.Errorf("mgmtflow: flow %d from %q is not sealed: %w", info.ID, info.Remote, flow.ErrRefused)
	}
	if !slices.Contains(peers, info.Peer.ID) {
		return fmt.Errorf("mgmtflow: flow %d from node %s: not on the allow-list: %w", info.ID, info.Peer, flow.ErrRefused)
	}
	return nil
}

// Response is an answer on the wire: the management answer or the error.
type Response struct {
	_    struct{} `cbor:",toarray"`
	Resp ipcp.MgmtResp
	Err  flow.WireError
}

var (
	enc cbor.EncMode
	dec cbor.DecMode
)

func init() {
	var err error
	if enc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	dec, err = cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 1 << 16,
		MaxMapPairs:      1024,
		IndefLength:      cbor.IndefLengthForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// DecodeRequest decodes a request of at most MaxRequest bytes.
func DecodeRequest(b []byte) (ipcp.MgmtReq, error) {
	var r ipcp.MgmtReq
	if len(b) > MaxRequest {
		return r, fmt.Errorf("mgmtflow: request of %d bytes: %w", len(b), flow.ErrTooBig)
	}
	if err := dec.Unmarshal(b, &r); err != nil {
		return ipcp.MgmtReq{}, fmt.Errorf("mgmtflow: request: %w: %w", flow.ErrInvalid, err)
	}
	return r, nil
}

// DecodeResponse decodes an answer of at most MaxResponse bytes.
func DecodeResponse(b []byte) (Response, error) {
	var r Response
	if len(b) > MaxResponse {
		return r, fmt.Errorf("mgmtflow: answer of %d bytes: %w", len(b), flow.ErrTooBig)
	}
	if err := dec.Unmarshal(b, &r); err != nil {
		return Response{}, fmt.Errorf("mgmtflow: answer: %w: %w", flow.ErrInvalid, err)
	}
	return r, nil
}

// writeMsg writes msg as SDUs of at most sdu bytes, each behind its flag.
func writeMsg(p flow.Port, sdu int, msg []byte, deadline time.Time) error {
	chunk := sdu - 1
	buf := make([]byte, 0, sdu)
	for {
		n := min(chunk, len(msg))
		flag := byte(fragMore)
		if n == len(msg) {
			flag = fragLast
		}
		buf = append(append(buf[:0], flag), msg[:n]...)
		if err := p.Write(buf, deadline); err != nil {
			return err
		}
		msg = msg[n:]
		if flag == fragLast {
			return nil
		}
	}
}

// readMsg reads one message of no more than most bytes from p, whose SDUs
// are at most sdu bytes.
func readMsg(p flow.Port, sdu, most int, deadline time.Time) ([]byte, error) {
	buf := make([]byte, max(sdu, flow.MaxSDU))
	var msg []byte
	for {
		n, err := p.Read(buf, deadline)
		if err != nil {
			return nil, err
		}
		if n == 0 || buf[0] > fragLast {
			return nil, fmt.Errorf("mgmtflow: SDU of %d bytes without a fragment flag: %w", n, flow.ErrInvalid)
		}
		if len(msg)+n-1 > most {
			return nil, fmt.Errorf("mgmtflow: message over %d bytes: %w", most, flow.ErrTooBig)
		}
		msg = append(msg, buf[1:n]...)
		if buf[0] == fragLast {
			return msg, nil
		}
	}
}

// Mgmter answers management commands: the node's IRM (an *irm.Broker).
type Mgmter interface {
	Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error)
}

// Handle answers one request as the application does: refused unless
// Allowed; the status page itself; every other command by m.
func Handle(ctx context.Context, m Mgmter, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if err := Allowed(req); err != nil {
		return ipcp.MgmtResp{}, err
	}
	if req.Cmd == CmdStatus {
		format := req.Args["format"]
		if format == "" {
			format = "json"
		}
		var b bytesBuffer
		if err := status.Render(&b, format, status.Read(ctx, m)); err != nil {
			return ipcp.MgmtResp{}, fmt.Errorf("mgmtflow: status: %w: %w", flow.ErrInvalid, err)
		}
		return ipcp.MgmtResp{Text: string(b)}, nil
	}
	return m.Mgmt(ctx, req)
}

type bytesBuffer []byte

func (b *bytesBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// CallTimeout bounds one command's answer at the node.
const CallTimeout = 30 * time.Second

// Serve answers the requests of one flow, one at a time, until the flow
// or ctx ends. A request that does not decode ends the flow.
func Serve(ctx context.Context, p flow.Port, info flow.Info, m Mgmter) error {
	sdu := info.SDULimit()
	for {
		msg, err := readMsg(p, sdu, MaxRequest, time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		req, err := DecodeRequest(msg)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, CallTimeout)
		resp, err := Handle(cctx, m, req)
		cancel()
		out, merr := enc.Marshal(Response{Resp: resp, Err: flow.EncodeError(err)})
		if merr == nil && len(out) > MaxResponse {
			merr = fmt.Errorf("mgmtflow: answer of %d bytes: %w", len(out), flow.ErrTooBig)
		}
		if merr != nil {
			out, _ = enc.Marshal(Response{Err: flow.EncodeError(fmt.Errorf("mgmtflow: %s: %w", req.Cmd, merr))})
		}
		if err := writeMsg(p, sdu, out, time.Now().Add(CallTimeout)); err != nil {
			return err
		}
	}
}

// QoS is what a management flow asks for: reliable, in order, sealed.
func QoS() flow.QoS {
	q := flow.Data()
	q.Sealed = true
	return q
}

// Client asks a node's management application over one flow. A call
// whose ctx ends before its answer came leaves the answer owed: the next
// call reads and drops it first, so that answers stay in step with
// requests and the flow stays usable (a capture interrupted mid-read can
// still be stopped).
type Client struct {
	mu      sync.Mutex
	p       flow.Port
	info    flow.Info
	owed    int    // answers to requests whose callers gave up
	partial []byte // the part of an answer read so far
	buf     []byte
}

// Dial allocates a sealed management flow to name through b.
func Dial(ctx context.Context, b flow.Broker, name string) (*Client, error) {
	p, info, err := b.Alloc(ctx, name, QoS())
	if err != nil {
		return nil, fmt.Errorf("management flow to %s: %w", name, err)
	}
	return NewClient(p, info), nil
}

// NewClient asks over an allocated flow p (Dial allocates one).
func NewClient(p flow.Port, info flow.Info) *Client {
	return &Client{p: p, info: info, buf: make([]byte, max(info.SDULimit(), flow.MaxSDU))}
}

// Info is the flow's description (its Peer: the node answering).
func (c *Client) Info() flow.Info { return c.info }

// pollEvery is how often a read waiting for an answer looks at its ctx.
const pollEvery = 100 * time.Millisecond

// answer reads the next whole answer, until ctx ends.
func (c *Client) answer(ctx context.Context) ([]byte, error) {
	for {
		d := time.Now().Add(pollEvery)
		if dl, ok := ctx.Deadline(); ok && dl.Before(d) {
			d = dl
		}
		n, err := c.p.Read(c.buf, d)
		if errors.Is(err, flow.ErrTimeout) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 || c.buf[0] > fragLast {
			return nil, fmt.Errorf("mgmtflow: SDU of %d bytes without a fragment flag: %w", n, flow.ErrInvalid)
		}
		if len(c.partial)+n-1 > MaxResponse {
			return nil, fmt.Errorf("mgmtflow: answer over %d bytes: %w", MaxResponse, flow.ErrTooBig)
		}
		c.partial = append(c.partial, c.buf[1:n]...)
		if c.buf[0] == fragLast {
			msg := c.partial
			c.partial = nil
			return msg, nil
		}
	}
}

// Mgmt sends req and waits for the answer until ctx ends.
func (c *Client) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, err := enc.Marshal(req)
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	if len(b) > MaxRequest {
		return ipcp.MgmtResp{}, fmt.Errorf("mgmtflow: request of %d bytes: %w", len(b), flow.ErrTooBig)
	}
	for c.owed > 0 { // answers callers gave up on
		if _, err := c.answer(ctx); err != nil {
			return ipcp.MgmtResp{}, err
		}
		c.owed--
	}
	deadline := time.Now().Add(CallTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := writeMsg(c.p, c.info.SDULimit(), b, deadline); err != nil {
		c.p.Close() // a request written in part: the flow is out of step
		return ipcp.MgmtResp{}, err
	}
	c.owed++
	msg, err := c.answer(ctx)
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	c.owed--
	r, err := DecodeResponse(msg)
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	return r.Resp, r.Err.Err()
}

// Close ends the flow.
func (c *Client) Close() error { return c.p.Close() }
