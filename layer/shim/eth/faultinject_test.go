//go:build faultinject

package eth

import (
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/kernel/faultinject"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/eth/ethtest"
)

// TestPoisonFaultsInRunner: a frame carrying faultinject.Poison makes the
// shim's input panic inside its receive goroutine, started through the
// Runner (the Recorder recovers it as a kernel PD would; a plain
// goroutine would crash the test binary); the shim still stops.
func TestPoisonFaultsInRunner(t *testing.T) {
	rec := &layertest.Recorder{}
	da, db := ethtest.NewPair()
	p, err := New(Config{Layer: "l", Name: "n", Device: da, Runner: rec}, ipcptest.NewUpcalls(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	frame := make([]byte, 64)
	mac, _ := MACFrom(db.MAC())
	Frame(frame).SetHeader(p.MAC(), mac, 5, 40)
	copy(frame[HeaderLen:], faultinject.Poison)
	if err := db.WriteFrame(frame); err != nil {
		t.Fatal(err)
	}
	f, ok := rec.Wait(5*time.Second, func(s string) bool { return strings.Contains(s, "eth/input") })
	if !ok {
		t.Fatalf("no fault at eth/input recorded; faults: %v", rec.Faults())
	}
	if !strings.Contains(f.Stack, "(*IPCP).rxLoop") {
		t.Fatalf("the fault is not in the receive goroutine:\n%s", f.Stack)
	}
	done := make(chan struct{})
	go func() { p.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop hangs after the receive goroutine faulted")
	}
}
