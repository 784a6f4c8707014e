package mgmtflow

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
)

// tableMgmt answers every command with a table of rows rows, and counts.
type tableMgmt struct {
	rows  int
	calls []string
}

func (m *tableMgmt) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	m.calls = append(m.calls, req.Cmd)
	if req.Cmd == "stats" && req.IPCP == "" {
		return ipcp.MgmtResp{}, flow.ErrNotFound
	}
	t := ipcp.Table{Columns: []string{"counter", "value"}}
	for i := range m.rows {
		t.Rows = append(t.Rows, []string{strings.Repeat("x", 40), string(rune('0' + i%10))})
	}
	return ipcp.MgmtResp{Table: t, Text: req.Cmd}, nil
}

// TestServeOverPipe: an answer of many SDUs (a table far over an SDU,
// split and joined again), an error that keeps its sentinel, and a
// refused command that never reaches the node, over one flow.
func TestServeOverPipe(t *testing.T) {
	a, b := flowtest.Pipe(64)
	m := &tableMgmt{rows: 2000}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, b, flow.Info{MaxSDU: 200}, m) }()
	c := NewClient(a, flow.Info{MaxSDU: 100})
	r, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Table.Rows) != 2000 || r.Text != "stats" || r.Table.Rows[1999][1] != "9" {
		t.Fatalf("answer: %d rows, text %q", len(r.Table.Rows), r.Text)
	}
	if _, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats"}); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("error over the flow: %v, want ErrNotFound", err)
	}
	if _, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: "destroy", Name: "x"}); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("destroy over the flow: %v, want ErrRefused", err)
	}
	if len(m.calls) != 2 {
		t.Fatalf("the node ran %v, want the two stats only", m.calls)
	}
	a.Close()
	if err := <-done; err != nil {
		t.Fatalf("Serve after the client closed: %v", err)
	}
}

// TestServeRejectsGarbage: an SDU without a fragment flag, a request
// over MaxRequest and one that is not CBOR end the flow with an error.
func TestServeRejectsGarbage(t *testing.T) {
	for name, sdus := range map[string][][]byte{
		"no flag":  {{7, 1, 2}},
		"empty":    {{}},
		"too long": append(repeat([]byte{fragMore, 0x80}, MaxRequest+1), []byte{fragLast}),
		"not cbor": {{fragLast, 0xff, 0xff}},
	} {
		a, b := flowtest.Pipe(len(sdus) + 1)
		for _, s := range sdus {
			if err := a.Write(s, time.Now().Add(time.Second)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		err := Serve(context.Background(), b, flow.Info{}, &tableMgmt{})
		want := flow.ErrInvalid
		if name == "too long" {
			want = flow.ErrTooBig
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: Serve: %v, want %v", name, err, want)
		}
		a.Close()
		b.Close()
	}
}

func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestAdmit: only a sealed flow from a listed node.
func TestAdmit(t *testing.T) {
	peers := []string{"friend"}
	sealed := flow.QoS{Sealed: true}
	for _, c := range []struct {
		name string
		info flow.Info
		ok   bool
	}{
		{"listed", flow.Info{QoS: sealed, Peer: &flow.Peer{ID: "friend"}}, true},
		{"unlisted", flow.Info{QoS: sealed, Peer: &flow.Peer{ID: "stranger"}}, false},
		{"unsealed", flow.Info{Peer: &flow.Peer{ID: "friend"}}, false},
		{"no peer", flow.Info{QoS: sealed}, false},
	} {
		if err := Admit(c.info, peers); (err == nil) != c.ok {
			t.Errorf("%s: Admit: %v", c.name, err)
		}
	}
	if err := Admit(flow.Info{QoS: sealed, Peer: &flow.Peer{ID: "friend"}}, nil); err == nil {
		t.Error("Admit with no allow-list took a flow")
	}
}

// TestAllowed: the read-only commands pass, changes do not.
func TestAllowed(t *testing.T) {
	for _, cmd := range []string{"ipcps", "names", "flows", "components", "stats", "graph", "capture", "system", "status"} {
		if err := Allowed(ipcp.MgmtReq{Cmd: cmd}); err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
	}
	for _, cmd := range []string{"reg", "unreg", "create", "destroy", "bootstrap", "enroll", "connect", "crl", ""} {
		if err := Allowed(ipcp.MgmtReq{Cmd: cmd}); !errors.Is(err, flow.ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", cmd, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	b, _ := enc.Marshal(ipcp.MgmtReq{Cmd: "stats", IPCP: "a", Args: map[string]string{"k": "v"}})
	f.Add(b)
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(data)
		if err != nil {
			return
		}
		out, err := enc.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeRequest(out); err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	b, _ := enc.Marshal(Response{Resp: ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"a"}, Rows: [][]string{{"1"}}}, Text: "t", Next: 2}})
	f.Add(b)
	b, _ = enc.Marshal(Response{Err: flow.EncodeError(flow.ErrRefused)})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeResponse(data)
		if err != nil {
			return
		}
		_ = r.Err.Err()
		if _, err := enc.Marshal(r); err != nil {
			t.Fatal(err)
		}
	})
}

// slowMgmt answers "slow" only once released, and everything else at once.
type slowMgmt struct{ release chan struct{} }

func (m slowMgmt) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if req.Cmd == "names" {
		<-m.release
	}
	return ipcp.MgmtResp{Text: req.Cmd}, nil
}

// TestClientGaveUp: a call whose ctx ends before the answer leaves the
// flow usable; the next call gets its own answer, not the late one.
func TestClientGaveUp(t *testing.T) {
	a, b := flowtest.Pipe(16)
	m := slowMgmt{release: make(chan struct{})}
	go Serve(context.Background(), b, flow.Info{}, m)
	defer a.Close()
	c := NewClient(a, flow.Info{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: "names"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call: %v, want its deadline", err)
	}
	cancel()
	close(m.release)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: "ipcps"})
	if err != nil || r.Text != "ipcps" {
		t.Fatalf("next call: %q, %v; want the ipcps answer", r.Text, err)
	}
}
