package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
)

// captureNode answers the capture command from a real capture point at
// which the test offers packets once the capture is armed.
func captureNode(t *testing.T, tn *testNet, n int) {
	t.Helper()
	var p capture.Point
	tn.mgmt.answer = func(r ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		if r.Cmd != capture.Cmd || r.IPCP != "r.uni" {
			t.Errorf("request %+v, want capture at r.uni", r)
		}
		resp, err := p.Mgmt(r.IPCP, capture.LayerUnicast, r.Args)
		if err == nil && r.Args[capture.ArgOp] == capture.OpStart {
			if r.Args[capture.ArgDir] != "out" || r.Args[capture.ArgPort] != "7" || r.Args[capture.ArgSnap] != "100" {
				t.Errorf("start args %v: want dir out, port 7, snap 100", r.Args)
			}
			s := p.Session()
			for i := range n {
				pkt := make([]byte, 300)
				pkt[8], pkt[9] = 3, 60 // cube best_effort, TTL 60
				pkt[0] = byte(i)
				s.Add(capture.Out, capture.PDU, 7, pkt)
				s.Add(capture.In, capture.PDU, 7, pkt) // filtered
			}
		}
		return resp, err
	}
}

func TestCaptureToPcapng(t *testing.T) {
	tn := newTestNet()
	captureNode(t, tn, 100)
	file := filepath.Join(t.TempDir(), "c.pcapng")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, out, errOut := tn.ouro(ctx, "capture", "r.uni", "-w", file, "-c", "60", "--snap", "100", "out", "port", "7")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "60 packets captured at r.uni") {
		t.Errorf("stderr %q: want the count", errOut)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	if lt := r.LinkType(); int(lt) != capture.LinkType {
		t.Errorf("link type %d, want %d", lt, capture.LinkType)
	}
	k := 0
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		h := capture.Header(data)
		if !h.IsValid() || h.Dir() != capture.Out || h.Port() != 7 || ci.Length != capture.HeaderLen+300 || len(data) != capture.HeaderLen+100 || data[capture.HeaderLen] != byte(k) {
			t.Fatalf("packet %d: %d of %d bytes, header %x", k, len(data), ci.Length, data[:capture.HeaderLen])
		}
		k++
	}
	if k != 60 {
		t.Errorf("%d packets in the file, want 60", k)
	}
	if reqs := tn.mgmt.reqs; reqs[len(reqs)-1].Args[capture.ArgOp] != capture.OpStop {
		t.Errorf("last request %+v, want stop", reqs[len(reqs)-1])
	}
}

func TestCapturePrints(t *testing.T) {
	tn := newTestNet()
	captureNode(t, tn, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, out, errOut := tn.ouro(ctx, "capture", "r.uni", "-t", "300ms", "--snap", "100", "out", "port", "7")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "out unicast port 7 len 300 dst 144115188075855872 cube 3 ttl 60") {
		t.Errorf("output:\n%s\nwant 3 lines, the last of a PDU to address 2<<56", out)
	}
	if code, _, _ := tn.ouro(ctx, "capture", "r.uni", "sideways"); code != 2 {
		t.Errorf("bad filter: exit %d, want 2", code)
	}
}
