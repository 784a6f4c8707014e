package unicast_test

import (
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// TestLocalMarksWired: a flow whose first hop is slower than its sender
// fills the sending node's own queue. With the layer policy mb-ecn that
// queue marks the flow's packets (marked.queue) for the receiver to
// report; with mb-ecn-local it tells the flow's sender at once
// (marked.local) and marks no packet.
func TestLocalMarksWired(t *testing.T) {
	for _, pol := range []string{"mb-ecn", "mb-ecn-local"} {
		t.Run(pol, func(t *testing.T) {
			const size = 777 // the flood's SDUs, told apart from control by length
			n := unicasttest.New(t)
			n.Template.LayerConfig.CA = pol
			n.Build(line(2), nil)
			n.WaitOperational(10 * time.Second)
			n0, n1 := n.Node(unicasttest.NodeName(0)), n.Node(unicasttest.NodeName(1))
			n1.Register("sink")
			a, err := n0.Alloc(ctxT(t, 5*time.Second), "sink", flow.BestEffort())
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			acc, err := n1.Accept(2 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			z := acc.Port
			defer z.Close()
			go func() { // the program at the far end reads everything
				buf := make([]byte, flow.MaxSDU)
				for {
					if _, err := z.Read(buf, time.Time{}); err != nil {
						return
					}
				}
			}()
			// The link from n0 takes 100 µs per SDU of the flood: about
			// 8 MB/s, which slow start passes within half a second.
			n.Tamper(n0.Name, n1.Name, func(pkt []byte) [][]byte {
				if len(pkt) == dt.PCILen+size {
					time.Sleep(100 * time.Microsecond)
				}
				return [][]byte{pkt}
			})
			defer n.Tamper(n0.Name, n1.Name, nil)
			msg := make([]byte, size)
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
				if s := n0.IPCP.Stats(); s.MarkedQueue+s.MarkedLocal >= 100 {
					break
				}
				a.Write(msg, time.Now().Add(100*time.Millisecond)) // a full first hop pushes back: errors are part of a flood
			}
			s := n0.IPCP.Stats()
			t.Logf("%s: sent %d, marked.queue %d, marked.local %d", pol, s.Sent, s.MarkedQueue, s.MarkedLocal)
			local := pol == "mb-ecn-local"
			switch {
			case local && (s.MarkedLocal == 0 || s.MarkedQueue != 0):
				t.Errorf("mb-ecn-local: marked.local %d, marked.queue %d; want the sender told (> 0) and no packet marked", s.MarkedLocal, s.MarkedQueue)
			case !local && (s.MarkedQueue == 0 || s.MarkedLocal != 0):
				t.Errorf("mb-ecn: marked.queue %d, marked.local %d; want packets marked (> 0) and nothing told at once", s.MarkedQueue, s.MarkedLocal)
			}
		})
	}
}
