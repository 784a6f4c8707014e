//go:build faultinject

package node

import (
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/kernel/faultinject"
)

// TestBoardDriverFault: an SDU carrying faultinject.Poison, sent from h
// over the Ethernet shim, panics v's board driver in its receive path
// (nic/rx): the driver component faults, the IRM logs it and restarts
// it, the same flow's echoes resume within 1 s, and "stats" of the shim
// on the link shows the fault (the hosted twin of the QEMU test
// TestQEMUFaultNIC in images/router).
func TestBoardDriverFault(t *testing.T) {
	v, vlog, bv, _, p := boardPair(t)
	if !echoOnce(t, p, "before", 5*time.Second) {
		t.Fatal("no echo before the fault")
	}
	start := time.Now()
	if err := p.Write([]byte("an SDU carrying "+faultinject.Poison), start.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(vlog.text(), "faulted=driver.enet") {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no driver fault in v's log after 5s:\n%s", vlog.text())
		}
		time.Sleep(time.Millisecond)
	}
	for !echoOnce(t, p, "after", 100*time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("echoes did not resume 5s after the driver's fault")
		}
	}
	took := time.Since(start)
	t.Logf("echoes resumed %v after the poison SDU", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("echoes resumed after %v, want within 1s", took)
	}
	if !strings.Contains(vlog.text(), "poison at nic/rx") {
		t.Errorf("v's log does not name the poisoned path:\n%s", vlog.text())
	}
	rows := statsRows(t, bv, "v.eth")
	if rows["driver.faults"] != "1" || rows["driver.incarnations"] != "2" || !strings.Contains(rows["driver.last_fault"], "poison at nic/rx") {
		t.Errorf("stats v.eth: %v; want 1 driver fault at nic/rx, 2 incarnations", rows)
	}
	if st, _, _ := v.Kernel().State("driver.enet"); st != "running" {
		t.Errorf("driver.enet is %q after its restart, want running", st)
	}
}
