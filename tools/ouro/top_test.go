package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/ipcp"
)

func TestRenderTop(t *testing.T) {
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	prev := topRound{at: at,
		ipcps: []topIPCP{{name: "a.udp", layer: "udp", kind: "udp", state: "operational", in: 100, out: 200, drops: 1}, {name: "a.uni", layer: "uni", kind: "unicast", state: "operational", in: 10, out: 10}},
		flows: []topFlow{{ipcp: "a.uni", eid: "7", name: "echo.b", dir: "out", cube: "data", pktsIn: 5, pktsOut: 5, bytesIn: 1000, bytesOut: 1000, drops: "0"}},
	}
	cur := topRound{at: at.Add(2 * time.Second),
		ipcps: []topIPCP{{name: "a.udp", layer: "udp", kind: "udp", state: "operational", in: 300, out: 600, drops: 5}, {name: "a.uni", layer: "uni", kind: "unicast", state: "operational", in: 110, out: 10}},
		flows: []topFlow{
			{ipcp: "a.uni", eid: "7", name: "echo.b", dir: "out", cube: "data", pktsIn: 205, pktsOut: 105, bytesIn: 41000, bytesOut: 21000, drops: "2", queued: "12/0"},
			{ipcp: "a.udp", eid: "3", name: "b.uni", dir: "in", cube: "raw", pktsIn: 1, drops: "-", queued: "-"},
		},
	}
	var b bytes.Buffer
	renderTop(&b, &prev, cur)
	want := `ouro top — 08:00:02, 2 IPCPs, 2 flows

IPCP   LAYER  KIND     STATE        IN/s  OUT/s  DROPS  DROPS/s
a.udp  udp    udp      operational  100   200    5      2
a.uni  uni    unicast  operational  50    0      0      0

IPCP   EID  NAME    DIR  CUBE  PKTS_IN/s  PKTS_OUT/s  KB_IN/s  KB_OUT/s  DROPS  QUEUED
a.udp  3    b.uni   in   raw   -          -           -        -         -      -
a.uni  7    echo.b  out  data  100        50          20.0     10.0      2      12/0
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	renderTop(&b, nil, cur) // the first round: no rates yet
	if !strings.Contains(b.String(), "a.udp  udp    udp      operational  -     -      5      -") {
		t.Errorf("first round:\n%s", b.String())
	}
}

func TestStatsRates(t *testing.T) {
	in, out, drops := statsRates(ipcp.Table{Columns: []string{"counter", "value"}, Rows: [][]string{
		{"state", "operational"}, {"sent", "5"}, {"delivered", "7"}, {"forwarded", "3"}, {"drops.no_route", "2"}, {"drops.ttl", "1"}, {"ctl_in", "9"},
	}})
	if in != 10 || out != 8 || drops != 3 {
		t.Errorf("got in %d out %d drops %d, want 10, 8, 3", in, out, drops)
	}
}

// TestTopRounds runs top for two rounds against a node whose counters
// move between them.
func TestTopRounds(t *testing.T) {
	tn := newTestNet()
	var polls int
	tn.mgmt.answer = func(r ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		switch r.Cmd {
		case ipcp.CmdIPCPs:
			polls++
			return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"name", "layer", "kind", "state", "restarts", "last_fault"}, Rows: [][]string{{"r.udp", "udp", "udp", "operational", "0", "-"}}}}, nil
		case "stats":
			n := "100"
			if polls > 1 {
				n = "400"
			}
			return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"counter", "value"}, Rows: [][]string{{"packets_in", n}, {"packets_out", "0"}, {"drops.rx_full", "0"}}}}, nil
		case "flows":
			return ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"eid", "peer_eid", "peer", "name", "dir", "cube", "pkts_in", "bytes_in", "pkts_out", "bytes_out"}}}, nil
		}
		t.Errorf("unexpected %+v", r)
		return ipcp.MgmtResp{}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, out, errOut := tn.ouro(ctx, "top", "-n", "2", "-i", "200ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Count(out, "ouro top") != 2 {
		t.Fatalf("output:\n%s\nwant two rounds", out)
	}
	// 300 packets in about 200 ms: a rate of about 1500/s, not "-".
	second := out[strings.LastIndex(out, "ouro top"):]
	var line string
	for _, l := range strings.Split(second, "\n") {
		if strings.HasPrefix(l, "r.udp") {
			line = l
		}
	}
	f := strings.Fields(line)
	if len(f) < 8 || f[4] == "-" || f[4] == "0" {
		t.Errorf("second round's line %q: want a packet rate in", line)
	}
}
