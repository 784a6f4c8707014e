package ipnet

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"github.com/ouronet/ouro/flow"
)

// inNetns runs f on a thread in the network namespace ns (sockets and
// interfaces f makes belong to it); the thread ends with f.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	if err := enterNetns(ns, f); err != nil {
		t.Fatal(err)
	}
}

// enterNetns is inNetns reporting a failed setns as an error.
func enterNetns(ns string, f func()) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := os.Open("/run/netns/" + ns)
		if err == nil {
			err = unix.Setns(int(h.Fd()), unix.CLONE_NEWNET)
			h.Close()
		}
		if err != nil {
			done <- err
			return
		}
		defer func() { done <- nil }()
		f()
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	return nil
}

// newNetns makes a network namespace for the test (prefix and the
// test's pid), without IPv6 (no chatter on a TUN), removed at its end.
func newNetns(t *testing.T, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1").Run()
	return ns
}

// ip4 builds an IPv4 packet of protocol proto from src to dst around
// l4 (a UDP or TCP header and payload), with both checksums.
func ip4(proto byte, src, dst [4]byte, id uint16, l4 []byte) []byte {
	p := make([]byte, 20+len(l4))
	p[0], p[8], p[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	p[6] = 0x40 // DF
	copy(p[12:], src[:])
	copy(p[16:], dst[:])
	binary.BigEndian.PutUint16(p[10:], ^checksum.Checksum(p[:20], 0))
	copy(p[20:], l4)
	var ph [12]byte
	copy(ph[0:], src[:])
	copy(ph[4:], dst[:])
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], uint16(len(l4)))
	at := 20 + 6 // UDP's checksum
	if proto == unix.IPPROTO_TCP {
		at = 20 + 16
	}
	binary.BigEndian.PutUint16(p[at:], ^checksum.Checksum(p[20:], checksum.Checksum(ph[:], 0)))
	return p
}

// rxPackets is the interface's count of packets the host received from
// the TUN (a coalesced super-packet counts once).
func rxPackets(t *testing.T, ns, dev string) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "-s", "link", "show", dev).Output()
	if err != nil {
		t.Fatalf("ip -s link: %v", err)
	}
	var links []struct {
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link: %v: %s", err, out)
	}
	return links[0].Stats.RX.Packets
}

