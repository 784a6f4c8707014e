package flowtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
)

// Layer is the layer name the fake Broker reports in flow.Info for flows
// allocated with Alloc.
const Layer = "flowtest"

// Broker is a fake flow.Broker: an in-memory IRM connecting Alloc(name) to
// whichever program attached to the same fake Bind-ed name, through Pipes.
// NewBroker returns the first program; Program attaches more, each with its
// own bindings and Accept queue, as separate processes on one node would.
//
// Join connects every member of a named broadcast layer through a hub that
// copies each SDU written by one member to all the others (dropping it for a
// member whose port is full). The hub runs one goroutine per member, which
// ends when that member closes its port.
//
// Safe for concurrent use.
type Broker struct {
	irm  *fakeIRM
	name string // the program's name: Info.Local of the flows it allocates

	accepts   chan accepted
	closed    chan struct{}
	closeOnce sync.Once
}

var _ flow.Broker = (*Broker)(nil)

// fakeIRM is what the programs of one fake share.
type fakeIRM struct {
	capacity int
	pipe     func() (a, b flow.Port) // a flow's two ends
	maxSDU   int                     // what flow.Info says of the flows' SDU limit (0: the default)

	mu     sync.Mutex
	nextID uint64
	bound  map[string]*Broker // name → the program that bound it
	layers map[string]*hub
}

type accepted struct {
	port flow.Port
	info flow.Info
}

// NewBroker returns a program named "client" attached to a new fake IRM
// whose flows are Pipes of the given capacity (SDUs per direction).
func NewBroker(capacity int) *Broker {
	return NewBrokerPipes(capacity, func() (a, b flow.Port) { return Pipe(capacity) })
}

// NewBrokerPipes is NewBroker with the flows Alloc makes (both ends)
// from pipe, for a port of another shape; the broadcast hub's ports
// stay Pipes of capacity.
func NewBrokerPipes(capacity int, pipe func() (a, b flow.Port)) *Broker {
	irm := &fakeIRM{capacity: capacity, pipe: pipe, bound: map[string]*Broker{}, layers: map[string]*hub{}}
	return irm.program("client")
}

// NewBrokerSized is NewBroker whose flows carry SDUs of up to maxSDU
// bytes (more than flow.MaxSDU: a layer with larger SDUs), as both ends'
// flow.Info says.
func NewBrokerSized(capacity, maxSDU int) *Broker {
	b := NewBrokerPipes(capacity, func() (a, b flow.Port) { return PipeSized(capacity, maxSDU) })
	b.irm.maxSDU = maxSDU
	return b
}

// Program attaches another program, with the given name, to b's fake IRM.
func (b *Broker) Program(name string) *Broker { return b.irm.program(name) }

