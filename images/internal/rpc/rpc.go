// Package rpc carries typed control calls between components over kernel
// endpoints: CBOR payloads, capabilities alongside, errors mapped back to
// flow sentinels. It is a control-path convenience, not a data path.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

// Op names a remote operation; each service defines its own.
type Op uint32

// Reply labels.
const (
	labelOK  = 0
	labelErr = 1
)

// Client calls a service over an endpoint capability. It is safe for
// concurrent use: each call uses its own message.
type Client struct {
	pd    *kernel.PD
	ep    kernel.Cap
	codec flow.Codec
}

// NewClient returns a client for the service behind ep in pd's CSpace.
func NewClient(pd *kernel.PD, ep kernel.Cap) *Client {
	return &Client{pd: pd, ep: ep, codec: flow.NewCodec()}
}

// PD returns the component the client acts for.
func (c *Client) PD() *kernel.PD { return c.pd }

// Call performs op with req (CBOR-encoded; nil for none), transferring
// caps (moved out of the caller's CSpace when the endpoint cap has Grant),
// and decodes the reply into resp (nil to ignore). It returns the caps
// that came back, as slots in the caller's CSpace.
func (c *Client) Call(ctx context.Context, op Op, req any, caps []kernel.Cap, resp any) ([]kernel.Cap, error) {
	var m kernel.Msg
	m.Label = uint64(op)
	if req != nil {
		b, err := c.codec.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("rpc: encode op %d: %w", op, err)
		}
		if len(b) > kernel.MaxPayload {
			return nil, fmt.Errorf("rpc: op %d request of %d bytes: %w", op, len(b), flow.ErrTooBig)
		}
		buf := make([]byte, kernel.MaxPayload)
		m.Payload = buf[:copy(buf, b)]
	} else {
		m.Payload = make([]byte, 0, kernel.MaxPayload)
	}
	if len(caps) > kernel.MaxCaps {
		return nil, fmt.Errorf("rpc: op %d with %d caps: %w", op, len(caps), flow.ErrInvalid)
	}
	m.NCaps = copy(m.Caps[:], caps)
	if err := c.pd.CallCtx(ctx, c.ep, &m); err != nil {
		return nil, fmt.Errorf("rpc: op %d: %w", op, err)
	}
	got := append([]kernel.Cap(nil), m.Caps[:m.NCaps]...)
	if m.Label == labelErr {
		var w flow.WireError
		if err := c.codec.Unmarshal(m.Payload, &w); err != nil {
			return got, fmt.Errorf("rpc: op %d: undecodable error reply: %w", op, err)
		}
		return got, w.Err()
	}
	if resp != nil {
		if err := c.codec.Unmarshal(m.Payload, resp); err != nil {
			return got, fmt.Errorf("rpc: op %d: decode reply: %w", op, err)
		}
	}
	return got, nil
}

// Request is one incoming call as a Handler sees it.
type Request struct {
	Op    Op
	Badge kernel.Badge // the caller's badge: who is calling
	Caps  []kernel.Cap // caps that came with the call, now in the server's CSpace
	body  []byte
	codec flow.Codec
	later *Later // set by Later
	pd    *kernel.PD
	reply kernel.Cap
	end   context.CancelFunc // ends the handler's ctx
}

// Later is the reply to a call whose handler leaves it to be sent later,
// by whichever goroutine settles the call (Request.Later).
type Later struct {
	r    *Request
	once sync.Once
}

// Later tells Serve that the reply to r is sent through the returned
// Later, not when the handler returns (what the handler returns is then
// ignored); the handler's ctx lasts until the reply is sent. It lets a
// call that waits for another component's action be answered by the
// goroutine that acts, instead of waking a goroutine that waits.
func (r *Request) Later() *Later {
	if r.later == nil {
		r.later = &Later{r: r}
	}
	return r.later
}

// Send sends the reply: resp, or err if it is not nil. Only the first
// Send counts. Safe for concurrent use.
func (l *Later) Send(resp Response, err error) {
	l.once.Do(func() {
		r := l.r
		r.end()
		finish(r.pd, r.codec, r.reply, resp, err)
	})
}

// Decode decodes the request body into v.
func (r *Request) Decode(v any) error {
	if err := r.codec.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("rpc: decode op %d: %w: %w", r.Op, flow.ErrInvalid, err)
	}
	return nil
}

// Response is what a Handler returns: a body to encode and caps to send.
type Response struct {
	Body any
	Caps []kernel.Cap
	// Undelivered, if set, is called when the reply did not reach the
	// caller with all its caps (the caller gave up or died meanwhile):
	// the caps left are deleted first, and Undelivered undoes what the
	// call made for the caller (a flow, a session), which nobody holds.
	Undelivered func()
	// Delivered, if set, is called once the reply reached the caller
	// with all its caps: what the handler does only when the caller has
	// what it was given. (The caller's goroutine was readied by then;
	// a goroutine Delivered readies is readied after it, and the runtime
	// runs the last readied first.)
	Delivered func()
}

// Handler serves one request. It runs on its own goroutine of the server
// component, so it may block.
type Handler func(ctx context.Context, r *Request) (Response, error)

