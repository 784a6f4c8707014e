package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

func TestGatewayAllocAcceptMgmt(t *testing.T) {
	dir := t.TempDir()
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d" }
`, pa, pb), Gateway(sockA, logx.Test(t)))
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), Gateway(sockB, logx.Test(t)))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := flow.Dial(sockA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := flow.Dial(sockB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatalf("bind: %v", err)
	}
	var names ipcp.MgmtResp
	if err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdNames}, &names); err != nil {
		t.Fatalf("mgmt names: %v", err)
	}
	if len(names.Table.Rows) != 1 || names.Table.Rows[0][0] != "echo" || names.Table.Rows[0][2] != "b.udp" {
		t.Errorf("names table = %v, want echo registered in b.udp", names.Table.Rows)
	}

	accepted := make(chan flow.Port, 1)
	go func() {
		p, _, err := b.Accept(ctx)
		if err != nil {
			t.Errorf("accept: %v", err)
		}
		accepted <- p
	}()
	pA, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc: %v", err)
	}
	pB := <-accepted
	if pB == nil {
		t.FailNow()
	}
	buf := make([]byte, flow.MaxSDU+1)
	for _, size := range []int{1, 64, 1400} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if err := pA.Write(msg, time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("write %d bytes: %v", size, err)
		}
		n, err := pB.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("read %d bytes: got %d, %v", size, n, err)
		}
	}
	if err := pA.Write(make([]byte, flow.MaxSDU+1), time.Time{}); !errors.Is(err, flow.ErrTooBig) {
		t.Errorf("oversize write: got %v, want ErrTooBig", err)
	}

	var flows ipcp.MgmtResp
	if err := a.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdFlows}, &flows); err != nil || len(flows.Table.Rows) != 1 {
		t.Errorf("flows on a: %v, %v; want one flow", flows.Table.Rows, err)
	}
	var stats ipcp.MgmtResp
	if err := a.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: "a.udp"}, &stats); err != nil || len(stats.Table.Rows) == 0 {
		t.Errorf("stats on a.udp: %v, %v", stats.Table.Rows, err)
	}
	var sys ipcp.MgmtResp
	if err := a.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdSystem, Args: map[string]string{"format": "dot"}}, &sys); err != nil || !bytes.Contains([]byte(sys.Text), []byte("digraph")) {
		t.Errorf("system dot: %q, %v", sys.Text, err)
	}

	// Closing the program's end deallocates the flow on the peer.
	pA.Close()
	if _, err := pB.Read(buf, time.Now().Add(3*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("peer read after dealloc: got %v, want ErrClosed", err)
	}
	pB.Close()

	// Ending the session unbinds its names.
	b.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		var after ipcp.MgmtResp
		if err := a.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdNames}, &after); err != nil {
			t.Fatal(err)
		}
		_, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
		if errors.Is(err, flow.ErrNotFound) || errors.Is(err, flow.ErrRefused) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alloc after the acceptor left: got %v, want ErrNotFound or ErrRefused", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHTTPOverFlows serves net/http on a flow listener at one node and
// fetches from it through another node, over the UDP shim.
func TestHTTPOverFlows(t *testing.T) {
	dir := t.TempDir()
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	startNode(t, fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), Gateway(sockB, logx.Test(t)))
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { web = "127.0.0.1:%d" }
`, pa, pb), Gateway(sockA, logx.Test(t)))

	t.Setenv("OURO_SOCKET", sockB)
	l, err := flow.Listen("web")
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("ouroboros "), 100_000) // 1 MB
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			got, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%d", len(got))
			return
		}
		w.Write(body)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()

	t.Setenv("OURO_SOCKET", sockA)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return flow.DialName(ctx, "web")
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := hc.Get("http://web/")
	if err != nil {
		t.Fatalf("GET over a flow: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("GET body: %d bytes, %v; want %d bytes intact", len(got), err, len(body))
	}
	resp, err = hc.Post("http://web/", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST over a flow: %v", err)
	}
	n, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(n) != fmt.Sprint(len(body)) {
		t.Fatalf("POST: server read %s bytes, want %d", n, len(body))
	}
}