// TestTUNOffload (root): a TUN opened with offloads reads a socket's
// UDP_SEGMENT send as its datagrams, one per ReadSuper (it takes TCP's
// offloads only: the kernel segments UDP), each with valid checksums
// (completed where the kernel left them partial) and its part of the
// payload; and writing a batch
// of consecutive segments of one UDP flow, then of one TCP flow, hands
// the host fewer packets than were written (coalesced), the UDP ones
// arriving whole and in order at the socket they were sent to.
func TestTUNOffload(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (a network namespace and a TUN)")
	}
	ns := newNetns(t, "ouro-tun")

	var tun *TUN
	var err error
	inNetns(t, ns, func() { tun, err = OpenTUN("otun0", 1400) })
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if !tun.Offload || tun.MTU() != 1400 || tun.Headroom() != vnetHdrLen {
		t.Fatalf("tun: offload %v, MTU %d, headroom %d; want offloads, 1400, %d", tun.Offload, tun.MTU(), tun.Headroom(), vnetHdrLen)
	}
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", "10.66.0.1/24", "dev", "otun0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v %s", err, out)
	}
	local, far := [4]byte{10, 66, 0, 1}, [4]byte{10, 66, 0, 2}

	// Read: 10 datagrams of 1000 bytes in one UDP_SEGMENT send.
	var conn *net.UDPConn
	inNetns(t, ns, func() { conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IP(local[:])}) })
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := make([]byte, 10*1000)
	for i := range payload {
		payload[i] = byte(i / 1000 * 7)
	}
	oob := make([]byte, unix.CmsgSpace(2)) // UDP_SEGMENT: 1000 bytes a datagram
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], 1000)
	if _, _, err := conn.WriteMsgUDP(payload, oob, &net.UDPAddr{IP: net.IP(far[:]), Port: 9999}); err != nil {
		t.Fatalf("UDP_SEGMENT send: %v", err)
	}
	rb0 := make([]byte, MaxPacket)
	var got [][]byte
	for len(got) < 10 {
		n, mss, err := tun.ReadSuper(rb0)
		if err != nil {
			t.Fatal(err)
		}
		if mss != 0 {
			t.Fatalf("a UDP super-packet read (mss %d): the TUN should take TCP's offloads only", mss)
		}
		p := rb0[:n]
		if len(p) >= 28 && p[9] == unix.IPPROTO_UDP && binary.BigEndian.Uint16(p[22:]) == 9999 {
			got = append(got, bytes.Clone(p))
		}
	}
	for i, p := range got {
		if len(p) != 1028 || !bytes.Equal(p[28:], payload[i*1000:(i+1)*1000]) {
			t.Fatalf("datagram %d: %d bytes, payload %x...", i, len(p), p[28:32])
		}
		var ph [12]byte
		copy(ph[0:], p[12:20])
		ph[9] = unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(ph[10:], uint16(len(p)-20))
		if checksum.Checksum(p[:20], 0) != 0xffff || checksum.Checksum(p[20:], checksum.Checksum(ph[:], 0)) != 0xffff {
			t.Fatalf("datagram %d: checksums do not verify", i)
		}
	}

	// Write: 10 UDP segments of one flow to conn, then 10 TCP segments.
	port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	write := func(pkts [][]byte) {
		t.Helper()
		var out [][]byte
		for _, p := range pkts {
			b := make([]byte, vnetHdrLen, vnetHdrLen+MaxPacket)
			out = append(out, append(b, p...))
		}
		if n, err := tun.WriteBatch(out); n != len(pkts) || err != nil {
			t.Fatalf("WriteBatch: %d, %v", n, err)
		}
	}
	before := rxPackets(t, ns, "otun0")
	var pkts [][]byte
	for i := range 10 {
		l4 := make([]byte, 8+1000)
		binary.BigEndian.PutUint16(l4[0:], 7777)
		binary.BigEndian.PutUint16(l4[2:], port)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		for j := range 1000 {
			l4[8+j] = byte(i + j)
		}
		pkts = append(pkts, ip4(unix.IPPROTO_UDP, far, local, uint16(100+i), l4))
	}
	write(pkts)
	rb := make([]byte, 2000)
	for i := range 10 {
		n, err := conn.Read(rb)
		if err != nil || !bytes.Equal(rb[:n], pkts[i][28:]) {
			t.Fatalf("datagram %d at the socket: %d bytes, %v", i, n, err)
		}
	}
	udpRx := rxPackets(t, ns, "otun0") - before
	before += udpRx
	pkts = pkts[:0]
	for i := range 10 {
		l4 := make([]byte, 20+1000)
		binary.BigEndian.PutUint16(l4[0:], 7777)
		binary.BigEndian.PutUint16(l4[2:], 7) // nobody listens: the host answers with a reset
		binary.BigEndian.PutUint32(l4[4:], uint32(1000+1000*i))
		binary.BigEndian.PutUint32(l4[8:], 1)
		l4[12], l4[13] = 5<<4, 0x10 // ACK
		binary.BigEndian.PutUint16(l4[14:], 65535)
		pkts = append(pkts, ip4(unix.IPPROTO_TCP, far, local, uint16(200+i), l4))
	}
	write(pkts)
	tcpRx := rxPackets(t, ns, "otun0") - before
	t.Logf("10 UDP segments written reached the host as %d packets, 10 TCP segments as %d", udpRx, tcpRx)
	if tcpRx >= 10 || udpRx >= 10 {
		t.Errorf("not coalesced: 10 UDP segments as %d packets, 10 TCP as %d", udpRx, tcpRx)
	}
}

