package kernel

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestSendRecv(t *testing.T) {
	for _, tc := range []struct {
		name      string
		recvFirst bool
		bufCap    int
		payload   string
		wantErr   error
		want      string
	}{
		{"receiver waits", true, 64, "hello", nil, "hello"},
		{"sender waits", false, 64, "hello", nil, "hello"},
		{"empty payload", true, 64, "", nil, ""},
		{"truncated", true, 3, "hello", ErrTruncated, "hel"},
		{"truncated sender waits", false, 3, "hello", ErrTruncated, "hel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, pds := harness(t, pair(AllRights), nil)
			a, b := pds["a"], pds["b"]
			ea, eb := mustSlot(t, a, "ep"), mustSlot(t, b, "ep")
			m := Msg{Label: 7, Words: [MaxWords]uint64{1, 2, 3, 4}, Payload: []byte(tc.payload)}
			got := make(chan recvd, 1)
			recv := func() {
				r := recvd{m: Msg{Payload: make([]byte, 0, tc.bufCap)}}
				r.info, r.err = b.Recv(eb, &r.m)
				got <- r
			}
			if tc.recvFirst {
				go recv()
				time.Sleep(10 * time.Millisecond)
				wantErr(t, "Send", a.Send(ea, &m), nil)
			} else {
				sent := make(chan error, 1)
				go func() { sent <- a.Send(ea, &m) }()
				time.Sleep(10 * time.Millisecond)
				recv()
				wantErr(t, "Send", <-sent, nil)
			}
			r := <-got
			wantErr(t, "Recv", r.err, tc.wantErr)
			if r.m.Label != 7 || r.m.Words != m.Words {
				t.Errorf("label/words: got %d %v, want 7 %v", r.m.Label, r.m.Words, m.Words)
			}
			if string(r.m.Payload) != tc.want {
				t.Errorf("payload: got %q, want %q", r.m.Payload, tc.want)
			}
			if r.info.Reply != 0 {
				t.Errorf("reply cap of a Send: got %d, want 0", r.info.Reply)
			}
		})
	}
}

func TestSendTooBig(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	err := a.NBSend(mustSlot(t, a, "ep"), &Msg{Payload: make([]byte, MaxPayload+1)})
	wantErr(t, "NBSend of MaxPayload+1", err, ErrTruncated)
	err = a.NBSend(mustSlot(t, a, "ep"), &Msg{NCaps: MaxCaps + 1})
	wantErr(t, "NBSend with NCaps > MaxCaps", err, ErrInvalidCap)
}

