package kernel

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestReplyContext checks that the context a handler gets with
// ReplyContext ends when its caller is gone, in every way a caller can
// go, and not before: the handler (server) takes the call, makes the
// context, and the test then ends the caller.
func TestReplyContext(t *testing.T) {
	type setup struct {
		k           *Kernel
		client, srv *PD
		cancelCall  context.CancelFunc
		callErr     chan error
		reply       Cap
	}
	for _, tc := range []struct {
		name string
		// late: ReplyContext is made only after the caller is gone.
		late   bool
		goAway func(s *setup)
		want   []error // the cause is one of them
	}{
		{"CallCtx gave up", false, func(s *setup) { s.cancelCall() }, []error{context.Canceled}},
		{"CallCtx gave up before ReplyContext", true, func(s *setup) { s.cancelCall() }, []error{ErrAborted}},
		{"caller killed", false, func(s *setup) { s.k.Kill("client") }, []error{ErrAborted}},
		{"caller restarted", false, func(s *setup) { s.k.Restart("client") }, []error{ErrAborted}},
		{"caller killed before ReplyContext", true, func(s *setup) { s.k.Kill("client") }, []error{ErrAborted}},
		{"kernel stopped", false, func(s *setup) { s.k.Stop() }, []error{ErrClosed, ErrAborted}},
		{"reply cap deleted", false, func(s *setup) { s.srv.Delete(s.reply) }, []error{ErrAborted}},
		{"answered", false, func(s *setup) { s.srv.Reply(s.reply, &Msg{}) }, []error{errReplied}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := &System{
				Endpoints: []ObjectSpec{{Name: "ep"}},
				Components: []ComponentSpec{
					{Name: "client", Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Write | GrantReply}}},
					{Name: "server", Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Read}}},
				},
			}
			k, pds := harness(t, sys, nil)
			s := &setup{k: k, client: pds["client"], srv: pds["server"], callErr: make(chan error, 1)}
			ctx, cancel := context.WithCancel(context.Background())
			s.cancelCall = cancel
			defer cancel()
			go func() { s.callErr <- s.client.CallCtx(ctx, mustSlot(t, s.client, "ep"), &Msg{}) }()
			info, err := s.srv.Recv(mustSlot(t, s.srv, "ep"), &Msg{})
			wantErr(t, "Recv", err, nil)
			s.reply = info.Reply
			var rctx context.Context
			var stop context.CancelFunc
			if !tc.late {
				rctx, stop = s.srv.ReplyContext(context.Background(), s.reply)
				select {
				case <-rctx.Done():
					t.Fatalf("ReplyContext while the caller waits: done (%v), want alive", context.Cause(rctx))
				case <-time.After(10 * time.Millisecond):
				}
			}
			tc.goAway(s)
			if tc.late {
				var cerr error
				within(t, 5*time.Second, "the call to end", func() { cerr = <-s.callErr })
				if cerr == nil {
					t.Fatalf("call: got nil, want an error")
				}
				rctx, stop = s.srv.ReplyContext(context.Background(), s.reply)
			}
			defer stop()
			within(t, 5*time.Second, "ReplyContext's Done", func() { <-rctx.Done() })
			cause, ok := context.Cause(rctx), false
			for _, w := range tc.want {
				ok = ok || errors.Is(cause, w)
			}
			if !ok {
				t.Fatalf("cause: got %v, want one of %v", cause, tc.want)
			}
		})
	}
}

// TestReplyContextBadCap checks that a cap that is not a live reply cap
// gives a context that is done at once.
func TestReplyContextBadCap(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	for _, tc := range []struct {
		name string
		c    Cap
	}{{"null cap", 0}, {"an endpoint cap", mustSlot(t, a, "ep")}, {"out of range", 999}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stop := a.ReplyContext(context.Background(), tc.c)
			defer stop()
			select {
			case <-ctx.Done():
			default:
				t.Fatalf("got a live context, want it done")
			}
			if !errors.Is(context.Cause(ctx), ErrInvalidCap) {
				t.Fatalf("cause: got %v, want ErrInvalidCap", context.Cause(ctx))
			}
		})
	}
}

// TestReplyContextNextCall checks that a context made for one call is
// not ended by the caller's next call (waiters are reused), and that a
// handler's stale ReplyContext for an ended call does not end the
// context of the current one.
func TestReplyContextNextCall(t *testing.T) {
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{
			{Name: "client", Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Write | GrantReply}}},
			{Name: "server", Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Read}}},
		},
	}
	_, pds := harness(t, sys, nil)
	client, srv := pds["client"], pds["server"]
	cep, sep := mustSlot(t, client, "ep"), mustSlot(t, srv, "ep")
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- client.CallCtx(ctx1, cep, &Msg{}) }()
	info1, _ := srv.Recv(sep, &Msg{})
	cancel1()
	<-done1 // call 1 abandoned; its reply cap is still in the server's CSpace
	done2 := make(chan error, 1)
	go func() { done2 <- client.Call(cep, &Msg{}) }()
	info2, _ := srv.Recv(sep, &Msg{})
	rctx2, stop2 := srv.ReplyContext(context.Background(), info2.Reply)
	defer stop2()
	rctx1, stop1 := srv.ReplyContext(context.Background(), info1.Reply) // late, for the ended call
	defer stop1()
	select {
	case <-rctx1.Done():
	default:
		t.Fatalf("context for the abandoned call: live, want done")
	}
	select {
	case <-rctx2.Done():
		t.Fatalf("context for the current call: done (%v), want live", context.Cause(rctx2))
	case <-time.After(10 * time.Millisecond):
	}
	wantErr(t, "Reply", srv.Reply(info2.Reply, &Msg{}), nil)
	wantErr(t, "Call", <-done2, nil)
	within(t, 5*time.Second, "context after the reply", func() { <-rctx2.Done() })
}