// tcpSeg builds a TCP segment from src:sport to dst:dport (IPv4 or
// IPv6 by the addresses; seq, ack, flags; an MSS option where mss > 0)
// around payload, checksums complete.
func tcpSeg(src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags byte, mss int, payload []byte) []byte {
	hl := 20
	if mss > 0 {
		hl = 24
	}
	l4 := make([]byte, hl+len(payload))
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], seq)
	binary.BigEndian.PutUint32(l4[8:], ack)
	l4[12], l4[13] = byte(hl/4)<<4, flags
	binary.BigEndian.PutUint16(l4[14:], 65535)
	if mss > 0 {
		l4[20], l4[21] = 2, 4
		binary.BigEndian.PutUint16(l4[22:], uint16(mss))
	}
	copy(l4[hl:], payload)
	if src.Is4() {
		return ip4(unix.IPPROTO_TCP, src.As4(), dst.As4(), 1, l4)
	}
	p := make([]byte, 40+len(l4))
	p[0], p[6], p[7] = 0x60, unix.IPPROTO_TCP, 64
	binary.BigEndian.PutUint16(p[4:], uint16(len(l4)))
	a, b := src.As16(), dst.As16()
	copy(p[8:], a[:])
	copy(p[24:], b[:])
	copy(p[40:], l4)
	var ph [40]byte
	copy(ph[0:], a[:])
	copy(ph[16:], b[:])
	binary.BigEndian.PutUint32(ph[32:], uint32(len(l4)))
	ph[39] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(p[40+16:], ^checksum.Checksum(p[40:], checksum.Checksum(ph[:], 0)))
	return p
}

// TestTUNSuper (root): the host's TCP hands a TUN with offloads a
// super-packet (TSO: several segments of the connection's MSS in one
// read), which ReadSuper returns whole with that MSS; and a super-packet
// written with WriteSuper reaches an accepted socket as its segments'
// bytes, in order: the kernel takes the offload header WriteSuper makes.
// The test plays the far host's TCP by hand, over IPv4 and over IPv6.
func TestTUNSuper(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (a network namespace and a TUN)")
	}
	t.Run("IPv4", func(t *testing.T) { testTUNSuper(t, false) })
	t.Run("IPv6", func(t *testing.T) { testTUNSuper(t, true) })
}

