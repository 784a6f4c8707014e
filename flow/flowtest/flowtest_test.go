package flowtest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPipeConformance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity int
	}{{"cap1", 1}, {"cap4", 4}, {"cap64", 64}} {
		t.Run(tc.name, func(t *testing.T) {
			flowtest.TestPort(t, func() (flow.Port, flow.Port) { return flowtest.Pipe(tc.capacity) })
		})
	}
}

func TestPipeTimeoutIsNetError(t *testing.T) {
	a, b := flowtest.Pipe(1)
	defer a.Close()
	defer b.Close()
	_, err := a.Read(make([]byte, 1), time.Now().Add(time.Millisecond))
	if !flowtest.IsTimeout(err) {
		t.Fatalf("Read timeout = %v, want an error wrapping ErrTimeout with Timeout() true", err)
	}
}

func TestPipeWriteToClosedPeer(t *testing.T) {
	a, b := flowtest.Pipe(4)
	defer a.Close()
	b.Close()
	if err := a.Write([]byte("x"), time.Time{}); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Write to a closed peer = %v, want ErrClosed", err)
	}
}

func TestPipeZeroAllocs(t *testing.T) {
	a, b := flowtest.Pipe(8)
	defer a.Close()
	defer b.Close()
	msg := make([]byte, 1000)
	buf := make([]byte, flow.MaxSDU)
	// Warm the free list.
	a.Write(msg, time.Time{})
	b.Read(buf, time.Time{})
	allocs := testing.AllocsPerRun(1000, func() {
		a.Write(msg, time.Time{})
		b.Read(buf, time.Time{})
	})
	if allocs != 0 {
		t.Fatalf("Write+Read allocates %v times per SDU, want 0", allocs)
	}
}

// TestPipeBatch: Pipe is a flow.BatchPort that passes TestBatchPort.
func TestPipeBatch(t *testing.T) {
	flowtest.TestBatchPort(t, func() (flow.BatchPort, flow.BatchPort) {
		a, b := flowtest.Pipe(16)
		return a.(flow.BatchPort), b.(flow.BatchPort)
	})
}

func TestBrokerAllocAccept(t *testing.T) {
	ctx := context.Background()
	client := flowtest.NewBroker(8)
	server := client.Program("server")
	defer client.Close()
	defer server.Close()

	if _, _, err := client.Alloc(ctx, "echo", flow.Data()); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("Alloc to an unbound name = %v, want ErrNotFound", err)
	}
	if err := server.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if err := client.Bind(ctx, "echo"); !errors.Is(err, flow.ErrExists) {
		t.Fatalf("second Bind = %v, want ErrExists", err)
	}
	cp, ci, err := client.Alloc(ctx, "echo", flow.Data())
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	sp, si, err := server.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if ci.Remote != "echo" || ci.Local != "client" || si.Local != "echo" || si.Remote != "client" || si.QoS != flow.Data() {
		t.Fatalf("infos: alloc %+v, accept %+v", ci, si)
	}
	cp.Write([]byte("hi"), time.Time{})
	buf := make([]byte, 8)
	if n, err := sp.Read(buf, time.Time{}); err != nil || !bytes.Equal(buf[:n], []byte("hi")) {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}

	if err := server.Unbind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Alloc(ctx, "echo", flow.Data()); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("Alloc after Unbind = %v, want ErrNotFound", err)
	}
	server.Close()
	if _, _, err := server.Accept(ctx); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want ErrClosed", err)
	}
}

func TestBrokerJoin(t *testing.T) {
	ctx := context.Background()
	b := flowtest.NewBroker(8)
	defer b.Close()
	var ports []flow.Port
	for i := 0; i < 3; i++ {
		p, _, err := b.Program("m").Join(ctx, "bcast")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ports = append(ports, p)
	}
	if err := ports[0].Write([]byte("all"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	for _, p := range ports[1:] {
		n, err := p.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || string(buf[:n]) != "all" {
			t.Fatalf("member Read = %q, %v; want all", buf[:n], err)
		}
	}
	if _, err := ports[0].Read(buf, time.Now().Add(20*time.Millisecond)); !errors.Is(err, flow.ErrTimeout) {
		t.Fatalf("sender got its own SDU back: %v", err)
	}
	if _, _, err := b.Join(ctx, ""); !errors.Is(err, flow.ErrNoLayer) {
		t.Fatalf("Join(\"\") = %v, want ErrNoLayer", err)
	}
}
