package ipcptest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUpcalls(t *testing.T) {
	ctx := context.Background()
	u := ipcptest.NewUpcalls(4)
	req := ipcp.AllocReq{ID: 7, Dst: "echo", Src: "client", QoS: flow.Data()}
	ipcpEnd, err := u.FlowReq(ctx, req)
	if err != nil {
		t.Fatalf("FlowReq = %v", err)
	}
	defer ipcpEnd.Close()
	acc := <-u.Accepted
	defer acc.Port.Close()
	if acc.Req != req {
		t.Fatalf("Accepted.Req = %+v, want %+v", acc.Req, req)
	}
	if err := ipcpEnd.Write([]byte("hello"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := acc.Port.Read(buf, time.Time{})
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("app end Read = %q, %v; want hello", buf[:n], err)
	}

	u.Refuse(flow.ErrRefused)
	if _, err := u.FlowReq(ctx, ipcp.AllocReq{ID: 8, Dst: "nope"}); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("refused FlowReq = %v, want ErrRefused", err)
	}
	if got := u.Requests(); len(got) != 2 || got[0] != req || got[1].Dst != "nope" {
		t.Fatalf("Requests() = %+v, want the two requests in order", got)
	}
}

func TestUpcallsCtx(t *testing.T) {
	u := ipcptest.NewUpcalls(1)
	u.Accepted = make(chan ipcptest.Accepted) // nobody receives
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := u.FlowReq(ctx, ipcp.AllocReq{Dst: "x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("FlowReq with nobody accepting = %v, want DeadlineExceeded", err)
	}
}
