package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
)

// TestCaptureOverSocket arms a capture at a udp shim through the node
// socket, as ouro capture does, sends SDUs of mixed sizes across the
// shim, and reads the records back: every page crosses the IPCP's, the
// IRM's and the gateway's message limits whole, and holds the SDUs with
// the flow's endpoint id.
func TestCaptureOverSocket(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	xb, chb := app("srv")
	startNode(t, fmt.Sprintf("[node]\nname = \"b\"\n[[ipcp]]\nkind = \"udp\"\nlayer = \"net\"\n[ipcp.udp]\naddr = \"127.0.0.1:%d\"\n", pb), xb)
	sock := filepath.Join(t.TempDir(), "a.sock")
	xa, cha := app("cli")
	startNode(t, fmt.Sprintf("[node]\nname = \"a\"\n[[ipcp]]\nkind = \"udp\"\nlayer = \"net\"\n[ipcp.udp]\naddr = \"127.0.0.1:%d\"\ndir = { echo = \"127.0.0.1:%d\" }\n", pa, pb), xa, Gateway(sock, logx.Test(t)))
	b, a := <-chb, <-cha
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tool, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	var ips ipcp.MgmtResp
	if err := tool.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs}, &ips); err != nil || len(ips.Table.Rows) != 1 {
		t.Fatalf("ipcps: %v %v", ips, err)
	}
	shim := ips.Table.Rows[0][0]
	call := func(args map[string]string) ipcp.MgmtResp {
		t.Helper()
		var r ipcp.MgmtResp
		if err := tool.Mgmt(ctx, ipcp.MgmtReq{Cmd: capture.Cmd, IPCP: shim, Args: args}, &r); err != nil {
			t.Fatalf("capture %v: %v", args, err)
		}
		return r
	}
	call(map[string]string{capture.ArgOp: capture.OpStart, capture.ArgSnap: "1024", capture.ArgDir: "out"})

	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 1)
	go func() {
		p, _, err := b.Accept(ctx)
		if err != nil {
			got <- -1
			return
		}
		defer p.Close()
		buf := make([]byte, flow.MaxSDU)
		n := 0
		for ; n < 40; n++ {
			if _, err := p.Read(buf, time.Now().Add(5*time.Second)); err != nil {
				break
			}
		}
		got <- n
	}()
	p, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const sdus = 40
	for i := range sdus {
		size := 10
		if i%4 == 0 {
			size = 1100 // kept 1024: one record nearly fills a page
		}
		sdu := make([]byte, size)
		sdu[0] = byte(i)
		if err := p.Write(sdu, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if n := <-got; n != sdus {
		t.Fatalf("the server read %d SDUs, want %d", n, sdus)
	}
	var recs []capture.Record
	for pages := 0; len(recs) < sdus && pages < 100; pages++ {
		r := call(map[string]string{capture.ArgOp: capture.OpRead})
		page, err := base64.StdEncoding.DecodeString(r.Text)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := capture.DecodePage(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range rs {
			if rec.Header.Content() == capture.SDU {
				recs = append(recs, rec)
			}
		}
	}
	if len(recs) != sdus {
		t.Fatalf("captured %d SDUs, want %d", len(recs), sdus)
	}
	for i, r := range recs {
		want := 10
		if i%4 == 0 {
			want = 1100
		}
		if r.Header.Layer() != capture.LayerUDP || r.Header.Dir() != capture.Out || r.Len != want || len(r.Data) != min(want, 1024) || r.Data[0] != byte(i) {
			t.Errorf("record %d: %x, %d bytes of %d", i, []byte(r.Header), len(r.Data), r.Len)
		}
	}
	stop := call(map[string]string{capture.ArgOp: capture.OpStop})
	t.Logf("counters at stop: %v", stop.Table.Rows)
}