// Serve receives calls on ep and runs h for each on a goroutine of pd,
// replying with its result. Only Calls are served. It returns when pd's
// context ends or the endpoint fails. The ctx a handler gets ends when
// the server stops or when the caller is gone (its CallCtx gave up, its
// component died: kernel.PD.ReplyContext), so that nothing keeps waiting
// for a caller that left.
func Serve(pd *kernel.PD, ep kernel.Cap, h Handler) error {
	codec := flow.NewCodec()
	ctx := pd.Context()
	ws := &workers{pd: pd, jobs: make(chan func()), done: make(chan struct{})}
	defer close(ws.done)
	for {
		m := kernel.Msg{Payload: make([]byte, 0, kernel.MaxPayload)}
		info, err := pd.RecvCtx(ctx, ep, &m)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, kernel.ErrTruncated) {
				if info.Reply != 0 {
					replyErr(pd, codec, info.Reply, fmt.Errorf("rpc: request too large: %w", flow.ErrTooBig))
				}
				continue
			}
			return fmt.Errorf("rpc: serve: %w", err)
		}
		if info.Reply == 0 {
			// Every operation is a Call. A request without a reply cap is a
			// plain Send, or a Call the kernel aborted because this
			// component had no free slot for the reply: nobody waits for
			// an answer, so it is not served; caps it brought are freed.
			for _, c := range m.Caps[:m.NCaps] {
				pd.Delete(c)
			}
			continue
		}
		req := &Request{
			Op:    Op(m.Label),
			Badge: info.Badge,
			Caps:  append([]kernel.Cap(nil), m.Caps[:m.NCaps]...),
			body:  m.Payload,
			codec: codec,
			pd:    pd,
			reply: info.Reply,
		}
		ws.run(func() {
			hctx, cancel := pd.ReplyContext(ctx, req.reply)
			req.end = cancel
			resp, err := h(hctx, req)
			if req.later != nil {
				return // sent by req.later
			}
			cancel()
			finish(pd, codec, req.reply, resp, err)
		})
	}
}

// MaxIdle is how many of a server's handler goroutines wait for the next
// request once theirs is answered.
const MaxIdle = 4

// workers runs a server's handlers on goroutines of its component that
// outlive one request: a goroutine whose handler returned waits for the
// next request (up to MaxIdle of them at once) rather than exiting, so
// that the stack the decoding and the handler grew is there for the next
// one. A fresh goroutine per request grew its stack every time: under a
// run of flow allocations runtime.newstack was 9-15% of a router's CPU
// (docs/benchmarks.md, "Allocation: where the time goes"). A request
// that finds no goroutine waiting gets a new one, so a handler that
// blocks (an Accept) never holds up the others.
type workers struct {
	pd    *kernel.PD
	jobs  chan func()   // unbuffered: a send succeeds only into a waiting goroutine
	done  chan struct{} // closed when Serve returns: the waiting goroutines end
	idle  atomic.Int32
	spawn atomic.Int32 // goroutines started, for tests
}

// run runs f on a waiting goroutine, or on a new one.
func (w *workers) run(f func()) {
	select {
	case w.jobs <- f:
	default:
		w.spawn.Add(1)
		w.pd.Go(func() { w.loop(f) })
	}
}

// loop runs f, then the requests handed to it while it waits, until
// more than MaxIdle wait or the server or its component ends.
func (w *workers) loop(f func()) {
	ctx := w.pd.Context()
	for f != nil {
		f()
		f = nil
		if w.idle.Add(1) <= MaxIdle {
			select {
			case f = <-w.jobs:
			case <-w.done:
			case <-ctx.Done():
			}
		}
		w.idle.Add(-1)
	}
}

// finish sends a handler's reply: err if not nil, else resp; caps of
// resp that did not reach the caller are deleted and resp.Undelivered
// called.
func finish(pd *kernel.PD, codec flow.Codec, reply kernel.Cap, resp Response, err error) {
	if err != nil {
		replyErr(pd, codec, reply, err)
		return
	}
	var out kernel.Msg
	out.Label = labelOK
	if resp.Body != nil {
		b, err := codec.Marshal(resp.Body)
		if err == nil && len(b) > kernel.MaxPayload {
			err = fmt.Errorf("rpc: reply of %d bytes: %w", len(b), flow.ErrTooBig)
		}
		if err != nil {
			replyErr(pd, codec, reply, err)
			return
		}
		out.Payload = b
	}
	out.NCaps = copy(out.Caps[:], resp.Caps)
	err = pd.Reply(reply, &out)
	undelivered := err != nil
	for _, c := range resp.Caps {
		// A cap still in this CSpace was not moved to the caller
		// (it left, or its CSpace was full): it is not kept.
		if pd.Holds(c) {
			pd.Delete(c)
			undelivered = true
		}
	}
	switch {
	case undelivered && resp.Undelivered != nil:
		resp.Undelivered()
	case !undelivered && resp.Delivered != nil:
		resp.Delivered()
	}
}

func replyErr(pd *kernel.PD, codec flow.Codec, reply kernel.Cap, err error) {
	b, _ := codec.Marshal(flow.EncodeError(err))
	_ = pd.Reply(reply, &kernel.Msg{Label: labelErr, Payload: b})
}