func TestNonBlocking(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ea, eb := mustSlot(t, a, "ep"), mustSlot(t, b, "ep")
	if err := a.NBSend(ea, &Msg{Label: 1}); err != ErrWouldBlock {
		t.Fatalf("NBSend with no receiver: got %v, want ErrWouldBlock (unwrapped)", err)
	}
	if _, err := b.NBRecv(eb, &Msg{}); err != ErrWouldBlock {
		t.Fatalf("NBRecv with no sender: got %v, want ErrWouldBlock (unwrapped)", err)
	}
	sent := make(chan error, 1)
	go func() { sent <- a.Send(ea, &Msg{Label: 2}) }()
	var m Msg
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := b.NBRecv(eb, &m)
		if err == nil {
			break
		}
		if err != ErrWouldBlock || time.Now().After(deadline) {
			t.Fatalf("NBRecv with a queued sender: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if m.Label != 2 {
		t.Fatalf("NBRecv label: got %d, want 2 (the dropped NBSend must not arrive)", m.Label)
	}
	wantErr(t, "Send", <-sent, nil)
}

func TestBadgeDelivery(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ea, eb := mustSlot(t, a, "ep"), mustSlot(t, b, "ep")
	for _, tc := range []struct {
		name  string
		badge Badge
	}{{"unbadged", 0}, {"badge 1", 1}, {"badge max", ^Badge(0)}} {
		t.Run(tc.name, func(t *testing.T) {
			c := ea
			if tc.badge != 0 {
				var err error
				if c, err = a.Mint(ea, AllRights, tc.badge); err != nil {
					t.Fatalf("Mint: %v", err)
				}
				defer a.Delete(c)
			}
			ch := recvAsync(b, eb)
			wantErr(t, "Send", a.Send(c, &Msg{}), nil)
			r := <-ch
			if r.info.Badge != tc.badge {
				t.Fatalf("badge: got %#x, want %#x", r.info.Badge, tc.badge)
			}
		})
	}
	t.Run("cannot rebadge", func(t *testing.T) {
		c, err := a.Mint(ea, AllRights, 5)
		if err != nil {
			t.Fatalf("Mint: %v", err)
		}
		_, err = a.Mint(c, AllRights, 6)
		wantErr(t, "re-Mint with another badge", err, ErrRights)
		d, err := a.Mint(c, Write, 0)
		wantErr(t, "Mint keeping the badge", err, nil)
		ch := recvAsync(b, eb)
		wantErr(t, "Send", a.Send(d, &Msg{}), nil)
		if r := <-ch; r.info.Badge != 5 {
			t.Fatalf("badge through a derived cap: got %#x, want 5", r.info.Badge)
		}
	})
}

func TestCallReply(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ea, eb := mustSlot(t, a, "ep"), mustSlot(t, b, "ep")
	go func() {
		m := Msg{Payload: make([]byte, 0, 64)}
		var r Msg
		var reply Cap
		for i := 0; i < 3; i++ {
			info, err := b.ReplyRecv(eb, reply, &r, &m)
			if err != nil {
				return
			}
			reply = info.Reply
			r = Msg{Label: m.Label + 100, Payload: append(bytes.ToUpper(m.Payload), '!')}
		}
		b.Reply(reply, &r)
	}()
	for i, s := range []string{"one", "two", "three"} {
		m := Msg{Label: uint64(i), Payload: append(make([]byte, 0, 64), s...)}
		wantErr(t, "Call", a.Call(ea, &m), nil)
		if want := string(bytes.ToUpper([]byte(s))) + "!"; string(m.Payload) != want || m.Label != uint64(i)+100 {
			t.Fatalf("reply %d: got %d %q, want %d %q", i, m.Label, m.Payload, i+100, want)
		}
	}
}

func TestReplyOneShot(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ea, eb := mustSlot(t, a, "ep"), mustSlot(t, b, "ep")
	called := make(chan error, 1)
	go func() { called <- a.Call(ea, &Msg{}) }()
	var m Msg
	info, err := b.Recv(eb, &m)
	wantErr(t, "Recv", err, nil)
	if info.Reply == 0 {
		t.Fatalf("reply cap of a Call: got 0, want a slot")
	}
	ci, err := b.Inspect(info.Reply)
	if err != nil || ci.Kind != KindReply {
		t.Fatalf("Inspect reply cap: got %+v, %v, want a reply cap", ci, err)
	}
	_, err = b.Copy(info.Reply)
	wantErr(t, "Copy of a reply cap", err, ErrRights)
	wantErr(t, "Reply", b.Reply(info.Reply, &Msg{Label: 9}), nil)
	wantErr(t, "Call", <-called, nil)
	wantErr(t, "second Reply", b.Reply(info.Reply, &Msg{}), ErrInvalidCap)
}

func TestDeleteReplyAbortsCaller(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	called := make(chan error, 1)
	go func() { called <- a.Call(mustSlot(t, a, "ep"), &Msg{}) }()
	info, err := b.Recv(mustSlot(t, b, "ep"), &Msg{})
	wantErr(t, "Recv", err, nil)
	wantErr(t, "Delete reply", b.Delete(info.Reply), nil)
	within(t, 5*time.Second, "Call", func() { wantErr(t, "Call", <-called, ErrAborted) })
}

func TestCallCtxAbandonsReply(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	ctx, cancel := contextWithCancel()
	called := make(chan error, 1)
	go func() { called <- a.CallCtx(ctx, mustSlot(t, a, "ep"), &Msg{}) }()
	info, err := b.Recv(mustSlot(t, b, "ep"), &Msg{})
	wantErr(t, "Recv", err, nil)
	cancel()
	within(t, 5*time.Second, "CallCtx", func() {
		if err := <-called; !errors.Is(err, errCanceled) {
			t.Errorf("CallCtx: got %v, want context.Canceled", err)
		}
	})
	wantErr(t, "Reply to a caller that gave up", b.Reply(info.Reply, &Msg{}), ErrAborted)
}

func TestCapTransfer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rights    Rights // the sender's endpoint cap
		call      bool
		wantCaps  int
		wantMoved bool
	}{
		{"send with Grant", Write | Grant, false, 2, true},
		{"send without Grant", Write, false, 0, false},
		{"call with Grant", Write | Grant, true, 2, true},
		{"call with GrantReply only", Write | GrantReply, true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, pds := harness(t, pair(AllRights), nil)
			a, b := pds["a"], pds["b"]
			ep, err := a.Mint(mustSlot(t, a, "ep"), tc.rights, 0)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			n1, _ := a.Mint(mustSlot(t, a, "n"), Write, 0x10)
			r1, _ := a.Mint(mustSlot(t, a, "r"), Read, 0)
			m := Msg{Caps: [MaxCaps]Cap{n1, r1}, NCaps: 2}
			ch := recvAsync(b, mustSlot(t, b, "ep"))
			called := make(chan error, 1)
			if tc.call {
				go func() { called <- a.Call(ep, &m) }()
			} else {
				wantErr(t, "Send", a.Send(ep, &m), nil)
			}
			r := <-ch
			wantErr(t, "Recv", r.err, nil)
			if r.m.NCaps != tc.wantCaps {
				t.Fatalf("received NCaps: got %d, want %d", r.m.NCaps, tc.wantCaps)
			}
			if tc.wantCaps > 0 {
				ni, err := b.Inspect(r.m.Caps[0])
				if err != nil || ni.Kind != KindNotification || ni.Rights != Write || ni.Badge != 0x10 {
					t.Fatalf("transferred cap 0: got %+v, %v, want the Write notification with badge 0x10", ni, err)
				}
				ri, err := b.Inspect(r.m.Caps[1])
				if err != nil || ri.Kind != KindRing || ri.Rights != Read {
					t.Fatalf("transferred cap 1: got %+v, %v, want the Read ring cap", ri, err)
				}
			}
			_, err = a.Inspect(n1)
			if moved := errors.Is(err, ErrInvalidCap); moved != tc.wantMoved {
				t.Fatalf("sender's slot after transfer: got %v, want moved=%v", err, tc.wantMoved)
			}
			if tc.call {
				// Replying with a cap: the server's cap has Grant, so the
				// reply cap does too and the cap comes back.
				e2, _ := b.NewEndpoint()
				wantErr(t, "Reply", b.Reply(r.info.Reply, &Msg{Caps: [MaxCaps]Cap{e2}, NCaps: 1}), nil)
				wantErr(t, "Call", <-called, nil)
				if m.NCaps != 1 {
					t.Fatalf("caps in the reply: got %d, want 1", m.NCaps)
				}
				if ci, err := a.Inspect(m.Caps[0]); err != nil || ci.Kind != KindEndpoint {
					t.Fatalf("cap from the reply: got %+v, %v, want an endpoint", ci, err)
				}
			}
		})
	}
}

