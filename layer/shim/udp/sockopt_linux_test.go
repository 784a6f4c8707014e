//go:build linux

package udp

import (
	"os"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
)

// TestSocketDrops: datagrams the kernel drops at a socket whose receive
// buffer is full are counted: nobody reads a socket with the smallest
// buffer while 200 datagrams arrive; what can then be read and what the
// kernel counts as dropped add up to what was sent, and some were dropped.
func TestSocketDrops(t *testing.T) {
	c := listen(t, "udp", "127.0.0.1:0")
	defer c.Close()
	s, got, err := tuneSocket(c, Config{RecvBuffer: 1, SendBuffer: -1})
	if err != nil {
		t.Fatal(err)
	}
	if s == nil || got.Recv <= 0 {
		t.Fatalf("no socket for a *net.UDPConn (buffers %+v)", got)
	}
	if n, ok := s.drops(); !ok || n != 0 {
		t.Fatalf("a new socket: drops %d, ok %v; want 0, true", n, ok)
	}
	r := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r.c.Close()
	const sent = 200
	payload := make([]byte, 1000)
	for range sent {
		r.send(addrOf(c), 7, payload)
	}
	read := 0
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		read++
	}
	dropped, ok := s.drops()
	if !ok {
		t.Fatal("SO_MEMINFO gave no drop count")
	}
	t.Logf("receive buffer %d bytes: %d of %d datagrams read, %d dropped by the kernel", got.Recv, read, sent, dropped)
	if dropped == 0 || uint64(read)+dropped != sent {
		t.Fatalf("read %d + dropped %d, want some dropped and %d in all", read, dropped, sent)
	}
}

// TestSocketBuffers: the shim asks for DefaultSocketBuffer unless told
// otherwise, and a negative size leaves the kernel's default. As root
// (SO_RCVBUFFORCE) the size is granted whatever net.core.rmem_max says;
// the kernel reports twice what was asked.
func TestSocketBuffers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the kernel caps the buffers at net.core.rmem_max/wmem_max")
	}
	kernelDefault := func() bufSizes {
		c := listen(t, "udp", "127.0.0.1:0")
		defer c.Close()
		_, got, err := tuneSocket(c, Config{RecvBuffer: -1, SendBuffer: -1})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}()
	for _, tc := range []struct {
		name       string
		recv, send int
		want       bufSizes
	}{
		{"default", 0, 0, bufSizes{2 * DefaultSocketBuffer, kernelDefault.Send}},
		{"set", 1 << 20, 512 << 10, bufSizes{2 << 20, 1 << 20}},
		{"kernel's", -1, -1, kernelDefault},
	} {
		c := listen(t, "udp", "127.0.0.1:0")
		_, got, err := tuneSocket(c, Config{RecvBuffer: tc.recv, SendBuffer: tc.send})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: buffers %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestStatsSocketOverflow: the shim's Stats report the kernel's drops at
// its socket. A shim with the smallest receive buffer is flooded with
// datagrams for no flow: every one is either counted by the shim
// (unknown flow) or dropped by the kernel before it (socket overflow),
// and with a buffer of two datagrams some are.
func TestStatsSocketOverflow(t *testing.T) {
	c := listen(t, "udp", "127.0.0.1:0")
	p, err := New(Config{Layer: "l", Name: "n", Device: c, RecvBuffer: 1, Runner: &layertest.Recorder{}}, ipcptest.NewUpcalls(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	r := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r.c.Close()
	const sent = 20000
	payload := make([]byte, 1000)
	for range sent {
		r.send(addrOf(c), 7, payload)
	}
	var st, last uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s := p.Stats()
		st = s.Drops.UnknownFlow + s.Drops.SocketOverflow
		if st == sent || st == last && st != 0 {
			break
		}
		last = st
	}
	s := p.Stats()
	t.Logf("%d sent: %d counted by the shim, %d dropped at the socket", sent, s.Drops.UnknownFlow, s.Drops.SocketOverflow)
	if s.Drops.SocketOverflow == 0 {
		t.Fatalf("no socket overflow reported: %+v", s.Drops)
	}
	if s.Drops.UnknownFlow+s.Drops.SocketOverflow != sent {
		t.Fatalf("unknown flow %d + socket overflow %d, want %d", s.Drops.UnknownFlow, s.Drops.SocketOverflow, sent)
	}
}
