package unicast_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// TestBufsBoundedUnderFlood floods a 3-hop chain whose middle link is
// stuck (n1's writes of the flood's SDUs to n2 block), so that n1's
// queue towards n2, far longer (QueueLen 2048) than n1's buffer budget
// (Bufs 256), fills: n1 must never hold more buffers than its budget,
// must count what it drops for want of one (no_buf), and must forward
// again once the link moves.
func TestBufsBoundedUnderFlood(t *testing.T) {
	const (
		bufs  = 256
		qlen  = 2048
		size  = 777 // the flood's SDUs, told apart from control by length
		flood = 20000
	)
	n := unicasttest.New(t)
	n.Template.LayerConfig.CA = "nop"
	n.Template.KeepAlive, n.Template.FlowTimeout = time.Second, 10*time.Second
	n.Template.QueueLen = qlen
	n.Build(line(4), func(i int, c *unicast.Config) {
		if i == 1 {
			c.Bufs = bufs // the others keep the default, far more
		}
	})
	n.WaitOperational(10 * time.Second)
	n0, n1, n3 := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(1)), n.Node(unicasttest.NodeName(3))
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
			n.Tamper(n1.Name, unicasttest.NodeName(2), nil)
		}
	}
	defer release()
	n.Tamper(n1.Name, unicasttest.NodeName(2), func(pkt []byte) [][]byte {
		if len(pkt) == dt.PCILen+size {
			<-gate
		}
		return [][]byte{pkt}
	})

	msg := make([]byte, size)
	werr := 0
	for i := 0; i < flood && n1.IPCP.Stats().Forwarded < 2*bufs; i++ {
		// A full first hop pushes back on the sender for a while, then
		// drops: errors are part of a flood.
		if a.Write(msg, time.Now().Add(100*time.Millisecond)) != nil {
			werr++
		}
	}
	t.Logf("%d writes failed", werr)
	// n1 has taken in twice its budget of the flood while the link is
	// stuck: every one of those it did not drop, it holds.
	n.WaitFor(10*time.Second, "n1 taking in the flood", func() bool {
		return n1.IPCP.Stats().Forwarded >= 2*bufs
	})
	s := n1.IPCP.Stats()
	t.Logf("n1: %d buffers made (budget %d), drops %v, forwarded %d", s.BufAllocs, bufs, s.Drops, s.Forwarded)
	if s.BufAllocs > bufs {
		t.Errorf("n1 made %d packet buffers under a flood, its budget is %d", s.BufAllocs, bufs)
	}
	if s.Drops["no_buf"] == 0 {
		t.Errorf("n1 dropped nothing for want of a buffer (drops %v)", s.Drops)
	}

	// The link moves again: what n1 queued drains, and a marked SDU
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
	if got := n1.IPCP.Stats().BufAllocs; got > bufs {
		t.Errorf("n1 made %d packet buffers after draining, budget %d", got, bufs)
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
