// Package ipstacktest gives a test a TCP/IP stack of its own behind an
// IP bridge on a broker (a node's socket, an IRM session): an HTTP
// client whose every packet crosses ouro flows.
package ipstacktest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/images/internal/ipstack"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

type goRunner struct{}

func (goRunner) Go(f func()) { go f() }

// Client starts a stack with address addr (ADDR/BITS) and a bridge bound
// as name on b with routes, and returns an HTTP client that dials from
// the stack. Both stop when the test ends.
func Client(t testing.TB, b flow.Broker, addr, name string, routes ...ipnet.Route) *http.Client {
	t.Helper()
	st, err := ipstack.New(netip.MustParsePrefix(addr), 1280)
	if err != nil {
		t.Fatal(err)
	}
	br, err := ipnet.New(ipnet.Config{Broker: b, Dev: st, Runner: goRunner{}, Name: name, Routes: routes})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return st.Dial(ctx, netip.MustParseAddrPort(addr))
		},
	}}
	t.Cleanup(func() {
		cancel()
		st.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("ipstacktest: bridge %s: %v", name, err)
		}
	})
	return client
}

// Echo4 returns an ICMP echo request from src to dst (IPv4, TTL 64)
// with sequence number seq and n bytes of payload: a packet to write,
// as one SDU, on a flow to a bridge whose stack has dst.
func Echo4(src, dst netip.Addr, seq uint16, n int) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+n)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	icmp := header.ICMPv4(ip.Payload())
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(0x7e57)
	icmp.SetSequence(seq)
	for i := range n {
		icmp.Payload()[i] = byte(i)
	}
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return pkt
}

// IsEchoReply4 reports whether pkt is an IPv4 ICMP echo reply with
// sequence number seq.
func IsEchoReply4(pkt []byte, seq uint16) bool {
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || ip.TransportProtocol() != header.ICMPv4ProtocolNumber {
		return false
	}
	icmp := header.ICMPv4(ip.Payload())
	return len(icmp) >= header.ICMPv4MinimumSize && icmp.Type() == header.ICMPv4EchoReply && icmp.Sequence() == seq
}

// Ping plays a peer bridge named self, at address src, without a
// stack: it binds self on c, sends n ICMP echo requests to dst, each as
// one SDU on a flow to the bridge named bridge (whose stack has dst),
// and reads every reply on the flow that bridge allocates back to self
// (its route to src must name self). It returns the bytes of the
// requests and of the replies: what the bridge counts.
func Ping(t testing.TB, ctx context.Context, c flow.Broker, self string, src netip.Addr, bridge string, dst netip.Addr, n int) (reqBytes, replyBytes int) {
	t.Helper()
	if err := c.Bind(ctx, self); err != nil {
		t.Fatal(err)
	}
	var out flow.Port
	for { // the bridge binds its name as the node starts
		var err error
		if out, _, err = c.Alloc(ctx, bridge, flow.BestEffort()); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("alloc %s: %v", bridge, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer out.Close()
	var in flow.Port
	for seq := range n {
		pkt := Echo4(src, dst, uint16(seq), 56)
		if err := out.Write(pkt, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("write echo %d: %v", seq, err)
		}
		reqBytes += len(pkt)
		if in == nil {
			p, _, err := c.Accept(ctx)
			if err != nil {
				t.Fatalf("accept the bridge's flow: %v", err)
			}
			in = p
			defer in.Close()
		}
		buf := make([]byte, 2048)
		rn, err := in.Read(buf, time.Now().Add(5*time.Second))
		if err != nil || !IsEchoReply4(buf[:rn], uint16(seq)) {
			t.Fatalf("reply %d: %v: % x", seq, err, buf[:rn])
		}
		replyBytes += rn
	}
	return reqBytes, replyBytes
}
