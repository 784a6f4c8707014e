//go:build linux && (amd64 || arm || arm64)

package udp

import (
	"bytes"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"

	"golang.org/x/sys/unix"
)

// TestBatchReader: recvmmsg returns several datagrams with their sources,
// IPv4 and IPv6, and allocates nothing per read.
func TestBatchReader(t *testing.T) {
	for _, loopback := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(loopback, func(t *testing.T) {
			rx, tx := listen(t, "udp", loopback), listen(t, "udp", loopback)
			defer rx.Close()
			defer tx.Close()
			br := newBatchReader(rx, HeaderLen+flow.MaxSDU+64)
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

// sendGSO sends run as datagrams of seg bytes (the last may be shorter)
// in one sendmsg(2) with UDP_SEGMENT, as the shim's batch sender does.
func sendGSO(t *testing.T, c *net.UDPConn, to netip.AddrPort, run []byte, seg int) {
	t.Helper()
	oob := make([]byte, syscall.CmsgSpace(2))
	cm := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
	cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	cm.SetLen(syscall.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[syscall.CmsgLen(0)])) = uint16(seg)
	if _, _, err := c.WriteMsgUDPAddrPort(run, oob, to); err != nil {
		t.Fatalf("GSO send: %v", err)
	}
}

// TestBatchReaderGRO: on a socket with UDP_GRO a GSO run arrives whole,
// with its segment size, and a lone datagram with none; reading
// allocates nothing (the one allocation a round is the test's send).
func TestBatchReaderGRO(t *testing.T) {
	rx, tx := listen(t, "udp", "127.0.0.1:0"), listen(t, "udp", "127.0.0.1:0")
	defer rx.Close()
	defer tx.Close()
	br := newBatchReader(rx, HeaderLen+flow.MaxSDU+64)
	if !br.gro {
		t.Skip("SKIP: this kernel refuses UDP_GRO")
	}
	run := make([]byte, 3*100+40)
	for i := range run {
		run[i] = byte(i / 100)
	}
	sendGSO(t, tx, addrOf(rx), run, 100)
	n, err := br.read()
	if err != nil || n != 1 {
		t.Fatalf("read = %d, %v; want the run as one datagram", n, err)
	}
	if br.length(0) != len(run) || br.segment(0) != 100 || !bytes.Equal(br.bufs[0][:len(run)], run) {
		t.Fatalf("got %d bytes of %d-byte segments, want %d of 100", br.length(0), br.segment(0), len(run))
	}
	// Alone, a datagram has no segment size.
	tx.WriteToUDPAddrPort([]byte{1, 2, 3}, addrOf(rx))
	if n, err := br.read(); err != nil || n != 1 || br.length(0) != 3 || br.segment(0) != 0 {
		t.Fatalf("a lone datagram: %d, %v, %d bytes, segment %d", n, err, br.length(0), br.segment(0))
	}
	allocs := testing.AllocsPerRun(100, func() {
		sendGSO(t, tx, addrOf(rx), run, 100)
		if n, err := br.read(); err != nil || n != 1 || br.segment(0) != 100 {
			t.Fatalf("read: %d, %v", n, err)
		}
	})
	if allocs > 1 { // sendGSO's own WriteMsgUDPAddrPort may allocate; the read must not
		t.Fatalf("got %v allocations per GSO send and GRO read", allocs)
	}
}

// TestGROSplit: the shim cuts a coalesced run into its datagrams, each
// with its own header: a flow's SDUs arrive one by one and in order, and
// a malformed datagram in the run is counted and dropped alone.
func TestGROSplit(t *testing.T) {
	_, b := pair(t, "127.0.0.1:0", impair.Config{})
	r := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r.c.Close()
	h := layer.HashName(layer.SHA3_256, "srv")
	r.sendMsg(b.addr, &engine.Msg{Type: engine.MsgAllocReq, ReqID: 1, Src: 7, Hash: h[:]})
	resp := r.recvMsg()
	acc := <-b.up.Accepted
	defer acc.Port.Close()
	pkt := func(eid uint32, payload string) []byte {
		p := append(make([]byte, HeaderLen), payload...)
		Header(p).SetEID(eid)
		return p
	}
	var run []byte
	for _, sdu := range []string{"sdu-0", "sdu-1", "sdu-2", "sdu"} { // the last one shorter
		run = append(run, pkt(resp.Src, sdu)...)
	}
	sendGSO(t, r.c, b.addr, run, HeaderLen+5)
	buf := make([]byte, 64)
	for _, want := range []string{"sdu-0", "sdu-1", "sdu-2", "sdu"} {
		n, err := acc.Port.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
	// The last datagram of a run is too short for a header.
	before := b.ipcp.Stats().Drops.Malformed
	run = append(append(pkt(resp.Src, "sdu-4"), pkt(resp.Src, "sdu-6")...), 0, 0)
	sendGSO(t, r.c, b.addr, run, HeaderLen+5)
	for _, want := range []string{"sdu-4", "sdu-6"} {
		n, err := acc.Port.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
	if got := b.ipcp.Stats().Drops.Malformed - before; got != 1 {
		t.Fatalf("malformed %d, want 1", got)
	}
}
