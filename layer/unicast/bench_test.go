package unicast_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// chain3 returns a 3-hop chain n0 - n1 - n2 - n3 with a flow from n0's
// application to n3's.
func chain3(tb testing.TB, caPolicy string) (a, b flow.Port, n *unicasttest.Net) {
	return chain3Q(tb, caPolicy, flow.BestEffort())
}

// chain3Q is chain3 with a flow of QoS q.
func chain3Q(tb testing.TB, caPolicy string, q flow.QoS) (a, b flow.Port, n *unicasttest.Net) {
	return chain3QA(tb, caPolicy, q, 0)
}

// chain3QA is chain3Q with every member forced to seal with aead (0:
// negotiated).
func chain3QA(tb testing.TB, caPolicy string, q flow.QoS, aead seal.AEAD) (a, b flow.Port, n *unicasttest.Net) {
	n = unicasttest.New(tb)
	n.Template.LayerConfig.CA = caPolicy
	n.Template.SealAEAD = aead
	// Not a test of peer-vanish detection: the harness's 1 s closed the
	// flow under a loaded machine (a keepalive late by a second).
	n.Template.KeepAlive, n.Template.FlowTimeout = time.Second, 10*time.Second
	n.Build(line(4), nil)
	n.WaitOperational(10 * time.Second)
	last := n.Node(unicasttest.NodeName(3))
	last.Register("sink")
	app, err := n.Node(unicasttest.NodeName(0)).Alloc(ctxT(tb, 5*time.Second), "sink", q)
	if err != nil {
		tb.Fatal(err)
	}
	acc, err := last.Accept(2 * time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { app.Close(); acc.Port.Close() })
	return app, acc.Port, n
}

// TestForwardZeroAllocs sends SDUs across three hops: application write,
// three N-1 hops with forwarding decisions, schedulers and transmit
// loops, delivery, application read. Nothing on that path allocates
// (background timers count for less than one allocation per packet).
func TestForwardZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, mode := range sealModes {
		t.Run(mode.name, func(t *testing.T) {
			q := flow.BestEffort()
			q.Sealed = mode.sealed
			a, b, _ := chain3QA(t, "mb-ecn", q, mode.aead)
			msg := make([]byte, 100)
			buf := make([]byte, flow.MaxSDU)
			send := func() {
				if err := a.Write(msg, time.Time{}); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Read(buf, time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			for range 2000 { // warm the buffer pools and free lists
				send()
			}
			if allocs := quietAllocs(5000, send); allocs != 0 {
				t.Errorf("%v allocations per SDU over 3 hops, want 0", allocs)
			}
		})
	}
}

// sealModes are a flow unsealed, and sealed with each AEAD (every member
// forced to it).
var sealModes = []struct {
	name   string
	sealed bool
	aead   seal.AEAD
}{
	{"plain", false, 0},
	{"sealed-chacha20poly1305", true, seal.ChaCha20Poly1305},
	{"sealed-aes256gcm", true, seal.AES256GCM},
}

// BenchmarkSealed3Hops is BenchmarkForward3Hops for a sealed flow (each
// AEAD) and, in the same run, the same flow unsealed: what sealing costs
// (a seal at the first IPCP, an open at the last).
func BenchmarkSealed3Hops(b *testing.B) {
	for _, size := range []int{64, 1350} {
		for _, mode := range sealModes {
			b.Run(fmt.Sprintf("%s/%s", byteSize(size), mode.name), func(b *testing.B) {
				q := flow.BestEffort()
				q.Sealed = mode.sealed
				a, z, _ := chain3QA(b, "nop", q, mode.aead)
				forwardBench(b, size, func(p []byte) error { return a.Write(p, time.Time{}) },
					readWithin(z, 300*time.Millisecond))
			})
		}
	}
}

// BenchmarkForward3Hops pushes SDUs as fast as the sender can through a
// 3-hop chain of IPCPs in one process; pps is what arrives, loss what the
// layer dropped (its queues do not push back on the sender's IPCP).
func BenchmarkForward3Hops(b *testing.B) {
	for _, size := range []int{64, 1000} {
		b.Run(byteSize(size), func(b *testing.B) {
			// No congestion avoidance: mb-ecn would pace the sender
			// from its initial rate (128 KiB/s) and measure the ramp.
			a, z, n := chain3(b, "nop")
			defer func() {
				for _, nd := range n.Nodes() {
					s := nd.IPCP.Stats()
					for k, v := range s.Drops {
						if v > 0 {
							b.Logf("%s: %s drops %d", nd.Name, k, v)
						}
					}
				}
			}()
			forwardBench(b, size, func(p []byte) error { return a.Write(p, time.Time{}) },
				readWithin(z, 300*time.Millisecond))
		})
	}
}

// BenchmarkChannels3Hops is the baseline: the same chain as four
// goroutines passing pooled buffers through buffered channels.
func BenchmarkChannels3Hops(b *testing.B) {
	for _, size := range []int{64, 1000} {
		b.Run(byteSize(size), func(b *testing.B) {
			const stages = 4
			chans := make([]chan []byte, stages+1)
			for i := range chans {
				chans[i] = make(chan []byte, unicasttest.PipeCap)
			}
			free := make(chan []byte, 4*unicasttest.PipeCap)
			var wg sync.WaitGroup
			for i := range stages {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for p := range chans[i] {
						chans[i+1] <- p
					}
					close(chans[i+1])
				}()
			}
			forwardBench(b, size, func(p []byte) error {
				var buf []byte
				select {
				case buf = <-free:
				default:
					buf = make([]byte, 0, flow.MaxSDU)
				}
				chans[0] <- append(buf[:0], p...)
				return nil
			}, func(p []byte) error {
				select {
				case x := <-chans[stages]:
					copy(p, x)
					select {
					case free <- x:
					default:
					}
					return nil
				case <-time.After(300 * time.Millisecond):
					return flow.ErrTimeout
				}
			})
			close(chans[0])
			wg.Wait()
		})
	}
}

