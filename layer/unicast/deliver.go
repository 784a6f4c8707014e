package unicast

import (
	"errors"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast/fa"
)

// Delivery to N+1 flows. The receive loops never wait for a program: a
// data packet for an N+1 flow joins the flow's delivery queue (its
// buffer moves, in exchange for a spare, as a forwarded packet's does),
// and one goroutine per flow (deliverLoop) writes the queue into the
// flow's port in batches, waiting on the port's back-pressure. The
// queue, with the port's ring behind it, is the flow's last queue in
// the layer: it absorbs a program that stalls for a moment (a process
// waiting for a CPU), deliver marks congestion by its standing depth
// (deliverMark), and a packet that finds it full, or all delivery queues
// holding their share of the IPCP's buffers (deliverShare), is dropped
// and counted (rx_full), never waited for.

// deliverQueue is the capacity of a flow's delivery queue, in packets:
// with the node's ring to the program (256) behind it, about 10 ms of a
// flow at loopback speed (100,000 SDUs/s), the time a program on a
// loaded machine may wait for a CPU; within the delivery queues' share
// of the default buffers (DefaultBufs/deliverShare, 1024). At 256 a
// program's stalls overflowed it at rates mb-ecn now reaches
// (docs/benchmarks.md, "Congestion avoidance").
const deliverQueue = 768

// deliverShare is the share of the IPCP's packet buffers (Config.Bufs)
// all delivery queues together may hold, 1/deliverShare: programs that
// do not read (a stalled or hostile one, with a flood sent to it) must
// not take the buffers forwarding needs.
const deliverShare = 4

// errDeliveryFull is deliver's own: the flow's delivery queue was full,
// or the delivery queues held their share of the buffers.
var errDeliveryFull = errors.New("unicast: delivery queue full")

// delivery is an N+1 flow's delivery queue: a FIFO of packet buffers
// whose packets are the SDUs (off and end bound the SDU), safe for
// concurrent use (the receive loops of several N-1 ports push, the
// flow's deliverLoop pops).
type delivery struct {
	mu     sync.Mutex
	buf    [deliverQueue]*pbuf
	head   int
	n      int
	closed bool // the flow's deliverLoop is gone: push refuses

	kick chan struct{} // wakes deliverLoop; capacity 1
	done chan struct{} // closed when the flow's transmit loop ends: the flow is gone
}

func newDelivery() *delivery {
	return &delivery{kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues b; false if the queue is full or closed (b is still the
// caller's).
func (d *delivery) push(b *pbuf) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == len(d.buf) || d.closed {
		return false
	}
	d.buf[(d.head+d.n)%len(d.buf)] = b
	d.n++
	return true
}

// hold charges one buffer to the delivery queues' share of the pool
// (deliverShare), or reports false if they hold their share already.
func (c *core) hold() bool {
	if c.delivering.Add(1) > int64(c.p.pool.Limit()/deliverShare) {
		c.delivering.Add(-1)
		return false
	}
	return true
}

// pop moves up to len(dst) queued buffers into dst and returns how many.
func (d *delivery) pop(dst []*pbuf) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := min(len(dst), d.n)
	for i := range n {
		dst[i] = d.buf[d.head]
		d.buf[d.head] = nil
		d.head = (d.head + 1) % len(d.buf)
	}
	d.n -= n
	return n
}

// close makes push refuse from now on: a receive loop that still finds
// the flow (it is forgotten after its loops end) must not queue buffers
// nobody will free.
func (d *delivery) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
}

// len returns how many packets are queued.
func (d *delivery) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// wake wakes the flow's deliverLoop.
func (d *delivery) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// unqueued is deliver's end for a packet it did not queue: a buffer
// deliver took (no spares: it was given b) goes back to the pool. It
// returns nil: no replacement for the caller's b.
func (c *core) unqueued(b *pbuf, sp *spares) *pbuf {
	if sp == nil {
		c.p.pool.PutOne(b)
	}
	return nil
}

// delivered counts an SDU of n bytes written to f's port.
func (c *core) delivered(f *fa.Flow, n int) {
	c.p.c.delivered.Add(1)
	f.PktsIn.Add(1)
	f.BytesIn.Add(uint64(n))
}

// deliverLoop writes f's delivery queue into its port, in batches where
// the port takes them, waiting for room, until the flow is gone; then it
// frees what is still queued.
func (c *core) deliverLoop(f *fa.Flow, d *delivery) {
	defer c.wg.Done()
	var (
		batch [txBatch]*pbuf
		sdus  [txBatch][]byte
	)
	bp, _ := f.Port.(flow.BatchPort)
	for {
		n := d.pop(batch[:])
		if n == 0 {
			select {
			case <-d.kick:
				continue
			case <-d.done:
			}
			d.close()
			for { // the flow is gone: what is left goes back to the pool
				n := d.pop(batch[:])
				if n == 0 {
					return
				}
				f.Drops.Add(uint64(n))
				c.p.pool.Put(batch[:n])
				c.delivering.Add(-int64(n))
			}
		}
		for i, b := range batch[:n] {
			sdus[i] = b.Pkt()
		}
		sent := 0
		if bp != nil {
			for sent < n {
				k, err := bp.WriteBatch(sdus[sent:n], time.Time{})
				for _, s := range sdus[sent : sent+k] {
					c.delivered(f, len(s))
				}
				sent += k
				if err != nil {
					break
				}
			}
		} else {
			for ; sent < n; sent++ {
				if f.Port.Write(sdus[sent], time.Time{}) != nil {
					break
				}
				c.delivered(f, len(sdus[sent]))
			}
		}
		if sent < n { // the port refused them: it is closing
			f.Drops.Add(uint64(n - sent))
		}
		clear(sdus[:n])
		c.p.pool.Put(batch[:n])
		c.delivering.Add(-int64(n))
	}
}
