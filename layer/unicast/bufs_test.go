package unicast_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// TestBufsBoundedUnderFlood floods a 3-hop chain one of whose links is
// stuck (the writes of the flood's SDUs on it block), so that the queue
// in front of it, far longer (QueueLen 2048) than the buffer budget of
// the IPCP that holds it, fills. That IPCP must never hold more buffers
// than its budget, must count what it drops for want of one (no_buf),
// and must carry traffic again once the link moves. Two cases: the
// middle IPCP n1 forwarding (link n1-n2 stuck, budget 256) and the first
// IPCP n0 originating (link n0-n1 stuck, budget 40: each SDU then waits
// for a buffer before it is dropped).
func TestBufsBoundedUnderFlood(t *testing.T) {
	for _, tc := range []struct {
		name       string
		node, bufs int
		charged    bool
	}{
		{"forwarding", 1, 256, false},
		{"originating", 0, 40, false},
		// Bufs at its default, the kernel budget spent first: the
		// buffers the data path makes are charged to it (Config.Reserve).
		{"charged", 1, 256, true},
	} {
		t.Run(tc.name, func(t *testing.T) { bufsFlood(t, tc.node, tc.bufs, tc.charged) })
	}
}

// bufsFlood is TestBufsBoundedUnderFlood with node i limited to bufs
// buffers and the link from it to node i+1 stuck: by Config.Bufs, or
// with charged by a budget of bufs that Config.Reserve draws on.
func bufsFlood(t *testing.T, i, bufs int, charged bool) {
	const (
		qlen  = 2048
		size  = 777 // the flood's SDUs, told apart from control by length
		flood = 20000
	)
	n := unicasttest.New(t)
	n.Template.LayerConfig.CA = "nop"
	n.Template.KeepAlive, n.Template.FlowTimeout = time.Second, 10*time.Second
	n.Template.QueueLen = qlen
	n.Build(line(4), func(j int, c *unicast.Config) {
		if j != i {
			return // the others keep the default, far more
		}
		if !charged {
			c.Bufs = bufs
			return
		}
		var mu sync.Mutex
		left := bufs
		c.Reserve = func(n int) error {
			mu.Lock()
			defer mu.Unlock()
			if n > left {
				return fmt.Errorf("reserve %d: %d left", n, left)
			}
			left -= n
			return nil
		}
	})
	n.WaitOperational(10 * time.Second)
	n0, n3 := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(3))
	lim, next := n.Node(unicasttest.NodeName(i)), unicasttest.NodeName(i+1)
	n3.Register("sink")
	a, err := n0.Alloc(ctxT(t, 5*time.Second), "sink", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	acc, err := n3.Accept(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	z := acc.Port
	defer a.Close()
	defer z.Close()

	gate := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
			n.Tamper(lim.Name, next, nil)
		}
	}
	defer release()
	n.Tamper(lim.Name, next, func(pkt []byte) [][]byte {
		if len(pkt) == dt.PCILen+size {
			<-gate
		}
		return [][]byte{pkt}
	})

	// takenIn is how many of the flood's SDUs the limited IPCP has
	// taken in: every one it did not drop, it holds.
	takenIn := func() uint64 {
		s := lim.IPCP.Stats()
		if i == 0 {
			return s.Sent + s.Drops["no_buf"]
		}
		return s.Forwarded
	}
	msg := make([]byte, size)
	werr := 0
	for k := 0; k < flood && takenIn() < uint64(2*bufs); k++ {
		// A full first hop pushes back on the sender for a while, then
		// drops: errors are part of a flood.
		if a.Write(msg, time.Now().Add(100*time.Millisecond)) != nil {
			werr++
		}
	}
	n.WaitFor(10*time.Second, "the limited IPCP taking in twice its budget", func() bool {
		return takenIn() >= uint64(2*bufs)
	})
	s := lim.IPCP.Stats()
	t.Logf("%s: %d buffers made (budget %d), sent %d, forwarded %d, no_buf %d; %d writes failed",
		lim.Name, s.BufAllocs, bufs, s.Sent, s.Forwarded, s.Drops["no_buf"], werr)
	if s.BufAllocs > uint64(bufs) {
		t.Errorf("%s made %d packet buffers under a flood, its budget is %d", lim.Name, s.BufAllocs, bufs)
	}
	if s.Drops["no_buf"] == 0 {
		t.Errorf("%s dropped nothing for want of a buffer (drops %v)", lim.Name, s.Drops)
	}

	// The link moves again: what was queued drains, and a marked SDU
	// sent afterwards arrives.
	release()
	mark := bytes.Repeat([]byte{0xA5}, 100)
	buf := make([]byte, flow.MaxSDU)
	deadline := time.Now().Add(10 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatal("no SDU sent after the flood arrived")
		}
		if err := a.Write(mark, time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			k, err := z.Read(buf, time.Now().Add(200*time.Millisecond))
			if err != nil {
				break // send another mark
			}
			if bytes.Equal(buf[:k], mark) {
				got = true
				break
			}
		}
	}
	if got := lim.IPCP.Stats().BufAllocs; got > uint64(bufs) {
		t.Errorf("%s made %d packet buffers after draining, budget %d", lim.Name, got, bufs)
	}
}

// TestBufsConfig checks the knob's validation: a negative budget is an
// error, not a silent default.
func TestBufsConfig(t *testing.T) {
	n := unicasttest.New(t)
	cfg := n.Template
	cfg.Name, cfg.Bufs = "x.uni", -1
	_, err := unicast.New(cfg, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "bufs -1") {
		t.Fatalf("Bufs -1: got %v, want an error naming bufs", err)
	}
}