// cpuTime returns the CPU time (user and system) the process used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func byteSize(n int) string { return fmt.Sprintf("%dB", n) }

// forwardBench writes b.N SDUs with at most window in flight (the
// reader returns a token per SDU read), so that the figure is the
// chain's lossless throughput, not the rate at which it can drop.
//
// The harness reads the clock once per stamp SDUs, not per SDU (a clock
// read costs about 0.1 µs on this machine's VMs, as much as an IPCP's
// hop): the end time of a run that lost packets is then late by less
// than stamp SDUs' time.
func forwardBench(b *testing.B, size int, write, read func([]byte) error) {
	const (
		window = 128
		stamp  = 64
	)
	msg := make([]byte, size)
	tokens := make(chan struct{}, window)
	for range window {
		tokens <- struct{}{}
	}
	done := make(chan int)
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	var last time.Time
	go func() {
		buf := make([]byte, flow.MaxSDU)
		got := 0
		for got < b.N && read(buf) == nil {
			got++
			if got%stamp == 0 {
				last = time.Now()
			}
			tokens <- struct{}{}
		}
		if got%stamp != 0 && got == b.N {
			last = time.Now()
		}
		done <- got
	}()
	sent := 0
	t := time.NewTimer(time.Second)
loop:
	for range b.N {
		select {
		case <-tokens: // the usual case, without a select over two channels
		default:
			select {
			case <-tokens:
			case <-t.C:
				break loop // packets were lost: their tokens will not come back
			}
		}
		if err := write(msg); err != nil {
			b.Fatal(err)
		}
		sent++
		if sent%1024 == 0 {
			t.Reset(time.Second)
		}
	}
	got := <-done
	el := last.Sub(start)
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	if got > 0 {
		// The whole process: every IPCP of the chain, the sender and
		// the reader. Mpps per core is 1000 / this.
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(got), "cpu-ns/SDU")
	}
	b.ReportMetric(float64(got)/el.Seconds(), "pps")
	b.ReportMetric(100*float64(b.N-got)/float64(b.N), "loss%")
}

// BenchmarkAlloc3Hops allocates a flow over three hops (directory lookup
// included), waits for the far program to get it and deallocates it.
func BenchmarkAlloc3Hops(b *testing.B) {
	_, _, n := chain3(b, "")
	first, last := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(3))
	b.ResetTimer()
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		app, err := first.Alloc(ctx, "sink", flow.BestEffort())
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		acc, err := last.Accept(2 * time.Second)
		if err != nil {
			b.Fatal(err)
		}
		app.Close()
		acc.Port.Close()
	}
}

