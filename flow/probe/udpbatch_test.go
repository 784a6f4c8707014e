//go:build !tamago

package probe

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestUDPWriteBatch: one WriteBatch sends every datagram, each with its
// own bytes, in order.
func TestUDPWriteBatch(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
			if err != nil {
				t.Skipf("no UDP on %s: %v", host, err)
			}
			defer pc.Close()
			port, err := DialUDP(pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer port.Close()
			bs := [][]byte{[]byte("one"), []byte("two two"), []byte("three three three")}
			n, err := port.WriteBatch(bs, time.Now().Add(time.Second))
			if n != len(bs) || err != nil {
				t.Fatalf("WriteBatch: %d, %v; want %d sent", n, err, len(bs))
			}
			buf := make([]byte, 100)
			for _, want := range bs {
				pc.SetReadDeadline(time.Now().Add(time.Second))
				k, _, err := pc.ReadFromUDP(buf)
				if err != nil || !bytes.Equal(buf[:k], want) {
					t.Fatalf("read %q, %v; want %q", buf[:k], err, want)
				}
			}
		})
	}
}

// countingPort counts how a perf client uses a UDPPort.
type countingPort struct {
	*UDPPort
	writes, batches int
}

func (p *countingPort) Write(b []byte, d time.Time) error { p.writes++; return p.UDPPort.Write(b, d) }
func (p *countingPort) WriteBatch(bs [][]byte, d time.Time) (int, error) {
	p.batches++
	return p.UDPPort.WriteBatch(bs, d)
}

// TestUDPPerfFloodBatches: a flood goes out in batches and the batched
// server counts it in order, per peer, with no more than was sent; a
// paced run stays one datagram per write.
func TestUDPPerfFloodBatches(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no UDP on loopback: %v", err)
	}
	defer pc.Close()
	pc.SetReadBuffer(4 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeUDP(ctx, pc, true, nil) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeUDP: %v", err)
		}
	}()
	for _, rate := range []float64{0, 2000} {
		t.Run(fmt.Sprintf("rate=%g", rate), func(t *testing.T) {
			u, err := DialUDP(pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			p := &countingPort{UDPPort: u}
			res, err := PerfClient(context.Background(), p, PerfConfig{Duration: 100 * time.Millisecond, Size: 200, Rate: rate})
			if err != nil || !res.HaveServer {
				t.Fatalf("perf: %+v, %v; want a server report", res, err)
			}
			if res.Server.SDUs == 0 || res.Server.SDUs > res.Sent || res.Server.Bytes != res.Server.SDUs*200 {
				t.Errorf("server counted %d SDUs, %d bytes of %d sent", res.Server.SDUs, res.Server.Bytes, res.Sent)
			}
			if res.Server.Reordered != 0 {
				t.Errorf("%d reordered over loopback", res.Server.Reordered)
			}
			if rate == 0 && (p.batches == 0 || res.Sent < uint64(2*p.batches)) {
				t.Errorf("flood: %d SDUs in %d batches, %d writes; want several SDUs per batch", res.Sent, p.batches, p.writes)
			}
			if rate > 0 && p.batches != 0 {
				t.Errorf("paced: %d batches; want single writes", p.batches)
			}
		})
	}
}

// TestUDPGSORun: with runs on ($OURO_UDP_RUNS=1), a batch of
// equal-sized datagrams (the last shorter) goes out as one run (UDP GSO
// on Linux) and the server, whose socket takes runs whole (UDP GRO),
// still answers each datagram on its own, in order.
func TestUDPGSORun(t *testing.T) {
	t.Setenv("OURO_UDP_RUNS", "1")
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no UDP on loopback: %v", err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeUDP(ctx, pc, false, nil) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeUDP: %v", err)
		}
	}()
	port, err := DialUDP(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	// The server is reading (its socket set up) once it answers.
	buf := make([]byte, readBufSize)
	if err := port.Write([]byte("ready?"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := port.Read(buf, time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	var bs [][]byte
	for i := range 6 {
		n := 100
		if i == 5 {
			n = 40
		}
		bs = append(bs, bytes.Repeat([]byte{byte('a' + i)}, n))
	}
	if n, err := port.WriteBatch(bs, time.Now().Add(time.Second)); n != len(bs) || err != nil {
		t.Fatalf("WriteBatch: %d, %v", n, err)
	}
	if port.noGSO {
		t.Log("this kernel refused the GSO send: sent with sendmmsg")
	}
	for _, want := range bs {
		k, err := port.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || !bytes.Equal(buf[:k], want) {
			t.Fatalf("echo %q (%d bytes), %v; want %d bytes of %q", buf[:min(k, 8)], k, err, len(want), want[:1])
		}
	}
}