func testTUNSuper(t *testing.T, v6 bool) {
	ns := newNetns(t, map[bool]string{false: "ouro-tun4", true: "ouro-tun6"}[v6])
	if v6 {
		exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0").Run()
	}
	var tun *TUN
	var err error
	inNetns(t, ns, func() { tun, err = OpenTUN("stun0", 1400) })
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if !tun.Offload {
		t.Skip("SKIP: the kernel took no TUN offloads")
	}
	local, far, prefix, network := netip.MustParseAddr("10.67.0.1"), netip.MustParseAddr("10.67.0.2"), "/24", "tcp4"
	if v6 {
		local, far, prefix, network = netip.MustParseAddr("fd67::1"), netip.MustParseAddr("fd67::2"), "/64", "tcp6"
	}
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", local.String()+prefix, "dev", "stun0", "nodad").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v %s", err, out)
	}
	iph := 20
	if v6 {
		iph = 40
	}
	const mss = 1000
	rb := make([]byte, MaxPacket)
	// next returns the next TCP packet the host sends to dport, with
	// the MSS ReadSuper gave (other packets are passed over).
	next := func(dport uint16) ([]byte, int) {
		t.Helper()
		type res struct {
			p   []byte
			mss int
			err error
		}
		for {
			c := make(chan res, 1)
			go func() {
				n, m, err := tun.ReadSuper(rb)
				c <- res{bytes.Clone(rb[:n]), m, err}
			}()
			var r res
			select {
			case r = <-c:
			case <-time.After(5 * time.Second):
				t.Fatal("nothing read from the TUN for 5 s")
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			proto := r.p[0] >> 4
			if v6 && proto == 6 && len(r.p) >= 60 && r.p[6] == unix.IPPROTO_TCP && binary.BigEndian.Uint16(r.p[42:]) == dport ||
				!v6 && proto == 4 && len(r.p) >= 40 && r.p[9] == unix.IPPROTO_TCP && binary.BigEndian.Uint16(r.p[22:]) == dport {
				return r.p, r.mss
			}
		}
	}
	writePlain := func(p []byte) {
		t.Helper()
		if _, err := tun.WriteBatch([][]byte{append(make([]byte, vnetHdrLen, vnetHdrLen+MaxPacket), p...)}); err != nil {
			t.Fatal(err)
		}
	}

	// The host sends: a connection to far:5555, answered by hand.
	conns := make(chan net.Conn, 1)
	go func() {
		err := enterNetns(ns, func() { // the dial blocks until the handshake below
			c, err := net.DialTimeout(network, netip.AddrPortFrom(far, 5555).String(), 5*time.Second)
			if err != nil {
				t.Error(err)
				close(conns)
				return
			}
			conns <- c
		})
		if err != nil {
			t.Error(err)
			close(conns)
		}
	}()
	syn, _ := next(5555)
	sport := binary.BigEndian.Uint16(syn[iph:])
	writePlain(tcpSeg(far, local, 5555, sport, 9000, binary.BigEndian.Uint32(syn[iph+4:])+1, 0x12, mss, nil)) // SYN-ACK
	c, ok := <-conns
	if !ok {
		t.FailNow()
	}
	defer c.Close()
	go c.Write(make([]byte, 20*mss))
	var super []byte
	for super == nil {
		p, m := next(5555)
		if m > 0 {
			if m != mss {
				t.Fatalf("super-packet of mss %d, want %d", m, mss)
			}
			super = p
		} else if len(p) > iph+20+mss {
			t.Fatalf("a plain packet of %d bytes, beyond the MSS", len(p))
		}
	}
	s, ok := parseSuper(super, mss)
	if !ok || s.segments() < 2 {
		t.Fatalf("ReadSuper's super-packet: %d bytes, %d segments", len(super), s.segments())
	}
	t.Logf("the host's TCP handed over a super-packet of %d segments (%d bytes)", s.segments(), len(super))

	// The host receives: a connection from far:7777, its data one
	// super-packet.
	var ln net.Listener
	inNetns(t, ns, func() { ln, err = net.Listen(network, netip.AddrPortFrom(local, 6666).String()) })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	writePlain(tcpSeg(far, local, 7777, 6666, 5000, 0, 0x02, mss, nil)) // SYN
	synack, _ := next(7777)
	ack := binary.BigEndian.Uint32(synack[iph+4:]) + 1
	writePlain(tcpSeg(far, local, 7777, 6666, 5001, ack, 0x10, 0, nil)) // ACK
	payload := make([]byte, 10*mss+123)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	sp := tcpSeg(far, local, 7777, 6666, 5001, ack, 0x18, 0, payload)
	b := append(make([]byte, vnetHdrLen), sp...)
	if err := tun.WriteSuper(b, mss); err != nil {
		t.Fatal(err)
	}
	ac, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	ac.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(ac, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("the socket read %v; payload equal %v", err, bytes.Equal(got, payload))
	}

	// ReadSuper allocates nothing: 101 datagrams wait in the TUN's
	// queue, AllocsPerRun reads them (one warm-up read, 100 counted).
	var uc *net.UDPConn
	inNetns(t, ns, func() { uc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))) })
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for range 101 {
		if _, err := uc.WriteToUDPAddrPort(make([]byte, 100), netip.AddrPortFrom(far, 9)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if a := testing.AllocsPerRun(100, func() {
		if _, _, err := tun.ReadSuper(rb); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("ReadSuper: %.1f allocations a read, want 0", a)
	}
}

// A program's shared-ring port says the node's marks: its bridge maps
// them as a bridge in a node does (aqm.go).
var _ markReader = (*flow.ShmPort)(nil)
