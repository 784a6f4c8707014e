package local

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t testing.TB) (*IPCP, *ipcptest.Upcalls) {
	t.Helper()
	up := ipcptest.NewUpcalls(64)
	p, err := New(Config{Layer: "local", Name: "node.local", Runner: layertest.Runner{}}, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if err := p.Register(context.Background(), "srv"); err != nil {
		t.Fatal(err)
	}
	return p, up
}

func dial(t testing.TB, p *IPCP, up *ipcptest.Upcalls) (client, server flow.Port) {
	t.Helper()
	app, ipcpEnd := flowtest.Pipe(64)
	if err := p.Alloc(context.Background(), ipcp.AllocReq{Dst: "srv", QoS: flow.Data()}, ipcpEnd); err != nil {
		t.Fatal(err)
	}
	acc := <-up.Accepted
	t.Cleanup(func() { app.Close(); acc.Port.Close() })
	return app, acc.Port
}

func roundTrip(t testing.TB, from, to flow.Port, msg string, buf []byte) {
	if err := from.Write([]byte(msg), time.Time{}); err != nil {
		t.Fatalf("write: %v", err)
	}
	n, err := to.Read(buf, time.Time{})
	if err != nil || string(buf[:n]) != msg {
		t.Fatalf("got %q, %v, want %q", buf[:n], err, msg)
	}
}

func TestSplice(t *testing.T) {
	p, up := setup(t)
	client, server := dial(t, p, up)
	buf := make([]byte, flow.MaxSDU)
	roundTrip(t, client, server, "ping", buf)
	roundTrip(t, server, client, "pong", buf)
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		// Counters move just after the SDU is handed over: wait.
		got := p.Flows()
		if len(got) == 1 && got[0].PacketsOut == 1 && got[0].PacketsIn == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got flows %+v, want one with a packet each way", got)
		}
	}
	// What was written before the close still arrives, then ErrClosed.
	client.Write([]byte("last"), time.Time{})
	client.Close()
	n, err := server.Read(buf, time.Now().Add(time.Second))
	if err != nil || string(buf[:n]) != "last" {
		t.Fatalf("got %q, %v, want last", buf[:n], err)
	}
	if _, err := server.Read(buf, time.Now().Add(time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	for deadline := time.Now().Add(time.Second); len(p.Flows()) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("flow not removed")
		}
	}
}

func TestErrors(t *testing.T) {
	p, up := setup(t)
	_, port := flowtest.Pipe(1)
	defer port.Close()
	if err := p.Alloc(context.Background(), ipcp.AllocReq{Dst: "nobody"}, port); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("alloc nobody: got %v, want ErrNotFound", err)
	}
	up.Refuse(flow.ErrRefused)
	if err := p.Alloc(context.Background(), ipcp.AllocReq{Dst: "srv"}, port); !errors.Is(err, flow.ErrRefused) {
		t.Errorf("alloc refused: got %v, want ErrRefused", err)
	}
	if err := p.Register(context.Background(), "srv"); !errors.Is(err, flow.ErrExists) {
		t.Errorf("register twice: got %v, want ErrExists", err)
	}
	if err := p.Unregister(context.Background(), "srv"); err != nil {
		t.Error(err)
	}
	if err := p.Query(context.Background(), "srv"); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("query after unregister: got %v, want ErrNotFound", err)
	}
	if _, err := New(Config{}, up); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("empty config: got %v, want ErrInvalid", err)
	}
	if _, err := New(Config{Layer: "local", Name: "n"}, up); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("no runner: got %v, want ErrInvalid", err)
	}
}

func TestStopCloses(t *testing.T) {
	p, up := setup(t)
	client, server := dial(t, p, up)
	p.Stop()
	buf := make([]byte, 8)
	for _, port := range []flow.Port{client, server} {
		if _, err := port.Read(buf, time.Now().Add(time.Second)); !errors.Is(err, flow.ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	}
}

func TestSpliceAllocs(t *testing.T) {
	p, up := setup(t)
	client, server := dial(t, p, up)
	buf := make([]byte, flow.MaxSDU)
	msg := make([]byte, 1000)
	for range 100 { // warm the pipes' buffer pools
		client.Write(msg, time.Time{})
		server.Read(buf, time.Time{})
	}
	allocs := testing.AllocsPerRun(1000, func() {
		client.Write(msg, time.Time{})
		server.Read(buf, time.Time{})
	})
	if allocs > 0.05 { // the splice and the pipes recycle everything
		t.Fatalf("got %v allocations per SDU, want 0", allocs)
	}
}

func BenchmarkSplice(b *testing.B) {
	p, up := setup(b)
	client, server := dial(b, p, up)
	buf := make([]byte, flow.MaxSDU)
	msg := make([]byte, 1400)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range b.N {
			server.Read(buf, time.Time{})
		}
	}()
	for range b.N {
		client.Write(msg, time.Time{})
	}
	<-done
}