// BenchmarkFailover measures the delivery gap when a flow's primary link
// is cut (see TestFailover).
func BenchmarkFailover(b *testing.B) {
	var worst time.Duration
	lost := 0
	for range b.N {
		g, l, _ := failover(b)
		worst = max(worst, g)
		lost += l
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-gap-ms")
	b.ReportMetric(float64(lost)/float64(b.N), "lost/cut")
}

// BenchmarkEnroll measures enrolling a member into a one-member layer,
// from Start to operational with a route to the bootstrapper: in an open
// layer (both keys proved, no policy) and in an allow-listed one (the
// addresses derive from the keys). Both include the adjacency's
// authentication, which makes the route.
func BenchmarkEnroll(b *testing.B) {
	for _, pol := range []string{"open", "allow"} {
		b.Run(pol, func(b *testing.B) {
			ida, idb := newID(b), newID(b)
			p := admission.Policy{Mode: admission.ModeOpen}
			if pol == "allow" {
				p = admission.Policy{Mode: admission.ModeAllow, Keys: []ed25519.PublicKey{ida.Public(), idb.Public()}}
			}
			for range b.N {
				b.StopTimer()
				n := unicasttest.New(b)
				n.Add("a.uni", true, nil, func(c *unicast.Config) { c.Signer = ida; c.LayerConfig.Admission = p })
				n.WaitOperational(5 * time.Second)
				b.StartTimer()
				n.Add("b.uni", false, []string{"a.uni"}, func(c *unicast.Config) { c.Signer = idb })
				for nb := n.Node("b.uni"); !nb.IPCP.Operational(); {
					time.Sleep(100 * time.Microsecond)
				}
				b.StopTimer()
				n.Stop()
			}
		})
	}
}

// readWithin returns a reader of z for forwardBench with a deadline d
// ahead, read from the clock every 64 reads rather than at each: a read
// that times out on a deadline made earlier tries again with a fresh
// one, so a run still ends once nothing arrives for d.
func readWithin(z flow.Port, d time.Duration) func([]byte) error {
	var (
		n        int
		deadline time.Time
	)
	return func(p []byte) error {
		fresh := n%64 == 0
		if fresh {
			deadline = time.Now().Add(d)
		}
		n++
		_, err := z.Read(p, deadline)
		if err != nil && !fresh && errors.Is(err, flow.ErrTimeout) {
			deadline = time.Now().Add(d)
			_, err = z.Read(p, deadline)
		}
		return err
	}
}

// newPipeBrokers returns a function that attaches programs, by name, to
// one fake IRM (flowtest's) whose flows are pipe's of capacity SDUs each
// way: with ringPipe, the chain's N-1 flows moved the way the node's
// rings move them (a batch per lock, a wake-up only for a side that
// waits), not one channel operation per SDU and a free list as
// flowtest's pipes do.
func newPipeBrokers(capacity int, pipe func(capacity int) (a, b flow.Port)) func(name string) flow.Broker {
	irm := flowtest.NewBrokerPipes(capacity, func() (a, b flow.Port) { return pipe(capacity) })
	return func(name string) flow.Broker { return irm.Program(name) }
}

// ringDir is one direction of a ringPipe: slots the writer copies SDUs
// into and the reader copies them out of, a batch per lock, and a
// wake-up (a channel send) only for a side that found it empty or full
// and waits.
type ringDir struct {
	mu           sync.Mutex
	slots        [][]byte
	head, n      int
	rwait, wwait bool
	closed       bool
	rkick, wkick chan struct{} // capacity 1
	count        atomic.Int32  // n, for Queued and Backlog
	rtimer       *time.Timer   // the reader's (ringWait)
	wtimer       *time.Timer   // the writer's
}

// ringEnd is one end of a ringPipe.
type ringEnd struct{ rx, tx *ringDir }

var _ flow.BatchPort = (*ringEnd)(nil)

// ringPipe returns two connected flow.BatchPorts, each direction a ring
// of capacity slots.
func ringPipe(capacity int) (a, b flow.Port) {
	mk := func() *ringDir {
		d := &ringDir{slots: make([][]byte, capacity), rkick: make(chan struct{}, 1), wkick: make(chan struct{}, 1)}
		for i := range d.slots {
			d.slots[i] = make([]byte, 0, flow.MaxSDU)
		}
		return d
	}
	ab, ba := mk(), mk()
	return &ringEnd{rx: ba, tx: ab}, &ringEnd{rx: ab, tx: ba}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ringWait waits for c until deadline (zero: none), with *t as its
// timer (made on first need: one reader and one writer per direction);
// called without the direction's lock.
func ringWait(c chan struct{}, deadline time.Time, t **time.Timer) error {
	if deadline.IsZero() {
		<-c
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		return flow.ErrTimeout
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	defer (*t).Stop()
	select {
	case <-c:
		return nil
	case <-(*t).C:
		return flow.ErrTimeout
	}
}

func (e *ringEnd) ReadBatch(bufs [][]byte, sizes []int, deadline time.Time) (int, error) {
	d := e.rx
	d.mu.Lock()
	for d.n == 0 {
		if d.closed {
			d.mu.Unlock()
			return 0, flow.ErrClosed
		}
		d.rwait = true
		d.mu.Unlock()
		if err := ringWait(d.rkick, deadline, &d.rtimer); err != nil {
			return 0, fmt.Errorf("ringpipe: read: %w", err)
		}
		d.mu.Lock()
	}
	n := min(d.n, len(bufs))
	var err error
	for i := range n {
		s := d.slots[(d.head+i)%len(d.slots)]
		sizes[i] = copy(bufs[i], s)
		if sizes[i] < len(s) {
			n, err = i+1, flow.ErrTruncated
			break
		}
	}
	d.head = (d.head + n) % len(d.slots)
	d.n -= n
	d.count.Store(int32(d.n))
	if d.wwait {
		d.wwait = false
		kick(d.wkick)
	}
	d.mu.Unlock()
	return n, err
}

func (e *ringEnd) WriteBatch(sdus [][]byte, deadline time.Time) (int, error) {
	d := e.tx
	done := 0
	d.mu.Lock()
	for done < len(sdus) {
		if d.closed {
			d.mu.Unlock()
			return done, flow.ErrClosed
		}
		if d.n == len(d.slots) {
			d.wwait = true
			d.mu.Unlock()
			if err := ringWait(d.wkick, deadline, &d.wtimer); err != nil {
				return done, fmt.Errorf("ringpipe: write: %w", err)
			}
			d.mu.Lock()
			continue
		}
		for ; done < len(sdus) && d.n < len(d.slots); done++ {
			i := (d.head + d.n) % len(d.slots)
			d.slots[i] = append(d.slots[i][:0], sdus[done]...)
			d.n++
		}
		d.count.Store(int32(d.n))
		if d.rwait {
			d.rwait = false
			kick(d.rkick)
		}
	}
	d.mu.Unlock()
	return done, nil
}

func (e *ringEnd) Read(p []byte, deadline time.Time) (int, error) {
	var sizes [1]int
	_, err := e.ReadBatch([][]byte{p}, sizes[:], deadline)
	return sizes[0], err
}

func (e *ringEnd) Write(p []byte, deadline time.Time) error {
	if len(p) > flow.MaxSDU {
		return flow.ErrTooBig
	}
	_, err := e.WriteBatch([][]byte{p}, deadline)
	return err
}

// Queued, QueueCap, Backlog and BacklogCap say how full the rings are,
// as the node's ring port does (dt.Queuer, dt.Backlogger).
func (e *ringEnd) Queued() int     { return int(e.tx.count.Load()) }
func (e *ringEnd) QueueCap() int   { return len(e.tx.slots) }
func (e *ringEnd) Backlog() int    { return int(e.rx.count.Load()) }
func (e *ringEnd) BacklogCap() int { return len(e.rx.slots) }

// Close closes both directions: the other end reads what is queued,
// then flow.ErrClosed.
func (e *ringEnd) Close() error {
	for _, d := range []*ringDir{e.rx, e.tx} {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		kick(d.rkick)
		kick(d.wkick)
	}
	return nil
}

// pipeUpcalls is ipcptest.Upcalls answering with pipe's flows.
type pipeUpcalls struct {
	accepted chan ipcptest.Accepted
	capacity int
	pipe     func(capacity int) (a, b flow.Port)
}

var _ ipcp.Upcalls = (*pipeUpcalls)(nil)

func (u *pipeUpcalls) FlowReq(ctx context.Context, req ipcp.AllocReq) (flow.Port, error) {
	mine, app := u.pipe(u.capacity)
	select {
	case u.accepted <- ipcptest.Accepted{Req: req, Port: app}:
		return mine, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("pipeupcalls: flow request to %q: %w", req.Dst, ctx.Err())
	}
}
