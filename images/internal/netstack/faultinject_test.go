//go:build faultinject

package netstack

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// TestPoisonPanicsRun: a frame carrying faultinject.Poison panics Run (the
// driver's receive path) before any port sees it; the next Run carries on
// with the same ports.
func TestPoisonPanicsRun(t *testing.T) {
	d := newFakeNIC()
	m := NewMux(d)
	defer m.Close()
	p, err := m.Open(PortShim)
	if err != nil {
		t.Fatal(err)
	}
	d.rx <- frame(eth.EtherType, faultinject.Poison)
	var got any
	func() {
		defer func() { got = recover() }()
		m.Run(context.Background())
	}()
	if s, _ := got.(string); !strings.Contains(s, "poison at nic/rx") {
		t.Fatalf("Run: got panic %v, want the poison at nic/rx", got)
	}
	stop := run(m)
	defer stop()
	d.rx <- frame(eth.EtherType, "after")
	if b := readPort(t, p); !bytes.Contains(b, []byte("after")) {
		t.Fatalf("after the fault the port got %q (the poison frame must not be delivered)", b)
	}
}
