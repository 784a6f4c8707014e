package unicast

import (
	"errors"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast/dt"
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
// holding their share of the IPCP's buffers (deliverLimit), is dropped
// and counted (rx_full), never waited for.

// deliverQueue is the most packets a flow's delivery queue holds: with
// the node's ring to the program (256) behind it, about 32 ms of a flow
// at loopback speed (300,000-400,000 SDUs/s). On two cores shared by
// the sending and receiving programs and their nodes, what waits in
// front of a program arrives in lumps (the program, or the node's
// delivery, waiting some milliseconds for a CPU while the flow goes
// on), and deliverMark holds the flow where its lumps reach half of
// what waits in front of the program: the deeper the queue, the closer
// to what the path carries (at 768, 0.45-0.57 of `ca = "nop"` on
// loopback; at 3072, 0.58-0.68, docs/benchmarks.md, "Room in front of
// the program"; at 12,288, judged by the flow's rate, "A queue as deep
// as the flow is fast"). deliverMark counts it as deep as deliverTime
// of the flow's peak rate, so a slow flow is marked as soon as before.
// The queue starts at deliverQueueMin and doubles as it fills, so a
// flow whose program keeps up holds a small array.
const deliverQueue = 12288

// deliverQueueMin is the depth a delivery queue starts with.
const deliverQueueMin = 64

// deliverLimit is how many of the IPCP's packet buffers (Config.Bufs)
// all delivery queues together may hold: all but forwardKeep of them,
// or a quarter where that is less, so that programs that do not read (a
// stalled or hostile one, with a flood sent to it) cannot take the
// buffers forwarding and the receive loops need.
func (c *core) deliverLimit() int {
	n := c.p.pool.Limit()
	return max(n/4, n-forwardKeep)
}

// forwardKeep is how many buffers the delivery queues leave to
// forwarding and the receive loops, or a quarter of the pool where that
// is more: one cube's queue of an N-1 port (dt.DefaultQueueLen and the
// room beyond it for forwarded packets, queueRoom) can fill.
const forwardKeep = 1024

// DeliveryBufs is the least Config.Bufs with which one flow's delivery
// queue can fill (deliverLimit holds a whole deliverQueue): a node gives
// its unicast IPCPs at least as many by default.
const DeliveryBufs = deliverQueue + forwardKeep

// errDeliveryFull is deliver's own: the flow's delivery queue was full,
// or the delivery queues held their share of the buffers.
var errDeliveryFull = errors.New("unicast: delivery queue full")

// delivery is an N+1 flow's delivery queue: a FIFO of packet buffers
// whose packets are the SDUs (off and end bound the SDU), safe for
// concurrent use (the receive loops of several N-1 ports push, the
// flow's deliverLoop pops).
type delivery struct {
	mu     sync.Mutex
	buf    []*pbuf // a ring, grown (doubled) while full up to deliverQueue
	head   int
	n      int
	closed bool // the flow's deliverLoop is gone: push refuses

	kick chan struct{} // wakes deliverLoop; capacity 1
	done chan struct{} // closed when the flow's transmit loop ends: the flow is gone
}

func newDelivery() *delivery {
	return &delivery{buf: make([]*pbuf, deliverQueueMin), kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues b; false if the queue is full or closed (b is still the
// caller's).
func (d *delivery) push(b *pbuf) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	if d.n == len(d.buf) {
		if len(d.buf) == deliverQueue {
			return false
		}
		d.grow()
	}
	d.buf[(d.head+d.n)%len(d.buf)] = b
	d.n++
	return true
}

// grow doubles the ring (up to deliverQueue), its packets first in
// order. Called with d.mu held, the ring full.
func (d *delivery) grow() {
	nb := make([]*pbuf, min(2*len(d.buf), deliverQueue))
	k := copy(nb, d.buf[d.head:])
	copy(nb[k:], d.buf[:d.head])
	d.buf, d.head = nb, 0
}

// hold charges one buffer to the delivery queues' share of the pool
// (deliverLimit), or reports false if they hold their share already.
func (c *core) hold() bool {
	if c.delivering.Add(1) > int64(c.deliverLimit()) {
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
		kb    dt.Scratch
	)
	bp, _ := f.Port.(flow.BatchPort)
	kp, _ := f.Port.(dt.BufPort)
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
		sent := 0
		if kp == nil {
			sent = c.writeDelivered(f, bp, batch[:n], sdus[:n])
		} else {
			// Over the node's ring port: a packet in the node's buffer
			// goes on in it, the SDU its window; the rest with a copy.
			dt.Runs(batch[:n], func(run []*pbuf, held bool) {
				if !held {
					sent += c.writeDelivered(f, bp, run, sdus[:len(run)])
					return
				}
				pushed := dt.PushRun(kp, run, &kb) // each with its congestion level (Mark)
				for _, b := range run[:pushed] {
					c.delivered(f, b.End-b.Off)
				}
				sent += pushed
			})
		}
		if sent < n { // the port refused them: it is closing
			f.Drops.Add(uint64(n - sent))
		}
		c.p.pool.Put(batch[:n])
		c.delivering.Add(-int64(n))
	}
}

// writeDelivered writes batch's SDUs to f's port with a copy (in one
// call where bp has batches) and returns how many it took; sdus has
// room for them.
func (c *core) writeDelivered(f *fa.Flow, bp flow.BatchPort, batch []*pbuf, sdus [][]byte) int {
	n := len(batch)
	for i, b := range batch {
		sdus[i] = b.Pkt()
	}
	defer clear(sdus[:n])
	sent := 0
	if bp == nil {
		for ; sent < n; sent++ {
			if f.Port.Write(sdus[sent], time.Time{}) != nil {
				break
			}
			c.delivered(f, len(sdus[sent]))
		}
		return sent
	}
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
	return sent
}
