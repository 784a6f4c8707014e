//go:build faultinject

package udp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
)

// TestPoisonFaultsInRunner: a datagram carrying faultinject.Poison makes
// the shim's input panic inside its receive goroutine, which was started
// through the Runner: the Recorder recovers it as a kernel PD would (a
// plain goroutine would crash the test binary), and the shim still
// stops cleanly.
func TestPoisonFaultsInRunner(t *testing.T) {
	rec := &layertest.Recorder{}
	c := listen(t, "udp", "127.0.0.1:0")
	p, err := New(Config{Layer: "l", Name: "n", Device: c, Runner: rec}, ipcptest.NewUpcalls(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	p.Register(context.Background(), "srv")
	r := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r.c.Close()
	r.send(addrOf(c), 7, []byte("a clean datagram"))
	r.send(addrOf(c), 7, []byte("xx"+faultinject.Poison+"yy"))
	f, ok := rec.Wait(5*time.Second, func(s string) bool { return strings.Contains(s, "udp/input") })
	if !ok {
		t.Fatalf("no fault at udp/input recorded; faults: %v", rec.Faults())
	}
	if !strings.Contains(f.Stack, "(*IPCP).rxLoop") {
		t.Fatalf("the fault is not in the receive goroutine:\n%s", f.Stack)
	}
	if st := p.Stats(); st.Drops.UnknownFlow != 1 {
		t.Errorf("the clean datagram before the poison: %+v, want one unknown-flow drop", st.Drops)
	}
	done := make(chan struct{})
	go func() { p.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop hangs after the receive goroutine faulted")
	}
	if n := len(rec.Faults()); n != 1 {
		t.Fatalf("%d faults, want 1", n)
	}
}
