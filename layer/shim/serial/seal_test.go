package serial

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/serial/serialtest"
)

// tap is a Device that keeps a copy of every byte written (the line as a
// wiretap hears it).
type tap struct {
	*serialtest.End
	mu   sync.Mutex
	sent []byte
}

func (d *tap) Write(p []byte) (int, error) {
	d.mu.Lock()
	d.sent = append(d.sent, p...)
	d.mu.Unlock()
	return d.End.Write(p)
}

func (d *tap) heard() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.sent)
}

func newIdentity(t *testing.T) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSealedFlowOverSerial: a sealed flow over the serial shim (the
// engine's exchange and sealing, as on udp and eth): the allocating side
// learns the peer's verified key, the acceptor is asked for a sealed
// flow from the requester, the SDUs arrive, and no SDU crosses the line
// in clear (the same flow unsealed shows them on the tap: the check's
// power). A shim that must seal refuses an unsealed request; one without
// a signer refuses a sealed one.
func TestSealedFlowOverSerial(t *testing.T) {
	secret := bytes.Repeat([]byte("line secret "), 20)
	run := func(t *testing.T, sealed bool) (heard []byte) {
		ida, idb := newIdentity(t), newIdentity(t)
		_, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
		ta := &tap{End: ea}
		a := start(t, "a", ta, Config{Signer: ida})
		b := start(t, "b", eb, Config{Signer: idb})
		if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
			t.Fatal(err)
		}
		waitUp(t, a, b)
		app, end := flowtest.Pipe(64)
		q := flow.BestEffort()
		q.Sealed = sealed
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := a.ipcp.AllocPeer(ctx, ipcp.AllocReq{ID: 1, Dst: "srv", QoS: q}, end)
		if err != nil {
			t.Fatalf("alloc: %v; a %+v; b %+v", err, a.ipcp.Stats(), b.ipcp.Stats())
		}
		t.Cleanup(func() { app.Close() })
		var acc ipcptest.Accepted
		select {
		case acc = <-b.up.Accepted:
			t.Cleanup(func() { acc.Port.Close() })
		case <-ctx.Done():
			t.Fatal("no flow accepted")
		}
		if sealed {
			if res.Peer == nil || !bytes.Equal(res.Peer.Key, idb.Public()) {
				t.Fatalf("allocating side's peer %+v, want b's key", res.Peer)
			}
			if !acc.Req.QoS.Sealed || acc.Req.Peer == nil || !bytes.Equal(acc.Req.Peer.Key, ida.Public()) {
				t.Fatalf("accepted %+v, want sealed from a", acc.Req)
			}
		}
		for range 3 {
			roundTrip(t, app, acc.Port, secret)
		}
		return ta.heard()
	}
	if !bytes.Contains(run(t, false), secret) {
		t.Fatal("an unsealed flow's SDU is not on the line: the check below could not see one either")
	}
	if bytes.Contains(run(t, true), secret) {
		t.Fatal("a sealed flow's SDU crossed the line in clear")
	}

	t.Run("refusals", func(t *testing.T) {
		_, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
		a := start(t, "a", ea, Config{})                                   // no signer
		b := start(t, "b", eb, Config{Signer: newIdentity(t), Seal: true}) // seals every flow
		if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
			t.Fatal(err)
		}
		waitUp(t, a, b)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, end := flowtest.Pipe(4)
		if err := a.ipcp.Alloc(ctx, ipcp.AllocReq{ID: 1, Dst: "srv", QoS: flow.BestEffort()}, end); !errors.Is(err, flow.ErrRefused) {
			t.Errorf("unsealed request to a shim that seals every flow: %v, want refused", err)
		}
		q := flow.BestEffort()
		q.Sealed = true
		_, end2 := flowtest.Pipe(4)
		if err := a.ipcp.Alloc(ctx, ipcp.AllocReq{ID: 2, Dst: "srv", QoS: q}, end2); !errors.Is(err, flow.ErrRefused) {
			t.Errorf("sealed request from a shim without a signer: %v, want refused", err)
		}
	})
}

// TestAddStatsEveryCounter: the sessions' counters are summed field by
// field; a counter added to shim.Stats and not to addStats would read 0
// here (the sealed flows' counters once did).
func TestAddStatsEveryCounter(t *testing.T) {
	var one shim.Stats
	setAll(reflect.ValueOf(&one).Elem())
	if got := addStats(shim.Stats{}, one); got != one {
		t.Fatalf("addStats dropped counters:\ngot  %+v\nwant %+v", got, one)
	}
}

// setAll sets every unsigned integer field of v, nested structs too, to 1.
func setAll(v reflect.Value) {
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.Uint64, reflect.Uint32, reflect.Uint:
			f.SetUint(1)
		case reflect.Struct:
			setAll(f)
		}
	}
}