func TestReplyWithoutGrantDropsCaps(t *testing.T) {
	sys := pair(AllRights)
	sys.Components[1].Caps[0].Rights = Read // the server's cap lacks Grant
	_, pds := harness(t, sys, nil)
	a, b := pds["a"], pds["b"]
	called := make(chan error, 1)
	m := Msg{}
	go func() { called <- a.Call(mustSlot(t, a, "ep"), &m) }()
	info, err := b.Recv(mustSlot(t, b, "ep"), &Msg{})
	wantErr(t, "Recv", err, nil)
	e2, _ := b.NewEndpoint()
	wantErr(t, "Reply", b.Reply(info.Reply, &Msg{Caps: [MaxCaps]Cap{e2}, NCaps: 1}), nil)
	wantErr(t, "Call", <-called, nil)
	if m.NCaps != 0 {
		t.Fatalf("caps in a reply without Grant: got %d, want 0", m.NCaps)
	}
	if _, err := b.Inspect(e2); err != nil {
		t.Fatalf("server's cap after a reply without Grant: %v, want it kept", err)
	}
}

func TestNotification(t *testing.T) {
	_, pds := harness(t, pair(AllRights), nil)
	a, b := pds["a"], pds["b"]
	n := mustSlot(t, a, "n")
	s1, _ := a.Mint(n, Write, 0b001)
	s2, _ := a.Mint(n, Write, 0b100)
	if _, err := b.Poll(mustSlot(t, b, "n")); err != ErrWouldBlock {
		t.Fatalf("Poll of a clear word: got %v, want ErrWouldBlock", err)
	}
	wantErr(t, "Signal", a.Signal(s1), nil)
	wantErr(t, "Signal", a.Signal(s2), nil)
	wantErr(t, "Signal", a.Signal(s2), nil)
	v, err := b.Wait(mustSlot(t, b, "n"))
	if err != nil || v != 0b101 {
		t.Fatalf("Wait: got %#b, %v, want 0b101", v, err)
	}
	got := make(chan uint64, 1)
	go func() { v, _ := b.Wait(mustSlot(t, b, "n")); got <- v }()
	time.Sleep(10 * time.Millisecond)
	wantErr(t, "Signal unbadged", a.Signal(n), nil)
	within(t, 5*time.Second, "Wait", func() {
		if v := <-got; v != 1 {
			t.Errorf("Wait after an unbadged Signal: got %d, want 1", v)
		}
	})
}
