package flow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Client is the application's handle on a Broker: it turns the ports the
// broker hands out into Flows, and offers net.Conn/net.Listener adapters.
//
// Flows to bound names are accepted by one goroutine (started by the first
// Accept or Listen) that hands each to the Listener of its name, or else
// to Accept. Close the Client to stop it.
//
// Safe for concurrent use.
type Client struct {
	b    Broker
	opts []Option

	mu        sync.Mutex
	listeners map[string]*listener
	started   bool // the accept loop runs
	closed    bool

	incoming   chan *Flow // accepted flows no Listener claimed
	ctx        context.Context
	cancel     context.CancelFunc
	acceptDone chan struct{} // closed when the accept loop ended
	acceptErr  error         // why it ended; set before acceptDone closes
}

// incomingQueue bounds the flows waiting for Client.Accept; more are refused.
const incomingQueue = 16

// NewClient returns a Client over b; opts apply to every Flow it makes.
// The Client does not close b.
func NewClient(b Broker, opts ...Option) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		b:          b,
		opts:       opts,
		listeners:  map[string]*listener{},
		incoming:   make(chan *Flow, incomingQueue),
		ctx:        ctx,
		cancel:     cancel,
		acceptDone: make(chan struct{}),
	}
}

// Alloc allocates a flow to name with QoS q; it blocks until the peer
// accepted or ctx ends.
func (c *Client) Alloc(ctx context.Context, name string, q QoS) (*Flow, error) {
	port, info, err := c.b.Alloc(ctx, name, q)
	if err != nil {
		return nil, fmt.Errorf("flow: alloc %q: %w", name, err)
	}
	f, err := New(port, info, c.opts...)
	if err != nil {
		port.Close()
		return nil, err
	}
	return f, nil
}

// Bind makes this program the acceptor of name; flows to it arrive through
// Accept. (Listen binds too.)
func (c *Client) Bind(ctx context.Context, name string) error {
	if err := c.b.Bind(ctx, name); err != nil {
		return fmt.Errorf("flow: bind %q: %w", name, err)
	}
	return nil
}

// BindPeers makes this program the acceptor of name for flows from peers
// only (PeerBinder); the broker must support it.
func (c *Client) BindPeers(ctx context.Context, name string, peers []string) error {
	pb, ok := c.b.(PeerBinder)
	if !ok {
		return fmt.Errorf("flow: bind %q: this broker cannot choose peers: %w", name, ErrInvalid)
	}
	if err := pb.BindPeers(ctx, name, peers); err != nil {
		return fmt.Errorf("flow: bind %q: %w", name, err)
	}
	return nil
}

// Unbind undoes Bind.
func (c *Client) Unbind(ctx context.Context, name string) error {
	if err := c.b.Unbind(ctx, name); err != nil {
		return fmt.Errorf("flow: unbind %q: %w", name, err)
	}
	return nil
}

// Accept waits for a flow to a bound name that no Listener serves.
func (c *Client) Accept(ctx context.Context) (*Flow, error) {
	if err := c.start(); err != nil {
		return nil, err
	}
	select {
	case f := <-c.incoming:
		return f, nil
	case <-c.acceptDone:
		return nil, c.acceptErr
	case <-ctx.Done():
		return nil, fmt.Errorf("flow: accept: %w", ctx.Err())
	}
}

// Join joins the broadcast layer named layer: what the flow writes reaches
// every member.
func (c *Client) Join(ctx context.Context, layer string) (*Flow, error) {
	port, info, err := c.b.Join(ctx, layer)
	if err != nil {
		return nil, fmt.Errorf("flow: join %q: %w", layer, err)
	}
	f, err := New(port, info, c.opts...)
	if err != nil {
		port.Close()
		return nil, err
	}
	return f, nil
}

// Dial allocates a reliable, in-order flow (QoS Data) to name and returns
// it as a byte-stream net.Conn (a *Stream), for protocols written for TCP.
func (c *Client) Dial(ctx context.Context, name string) (net.Conn, error) {
	f, err := c.Alloc(ctx, name, Data())
	if err != nil {
		return nil, err
	}
	return NewStream(f), nil
}

// Listen binds name and returns a net.Listener whose Accept returns each
// flow to name as a byte-stream net.Conn (a *Stream). Closing the listener
// unbinds the name.
func (c *Client) Listen(name string) (net.Listener, error) {
	if err := c.start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if err := c.Bind(ctx, name); err != nil {
		return nil, err
	}
	l := &listener{c: c, name: name, ch: make(chan *Flow, incomingQueue), closed: make(chan struct{})}
	c.mu.Lock()
	c.listeners[name] = l
	c.mu.Unlock()
	return l, nil
}

// unlisten unbinds a listener's name.
func (c *Client) unlisten(l *listener) error {
	c.mu.Lock()
	if c.listeners[l.name] == l {
		delete(c.listeners, l.name)
	}
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Unbind(ctx, l.name)
}

// start starts the accept loop once.
func (c *Client) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("flow: client: %w", ErrClosed)
	}
	if !c.started {
		c.started = true
		goVia(c.b, c.acceptLoop)
	}
	return nil
}

// acceptLoop accepts flows until the broker fails or the Client closes,
// and hands each to the Listener of its name, or to Accept.
func (c *Client) acceptLoop() {
	defer close(c.acceptDone)
	for {
		port, info, err := c.b.Accept(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				err = ErrClosed
			}
			c.acceptErr = fmt.Errorf("flow: accept: %w", err)
			return
		}
		f, err := New(port, info, c.opts...)
		if err != nil {
			port.Close()
			continue
		}
		c.mu.Lock()
		l := c.listeners[info.Local]
		c.mu.Unlock()
		if l != nil {
			select {
			case l.ch <- f:
				continue
			case <-l.closed:
			case <-c.ctx.Done():
			}
		} else {
			select {
			case c.incoming <- f:
				continue
			default: // nobody accepts: refuse
			}
		}
		f.abort()
	}
}

// Close stops accepting, closes every Listener (unbinding its name) and
// the flows nobody accepted yet. Flows already returned stay open.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	ls := make([]*listener, 0, len(c.listeners))
	for _, l := range c.listeners {
		ls = append(ls, l)
	}
	started := c.started
	c.mu.Unlock()
	var errs []error
	for _, l := range ls {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	if started {
		<-c.acceptDone
	}
	for {
		select {
		case f := <-c.incoming:
			f.abort()
		default:
			return errors.Join(errs...)
		}
	}
}
