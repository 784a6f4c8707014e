package rpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/rpc"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/kerneltest"
)

// serve boots a kernel with one component serving h on an endpoint and
// returns a client for it.
func serve(t *testing.T, h rpc.Handler) *rpc.Client {
	t.Helper()
	pd := kerneltest.PD(t, "srv", kernel.Budget{Bufs: 16, Objects: 64})
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

// TestDelivered: a reply's Delivered runs once the caller has the reply,
// and its Undelivered instead when the caller gave up first; never both.
func TestDelivered(t *testing.T) {
	type outcome struct{ delivered, undelivered bool }
	done := make(chan outcome, 1)
	c := serve(t, func(ctx context.Context, r *rpc.Request) (rpc.Response, error) {
		var wait bool
		if err := r.Decode(&wait); err != nil {
			return rpc.Response{}, err
		}
		if wait { // until the caller gives up
			<-ctx.Done()
		}
		var o outcome
		return rpc.Response{Body: "reply",
			Delivered:   func() { o.delivered = true; done <- o },
			Undelivered: func() { o.undelivered = true; done <- o }}, nil
	})
	var body string
	if _, err := c.Call(context.Background(), 1, false, nil, &body); err != nil || body != "reply" {
		t.Fatalf("call: %q, %v", body, err)
	}
	select {
	case o := <-done:
		if !o.delivered || o.undelivered {
			t.Fatalf("a reply the caller got: %+v, want Delivered only", o)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("neither Delivered nor Undelivered ran for a reply the caller got")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, 1, true, nil, &body); err == nil {
		t.Fatal("a call that gave up got a reply")
	}
	select {
	case o := <-done:
		if o.delivered || !o.undelivered {
			t.Fatalf("a reply the caller gave up on: %+v, want Undelivered only", o)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("neither Delivered nor Undelivered ran for a reply the caller gave up on")
	}
}
