//go:build linux && (amd64 || arm || arm64)

package udp

import (
	"net/netip"
	"testing"
)

// TestBatchReader: recvmmsg returns several datagrams with their sources,
// IPv4 and IPv6, and allocates nothing per read.
func TestBatchReader(t *testing.T) {
	for _, loopback := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(loopback, func(t *testing.T) {
			rx, tx := listen(t, "udp", loopback), listen(t, "udp", loopback)
			defer rx.Close()
			defer tx.Close()
			br := newBatchReader(rx, maxDatagram)
			if br == nil {
				t.Fatal("no batch reader for a *net.UDPConn")
			}
			to, from := addrOf(rx), addrOf(tx)
			for i := range 3 {
				tx.WriteToUDPAddrPort([]byte{byte(i), 1, 2}, to)
			}
			got := 0
			for got < 3 {
				n, err := br.read()
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					if a := br.addr(i); a != from || br.length(i) != 3 || br.bufs[i][0] != byte(got) {
						t.Fatalf("datagram %d: got %v %x, want %v %d", got, a, br.bufs[i][:br.length(i)], from, got)
					}
					got++
				}
			}
			pkt := []byte{9}
			var sink netip.AddrPort
			allocs := testing.AllocsPerRun(200, func() {
				tx.WriteToUDPAddrPort(pkt, to)
				if n, err := br.read(); err != nil || n < 1 {
					t.Fatalf("read: %d, %v", n, err)
				}
				sink = br.addr(0)
			})
			if allocs != 0 {
				t.Fatalf("got %v allocations per batch read, want 0", allocs)
			}
			_ = sink
		})
	}
}