func (irm *fakeIRM) program(name string) *Broker {
	return &Broker{irm: irm, name: name, accepts: make(chan accepted, 64), closed: make(chan struct{})}
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

// Alloc implements flow.Broker. A name nobody bound is flow.ErrNotFound.
func (b *Broker) Alloc(ctx context.Context, name string, q flow.QoS) (flow.Port, flow.Info, error) {
	if b.isClosed() {
		return nil, flow.Info{}, fmt.Errorf("flowtest: alloc %q: broker: %w", name, flow.ErrClosed)
	}
	if name == "" {
		return nil, flow.Info{}, fmt.Errorf("flowtest: alloc: empty name: %w", flow.ErrInvalid)
	}
	b.irm.mu.Lock()
	acc, ok := b.irm.bound[name]
	b.irm.nextID += 2
	id := b.irm.nextID
	b.irm.mu.Unlock()
	if !ok {
		return nil, flow.Info{}, fmt.Errorf("flowtest: alloc %q: %w", name, flow.ErrNotFound)
	}
	mine, theirs := b.irm.pipe()
	info := flow.Info{ID: id - 1, Local: b.name, Remote: name, Layer: Layer, QoS: q, MaxSDU: b.irm.maxSDU}
	peer := flow.Info{ID: id, Local: name, Remote: b.name, Layer: Layer, QoS: q, MaxSDU: b.irm.maxSDU}
	var err error
	select {
	case acc.accepts <- accepted{port: theirs, info: peer}:
		return mine, info, nil
	case <-acc.closed:
		err = fmt.Errorf("flowtest: alloc %q: %w", name, flow.ErrRefused)
	case <-ctx.Done():
		err = fmt.Errorf("flowtest: alloc %q: %w", name, ctx.Err())
	}
	mine.Close()
	theirs.Close()
	return nil, flow.Info{}, err
}

// Bind implements flow.Broker. A name bound by any program on the fake is
// flow.ErrExists.
func (b *Broker) Bind(ctx context.Context, name string) error {
	if b.isClosed() {
		return fmt.Errorf("flowtest: bind %q: broker: %w", name, flow.ErrClosed)
	}
	if name == "" {
		return fmt.Errorf("flowtest: bind: empty name: %w", flow.ErrInvalid)
	}
	b.irm.mu.Lock()
	defer b.irm.mu.Unlock()
	if _, ok := b.irm.bound[name]; ok {
		return fmt.Errorf("flowtest: bind %q: %w", name, flow.ErrExists)
	}
	b.irm.bound[name] = b
	return nil
}

// Unbind implements flow.Broker. A name this program did not bind is
// flow.ErrNotFound.
func (b *Broker) Unbind(ctx context.Context, name string) error {
	b.irm.mu.Lock()
	defer b.irm.mu.Unlock()
	if b.irm.bound[name] != b {
		return fmt.Errorf("flowtest: unbind %q: %w", name, flow.ErrNotFound)
	}
	delete(b.irm.bound, name)
	return nil
}

// Accept implements flow.Broker. After Close it returns flow.ErrClosed.
func (b *Broker) Accept(ctx context.Context) (flow.Port, flow.Info, error) {
	select {
	case a := <-b.accepts:
		return a.port, a.info, nil
	case <-b.closed:
		return nil, flow.Info{}, fmt.Errorf("flowtest: accept: broker: %w", flow.ErrClosed)
	case <-ctx.Done():
		return nil, flow.Info{}, fmt.Errorf("flowtest: accept: %w", ctx.Err())
	}
}

// Join implements flow.Broker: any non-empty layer name is a broadcast
// layer of the fake, created on first Join.
func (b *Broker) Join(ctx context.Context, layer string) (flow.Port, flow.Info, error) {
	if b.isClosed() {
		return nil, flow.Info{}, fmt.Errorf("flowtest: join %q: broker: %w", layer, flow.ErrClosed)
	}
	if layer == "" {
		return nil, flow.Info{}, fmt.Errorf("flowtest: join: empty layer name: %w", flow.ErrNoLayer)
	}
	mine, hubEnd := Pipe(b.irm.capacity)
	b.irm.mu.Lock()
	h := b.irm.layers[layer]
	if h == nil {
		h = &hub{}
		b.irm.layers[layer] = h
	}
	b.irm.nextID++
	id := b.irm.nextID
	b.irm.mu.Unlock()
	h.add(hubEnd)
	return mine, flow.Info{ID: id, Local: b.name, Remote: layer, Layer: layer, QoS: flow.BestEffort()}, nil
}

// Close implements flow.Broker: it unbinds the program's names and ends
// its Accept calls. Ports it returned stay open.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		b.irm.mu.Lock()
		for name, p := range b.irm.bound {
			if p == b {
				delete(b.irm.bound, name)
			}
		}
		b.irm.mu.Unlock()
	})
	return nil
}

// hub is a fake broadcast layer.
type hub struct {
	mu      sync.Mutex
	members []flow.Port // the hub's ends of the members' pipes
}

func (h *hub) add(p flow.Port) {
	h.mu.Lock()
	h.members = append(h.members, p)
	h.mu.Unlock()
	go h.relay(p)
}

// relay copies what member from writes to every other member until from
// is closed by its program.
func (h *hub) relay(from flow.Port) {
	defer h.remove(from)
	buf := make([]byte, flow.MaxSDU)
	var others []flow.Port
	for {
		n, err := from.Read(buf, time.Time{})
		if err != nil {
			return
		}
		h.mu.Lock()
		others = others[:0]
		for _, m := range h.members {
			if m != from {
				others = append(others, m)
			}
		}
		h.mu.Unlock()
		for _, m := range others {
			m.Write(buf[:n], time.Now()) // best effort: dropped if full or closed
		}
	}
}

func (h *hub) remove(p flow.Port) {
	p.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, m := range h.members {
		if m == p {
			h.members = append(h.members[:i], h.members[i+1:]...)
			return
		}
	}
}
