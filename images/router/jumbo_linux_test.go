package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/tools/testnet"
)

// TestJumboSDUs runs two node processes whose UDP shims carry SDUs of up
// to 8,000 bytes (max_sdu) on 127.0.0.1: programs ping with 8,000-byte
// SDUs through their node sockets (the shared rings and the nodes' packet
// buffers sized for them), sealed and unsealed, and flood with them;
// 8,001 bytes is refused with the flow's limit. A node left at the
// default refuses 1,401 bytes the same way.
func TestJumboSDUs(t *testing.T) {
	const jumbo = 8000
	n := newNet(t)
	pa, pb, pc := freeUDP(t, "udp4", "127.0.0.1"), freeUDP(t, "udp4", "127.0.0.1"), freeUDP(t, "udp4", "127.0.0.1")
	conf := func(name string, port int, maxSDU int, dir string) string {
		return fmt.Sprintf("[node]\nname = %q\n[[ipcp]]\nkind = \"udp\"\nlayer = \"net\"\n[ipcp.udp]\naddr = \"127.0.0.1:%d\"\nmax_sdu = %d\n%s", name, port, maxSDU, dir)
	}
	b, err := n.StartNode("b", conf("b", pb, jumbo, ""), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := n.StartNode("a", conf("a", pa, jumbo, fmt.Sprintf("dir = { echo = \"127.0.0.1:%d\", perf = \"127.0.0.1:%d\" }\n", pb, pb)), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, n, b, "echo", "echo")
	pingSize := func(size int, extra ...string) (pingSummary, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args := append([]string{"--json", "ping", "-c", "10", "-i", "10ms", "-W", "2s", "-s", fmt.Sprint(size)}, extra...)
		out, err := n.Ouro(ctx, a, append(args, "echo")...)
		if err != nil {
			return pingSummary{}, fmt.Errorf("%w: %s", err, out)
		}
		var s pingSummary
		return s, json.Unmarshal([]byte(out), &s)
	}
	for _, sealed := range []bool{false, true} {
		var extra []string
		size := jumbo
		if sealed {
			extra, size = []string{"--sealed"}, jumbo-24 // sealing takes its 24 bytes out of the SDU
		}
		s, err := pingSize(size, extra...)
		if err != nil || s.Received != 10 {
			t.Fatalf("ping -s %d (sealed %v): %d of 10 replies, %v", size, sealed, s.Received, err)
		}
		t.Logf("ping -s %d (sealed %v): avg rtt %.3f ms", size, sealed, s.RTTAvgMS)
	}
	if _, err := pingSize(jumbo + 1); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("at most %d", jumbo)) {
		t.Fatalf("ping -s %d on a flow of %d: %v, want the flow's limit", jumbo+1, jumbo, err)
	}

	serve(t, n, b, "perf", "--server", "perf")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	out, err := n.Ouro(ctx, a, "--json", "perf", "-t", "1s", "-s", fmt.Sprint(jumbo), "--no-progress", "perf")
	cancel()
	if err != nil {
		t.Fatalf("perf -s %d: %v: %s", jumbo, err, out)
	}
	var p struct {
		Sent   uint64 `json:"sent"`
		Server struct {
			SDUs  uint64 `json:"sdus"`
			Bytes uint64 `json:"bytes"`
		} `json:"server"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("perf output %q: %v", out, err)
	}
	if p.Server.SDUs == 0 || p.Server.Bytes != p.Server.SDUs*jumbo {
		t.Fatalf("perf -s %d: the server counted %d SDUs, %d bytes; want whole SDUs of %d", jumbo, p.Server.SDUs, p.Server.Bytes, jumbo)
	}
	t.Logf("perf -s %d: %d SDUs sent, %d received in 1 s", jumbo, p.Sent, p.Server.SDUs)

	// A node at the default: 1,400 bytes and no more.
	c, err := n.StartNode("c", conf("c", pc, 0, fmt.Sprintf("dir = { echo = \"127.0.0.1:%d\" }\n", pb)), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err = n.Ouro(ctx, c, "ping", "-c", "1", "-s", fmt.Sprint(flow.MaxSDU+1), "echo")
	if err == nil || !strings.Contains(out+err.Error(), fmt.Sprintf("at most %d", flow.MaxSDU)) {
		t.Fatalf("ping -s %d from a default node: %v: %s; want the flow's limit of %d", flow.MaxSDU+1, err, out, flow.MaxSDU)
	}
}
