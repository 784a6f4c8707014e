//go:build linux && (amd64 || arm || arm64)

package udp

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// TestBatchSender: one SendBatch puts every packet on the wire, in order,
// each with its own payload and the flow's EID in its header, on IPv4 and
// IPv6 sockets, allocating nothing; more packets than a sendmmsg(2) batch
// go out in several calls.
func TestBatchSender(t *testing.T) {
	for _, lo := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(lo, func(t *testing.T) {
			src, dst := listen(t, "udp", lo), listen(t, "udp", lo)
			defer src.Close()
			defer dst.Close()
			dst.SetReadBuffer(4 << 20)
			s := wire{p: &IPCP{dev: src}}.NewBatchSender()
			if s == nil {
				t.Fatal("no batch sender for a *net.UDPConn on Linux")
			}
			const n = engine.TxBatch + 5
			pkts := make([][]byte, n)
			for i := range pkts {
				pkts[i] = append(make([]byte, HeaderLen), fmt.Sprintf("sdu %d", i)...)
			}
			to := addrOf(dst)
			if k, err := s.SendBatch(pkts, to, 77); k != n || err != nil {
				t.Fatalf("SendBatch: %d, %v; want %d sent", k, err, n)
			}
			buf := make([]byte, 100)
			for i := range n {
				dst.SetReadDeadline(time.Now().Add(time.Second))
				k, from, err := dst.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				want := fmt.Sprintf("sdu %d", i)
				if got := buf[HeaderLen:k]; string(got) != want || Header(buf[:k]).EID() != 77 || from != addrOf(src) {
					t.Fatalf("datagram %d: %q eid %d from %v; want %q eid 77 from %v", i, got, Header(buf[:k]).EID(), from, want, addrOf(src))
				}
			}
			allocs := testing.AllocsPerRun(100, func() {
				if k, err := s.SendBatch(pkts[:engine.TxBatch], to, 77); k != engine.TxBatch || err != nil {
					t.Fatalf("SendBatch: %d, %v", k, err)
				}
				for range engine.TxBatch {
					dst.ReadFromUDPAddrPort(buf)
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per batch, want 0", allocs)
			}
		})
	}
}

// An IPv6 peer on an IPv4 socket cannot be named in a sockaddr_in: the
// batch falls back to the plain path, which reports the error.
func TestBatchSenderWrongFamily(t *testing.T) {
	src := listen(t, "udp4", "127.0.0.1:0")
	defer src.Close()
	s := wire{p: &IPCP{dev: src}}.NewBatchSender()
	pkts := [][]byte{bytes.Repeat([]byte{1}, HeaderLen+4)}
	if k, err := s.SendBatch(pkts, netip.MustParseAddrPort("[::1]:9"), 1); k != 0 || err == nil {
		t.Fatalf("SendBatch to IPv6 over IPv4: %d, %v; want 0 and an error", k, err)
	}
}

// TestFlowBatches: SDUs a program queues in batches cross the shim
// (transmit loop reading batches, sendmmsg) all, in order, and counted.
func TestFlowBatches(t *testing.T) {
	a, b := pair(t, "127.0.0.1:0", impair.Config{})
	client, server := dial(t, a, b, "srv")
	bp, ok := client.(flow.BatchPort)
	if !ok {
		t.Fatal("flowtest pipe is not a BatchPort")
	}
	const n = 200
	sdus := make([][]byte, n)
	for i := range sdus {
		sdus[i] = fmt.Appendf(nil, "sdu %d", i)
	}
	for off := 0; off < n; {
		k, err := bp.WriteBatch(sdus[off:min(off+50, n)], time.Now().Add(2*time.Second))
		if err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		off += k
	}
	buf := make([]byte, flow.MaxSDU)
	for i := range n {
		k, err := server.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || string(buf[:k]) != string(sdus[i]) {
			t.Fatalf("SDU %d: %q, %v; want %q", i, buf[:k], err, sdus[i])
		}
	}
	waitFor(t, func() bool { return a.ipcp.Stats().PacketsOut == n })
}

// TestBatchSenderGSO: a batch of equal-sized packets (the last shorter)
// goes as one UDP_SEGMENT send where the kernel has it, and still arrives
// as separate datagrams, in order, each with its own bytes and the EID;
// mixed sizes go through sendmmsg. Allocation-free either way.
func TestBatchSenderGSO(t *testing.T) {
	for _, lo := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(lo, func(t *testing.T) {
			src, dst := listen(t, "udp", lo), listen(t, "udp", lo)
			defer src.Close()
			defer dst.Close()
			dst.SetReadBuffer(4 << 20)
			s := wire{p: &IPCP{dev: src}}.NewBatchSender().(*batchSender)
			pkts := make([][]byte, engine.TxBatch)
			for i := range pkts {
				pkts[i] = append(make([]byte, HeaderLen), fmt.Sprintf("sdu %04d %s", i, bytes.Repeat([]byte{'x'}, 1000))...)
			}
			pkts[len(pkts)-1] = pkts[len(pkts)-1][:HeaderLen+8] // a shorter last
			to := addrOf(dst)
			if k, err := s.SendBatch(pkts, to, 9); k != len(pkts) || err != nil {
				t.Fatalf("SendBatch: %d, %v", k, err)
			}
			if !s.gso {
				t.Skip("this kernel has no UDP GSO: sendmmsg took the batch")
			}
			if s.gsoSends != 1 {
				t.Fatalf("%d GSO sends, want 1", s.gsoSends)
			}
			buf := make([]byte, 2000)
			for i, want := range pkts {
				dst.SetReadDeadline(time.Now().Add(time.Second))
				k, _, err := dst.ReadFromUDPAddrPort(buf)
				if err != nil || !bytes.Equal(buf[HeaderLen:k], want[HeaderLen:]) || Header(buf[:k]).EID() != 9 {
					t.Fatalf("datagram %d: %d bytes %q..., eid %d, %v; want %d bytes", i, k, buf[HeaderLen:min(k, HeaderLen+8)], Header(buf[:k]).EID(), err, len(want))
				}
			}
			allocs := testing.AllocsPerRun(50, func() {
				s.SendBatch(pkts, to, 9)
				for range pkts {
					dst.ReadFromUDPAddrPort(buf)
				}
			})
			if allocs != 0 || s.gsoSends != 52 {
				t.Errorf("%v allocations per GSO batch, %d GSO sends; want 0 and 52", allocs, s.gsoSends)
			}
		})
	}
}
