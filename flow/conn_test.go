package flow_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
)

// clients returns a client and a server program on one fake broker.
func clients(t *testing.T) (client, server *flow.Client) {
	t.Helper()
	b := flowtest.NewBroker(128)
	sb := b.Program("server")
	client, server = flow.NewClient(b, flow.WithFRCT(fastFRCT)), flow.NewClient(sb, flow.WithFRCT(fastFRCT))
	t.Cleanup(func() {
		client.Close()
		server.Close()
		b.Close()
		sb.Close()
	})
	return client, server
}

func TestClientAllocAccept(t *testing.T) {
	client, server := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Alloc(ctx, "echo", flow.Data()); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("Alloc to an unbound name = %v, want ErrNotFound", err)
	}
	if err := server.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	cf, err := client.Alloc(ctx, "echo", flow.Voice())
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	sf, err := server.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if sf.Info().QoS != flow.Voice() || sf.Info().Local != "echo" || cf.Info().Remote != "echo" {
		t.Fatalf("infos: %+v, %+v", cf.Info(), sf.Info())
	}
	cf.Write([]byte("ping"))
	buf := make([]byte, 16)
	sf.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := sf.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if err := server.Unbind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer acancel()
	if _, err := server.Accept(actx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept with nothing coming = %v, want DeadlineExceeded", err)
	}
}

func TestClientJoin(t *testing.T) {
	client, server := clients(t)
	ctx := context.Background()
	var members []*flow.Flow
	for _, c := range []*flow.Client{client, server, client} {
		f, err := c.Join(ctx, "bcast")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		members = append(members, f)
	}
	members[0].Write([]byte("to all"))
	buf := make([]byte, 16)
	for i, m := range members[1:] {
		m.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := m.Read(buf); err != nil || string(buf[:n]) != "to all" {
			t.Fatalf("member %d Read = %q, %v", i+1, buf[:n], err)
		}
	}
	if _, err := client.Join(ctx, ""); !errors.Is(err, flow.ErrNoLayer) {
		t.Fatalf("Join(\"\") = %v, want ErrNoLayer", err)
	}
}

func TestStream(t *testing.T) {
	client, server := clients(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := server.Listen("stream")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Addr().String() != "stream" || l.Addr().Network() != "ouro" {
		t.Fatalf("listener Addr() = %v", l.Addr())
	}
	if _, err := server.Listen("stream"); !errors.Is(err, flow.ErrExists) {
		t.Fatalf("second Listen = %v, want ErrExists", err)
	}
	c, err := client.Dial(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	// A write of many SDUs' worth arrives as the same bytes, whatever the
	// reader's buffer size.
	data := make([]byte, 100_000)
	rand.NewChaCha8([32]byte{1}).Read(data)
	go func() {
		c.Write(data)
		c.Write(nil)
		c.Close()
	}()
	var got bytes.Buffer
	buf := make([]byte, 333) // smaller than an SDU: reads split SDUs
	for {
		n, err := sc.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", got.Len(), err)
		}
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("stream carried %d bytes, want the %d written", got.Len(), len(data))
	}
	if ra := sc.RemoteAddr().String(); ra != "client@"+flowtest.Layer {
		t.Fatalf("RemoteAddr() = %q", ra)
	}
}

func TestListenerClose(t *testing.T) {
	client, server := clients(t)
	l, err := server.Listen("svc")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(20 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept across Close = %v, want net.ErrClosed", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := client.Dial(ctx, "svc"); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("Dial after the listener closed = %v, want ErrNotFound", err)
	}
}

// TestHTTP serves net/http over a flow listener and fetches a 1 MB body,
// and uploads one, with an http.Client dialling flows.
func TestHTTP(t *testing.T) {
	client, server := clients(t)
	flowtest.TestHTTP(t, client, server, "web")
}
