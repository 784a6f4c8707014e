package rpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/rpc"
	"github.com/ouronet/ouro/kernel"
)

// serve boots a kernel with one component serving h on an endpoint and
// returns a client for it.
func serve(t *testing.T, h rpc.Handler) *rpc.Client {
	t.Helper()
	k := kernel.New(kernel.Config{})
	ch := make(chan *kernel.PD, 1)
	sys := &kernel.System{Components: []kernel.ComponentSpec{{
		Name:   "srv",
		Budget: kernel.Budget{Bufs: 16, Objects: 64},
	}}}
	err := k.Boot(sys, map[string]kernel.Program{"srv": func(pd *kernel.PD) error {
		ch <- pd
		<-pd.Context().Done()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	pd := <-ch
	ep, err := pd.NewEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	pd.Go(func() { rpc.Serve(pd, ep, h) })
	c, err := pd.Mint(ep, kernel.Write|kernel.GrantReply, 1)
	if err != nil {
		t.Fatal(err)
	}
	return rpc.NewClient(pd, c)
}

// TestLater: a handler that leaves its reply to another goroutine
// (Request.Later) is answered by that goroutine's first Send, not by
// what the handler returned; its ctx lasts until the Send.
func TestLater(t *testing.T) {
	type held struct {
		l   *rpc.Later
		ctx context.Context
	}
	later := make(chan held, 2)
	c := serve(t, func(ctx context.Context, r *rpc.Request) (rpc.Response, error) {
		later <- held{r.Later(), ctx}
		return rpc.Response{Body: "the handler's"}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		err  error
	}{{"reply", nil}, {"error", flow.ErrRefused}} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				body string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				var body string
				_, err := c.Call(ctx, 1, nil, nil, &body)
				res <- result{body, err}
			}()
			h := <-later
			time.Sleep(10 * time.Millisecond) // the handler has returned by now
			select {
			case r := <-res:
				t.Fatalf("the call returned %+v before Send", r)
			default:
			}
			if h.ctx.Err() != nil {
				t.Fatalf("the handler's ctx ended before Send: %v", h.ctx.Err())
			}
			h.l.Send(rpc.Response{Body: "later's"}, tc.err)
			h.l.Send(rpc.Response{Body: "a second Send's"}, nil)
			r := <-res
			if tc.err != nil {
				if !errors.Is(r.err, tc.err) {
					t.Fatalf("got %q, %v; want error %v", r.body, r.err, tc.err)
				}
			} else if r.err != nil || r.body != "later's" {
				t.Fatalf("got %q, %v; want the first Send's reply", r.body, r.err)
			}
			if h.ctx.Err() == nil {
				t.Error("the handler's ctx lasts after Send")
			}
		})
	}
}
