//go:build faultinject

package unicast_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// TestPoisonFaultsInRunner: a packet carrying faultinject.Poison on an
// N-1 data-transfer flow, and one on a management flow, make the
// receiving IPCP's input panic inside the receive goroutines of those
// flows, which were started through the Runner: the Recorder recovers
// them as a kernel PD would (a plain goroutine would crash the test
// binary), and the IPCPs still stop cleanly.
func TestPoisonFaultsInRunner(t *testing.T) {
	rec := &layertest.Recorder{}
	n := unicasttest.New(t)
	n.Template.Runner = rec
	a := n.Add("a.uni", true, nil, nil)
	b := n.Add("b.uni", false, []string{"a.uni"}, nil)
	n.WaitOperational(10 * time.Second)
	n.WaitFor(5*time.Second, "the adjacency", func() bool {
		return a.IPCP.Stats().Neighbour == 1 && b.IPCP.Stats().Neighbour == 1
	})
	for _, p := range n.Links("a.uni", "b.uni") {
		p.Write([]byte("poison: "+faultinject.Poison), time.Now().Add(time.Second))
	}
	for _, site := range []struct{ name, frame string }{
		{"unicast/dt", "dt.(*Loops).Rx"},
		{"unicast/mgmt", "connmgr.(*Manager).rxLoop"},
	} {
		f, ok := rec.Wait(5*time.Second, func(s string) bool { return strings.Contains(s, site.name) })
		if !ok {
			t.Fatalf("no fault at %s; faults: %v", site.name, rec.Faults())
		}
		if !strings.Contains(f.Stack, site.frame) {
			t.Errorf("the fault at %s is not in %s:\n%s", site.name, site.frame, f.Stack)
		}
	}
	// A management and a data-transfer flow, each faulting at both ends
	// (the enrollment flow's ends are closed: writes to them fail).
	n.WaitFor(5*time.Second, "four faults", func() bool { return len(rec.Faults()) == 4 })
	done := make(chan struct{})
	go func() { n.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hangs after the receive goroutines faulted")
	}
}
