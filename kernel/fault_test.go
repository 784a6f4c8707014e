package kernel

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// faultSystem: sup supervises server (faults on "faults" with badge 7);
// client calls server on "svc"; bystander talks to echo on "side".
func faultSystem() *System {
	return &System{
		Endpoints: []ObjectSpec{{Name: "svc"}, {Name: "faults"}, {Name: "side"}},
		Components: []ComponentSpec{
			{Name: "sup", Caps: []CapSpec{
				{Name: "faults", Object: "faults", Rights: Read},
				{Name: "server", Object: "server", Rights: Write},
			}},
			{Name: "server", Supervisor: "sup", FaultEndpoint: "faults", FaultBadge: 7, Caps: []CapSpec{
				{Name: "svc", Object: "svc", Rights: Read},
			}},
			{Name: "client", Caps: []CapSpec{{Name: "svc", Object: "svc", Rights: Write | GrantReply}}},
			{Name: "echo", Caps: []CapSpec{{Name: "side", Object: "side", Rights: Read}}},
			{Name: "bystander", Caps: []CapSpec{{Name: "side", Object: "side", Rights: Write | GrantReply}}},
		},
	}
}

func TestFaultIsolation(t *testing.T) {
	var served, sideCalls atomic.Int64
	sideErr := make(chan error, 1)
	progs := map[string]Program{
		"server": func(pd *PD) error {
			svc, err := pd.Slot("svc")
			if err != nil {
				return err
			}
			m := Msg{Payload: make([]byte, 0, 64)}
			for {
				info, err := pd.Recv(svc, &m)
				if err != nil {
					return nil
				}
				if string(m.Payload) == "panic" {
					panic("server: asked to panic")
				}
				served.Add(1)
				pd.Reply(info.Reply, &Msg{Label: 1})
			}
		},
		"echo": func(pd *PD) error {
			side, _ := pd.Slot("side")
			var m, r Msg
			var reply Cap
			for {
				info, err := pd.ReplyRecv(side, reply, &r, &m)
				if err != nil {
					return nil
				}
				reply, r = info.Reply, Msg{Label: m.Label}
			}
		},
		"bystander": func(pd *PD) error {
			side, _ := pd.Slot("side")
			for i := uint64(1); pd.Context().Err() == nil; i++ {
				m := Msg{Label: i}
				if err := pd.Call(side, &m); err != nil {
					if pd.Context().Err() == nil {
						sideErr <- err
					}
					return nil
				}
				if m.Label != i {
					sideErr <- errors.New("bystander: wrong echo")
					return nil
				}
				sideCalls.Add(1)
			}
			return nil
		},
	}
	k, pds := harness(t, faultSystem(), progs)
	client, sup := pds["client"], pds["sup"]
	svc := mustSlot(t, client, "svc")

	call := func(s string) error {
		m := Msg{Payload: []byte(s)}
		var err error
		within(t, 5*time.Second, "Call "+s, func() { err = client.Call(svc, &m) })
		return err
	}
	wantErr(t, "first call", call("hi"), nil)
	before := sideCalls.Load()

	t.Run("caller gets ErrAborted", func(t *testing.T) {
		wantErr(t, "call that panics the server", call("panic"), ErrAborted)
	})
	t.Run("supervisor gets the fault", func(t *testing.T) {
		m := Msg{Payload: make([]byte, 0, MaxPayload)}
		var info RecvInfo
		var err error
		within(t, 5*time.Second, "Recv fault", func() { info, err = sup.Recv(mustSlot(t, sup, "faults"), &m) })
		wantErr(t, "Recv fault", err, nil)
		f, ok := DecodeFault(&m)
		if !ok || info.Badge != 7 || f.Component != "server" || f.Kind != FaultPanic || f.Incarnation != 1 ||
			!strings.Contains(f.Reason, "asked to panic") || !strings.Contains(f.Stack, "goroutine") {
			t.Fatalf("fault: got badge %d %+v ok=%v, want badge 7 from server, a panic with its stack", info.Badge, f, ok)
		}
		if st, _, _ := k.State("server"); st != "faulted" {
			t.Fatalf("server state: got %q, want faulted", st)
		}
	})
	t.Run("restart works", func(t *testing.T) {
		wantErr(t, "Restart", sup.Restart(mustSlot(t, sup, "server")), nil)
		wantErr(t, "call after restart", call("again"), nil)
		if st, n, _ := k.State("server"); st != "running" || n != 2 {
			t.Fatalf("server state: got %q incarnation %d, want running 2", st, n)
		}
	})
	t.Run("third component never notices", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for sideCalls.Load() < before+100 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		select {
		case err := <-sideErr:
			t.Fatalf("bystander: %v", err)
		default:
		}
		if got := sideCalls.Load(); got < before+100 {
			t.Fatalf("bystander calls: got %d, want progress past %d", got, before+100)
		}
		for _, n := range []string{"bystander", "echo", "client"} {
			if st, inc, _ := k.State(n); st != "running" || inc != 1 {
				t.Fatalf("%s: got %q incarnation %d, want running 1", n, st, inc)
			}
		}
	})
}

func TestBlockedSendAbortedWhenReceiverDies(t *testing.T) {
	_, pds := harness(t, faultSystem(), map[string]Program{
		"server": func(pd *PD) error {
			<-pd.Context().Done()
			return nil
		},
	})
	client := pds["client"]
	svc := mustSlot(t, client, "svc")
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"send", func() error { return client.Send(svc, &Msg{}) }},
		{"call", func() error { return client.Call(svc, &Msg{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- tc.op() }()
			time.Sleep(10 * time.Millisecond)
			wantErr(t, "Restart", pds["sup"].Restart(mustSlot(t, pds["sup"], "server")), nil)
			within(t, 5*time.Second, tc.name, func() { wantErr(t, tc.name, <-done, ErrAborted) })
		})
	}
}

func TestErrorExitIsFaultAndOldPDIsDead(t *testing.T) {
	var first atomic.Pointer[PD]
	_, pds := harness(t, faultSystem(), map[string]Program{
		"server": func(pd *PD) error {
			if first.CompareAndSwap(nil, pd) {
				return errors.New("boom")
			}
			<-pd.Context().Done()
			return nil
		},
	})
	sup := pds["sup"]
	m := Msg{Payload: make([]byte, 0, MaxPayload)}
	_, err := sup.Recv(mustSlot(t, sup, "faults"), &m)
	wantErr(t, "Recv fault", err, nil)
	if f, _ := DecodeFault(&m); f.Kind != FaultError || f.Reason != "boom" {
		t.Fatalf("fault: got %+v, want an error fault with reason boom", f)
	}
	old := first.Load()
	wantErr(t, "Restart", sup.Restart(mustSlot(t, sup, "server")), nil)
	_, err = old.Slot("svc") // names survive, but every verb fails
	_ = err
	_, err = old.NBRecv(1, &Msg{})
	wantErr(t, "verb on a dead incarnation", err, ErrAborted)
}

func TestStopUnblocks(t *testing.T) {
	k, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	done := make(chan error, 1)
	go func() { done <- a.Send(mustSlot(t, a, "ep"), &Msg{}) }()
	time.Sleep(10 * time.Millisecond)
	within(t, 5*time.Second, "Stop", k.Stop)
	wantErr(t, "Send after Stop", <-done, ErrClosed)
}

func TestSpawn(t *testing.T) {
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{{Name: "parent", Budget: Budget{Bufs: 10, Objects: 4}, Caps: []CapSpec{
			{Name: "ep", Object: "ep", Rights: AllRights},
		}}},
	}
	k, pds := harness(t, sys, nil)
	p := pds["parent"]
	faults, _ := p.NewEndpoint()
	got := make(chan *PD, 2)
	prog := func(pd *PD) error {
		got <- pd
		if pd.Budget().Limit.Bufs != 4 {
			panic("wrong budget")
		}
		<-pd.Context().Done()
		return nil
	}
	t.Run("rights must be a subset", func(t *testing.T) {
		ro, _ := p.Mint(mustSlot(t, p, "ep"), Read, 0)
		_, err := p.Spawn(ComponentSpec{Name: "bad", Caps: []CapSpec{{Name: "ep", Src: ro, Rights: Write}}}, prog)
		wantErr(t, "Spawn", err, ErrRights)
	})
	t.Run("budget must fit", func(t *testing.T) {
		_, err := p.Spawn(ComponentSpec{Name: "big", Budget: Budget{Bufs: 11}}, prog)
		wantErr(t, "Spawn", err, ErrNoBudget)
	})
	child, err := p.Spawn(ComponentSpec{Name: "child", FaultCap: faults, Budget: Budget{Bufs: 4},
		Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Write, Badge: 3}}}, prog)
	wantErr(t, "Spawn", err, nil)
	c := <-got
	if u := p.Budget(); u.Limit.Bufs != 6 {
		t.Fatalf("parent's budget after the split: got %d bufs, want 6", u.Limit.Bufs)
	}
	ci, err := c.Inspect(mustSlot(t, c, "ep"))
	if err != nil || ci.Rights != Write || ci.Badge != 3 {
		t.Fatalf("child's cap: got %+v, %v, want Write badge 3", ci, err)
	}
	wantErr(t, "GrantBudget", p.GrantBudget(child, Budget{Bufs: 2}), nil)
	if c.Budget().Limit.Bufs != 6 || p.Budget().Limit.Bufs != 4 {
		t.Fatalf("after granting 2: child %d parent %d, want 6 and 4", c.Budget().Limit.Bufs, p.Budget().Limit.Bufs)
	}
	wantErr(t, "Revoke parent's ep", p.Revoke(mustSlot(t, p, "ep")), nil)
	if err := c.NBSend(mustSlot(t, c, "ep"), &Msg{}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("child's cap after the parent revoked: got %v, want ErrRevoked", err)
	}
	d := k.Describe()
	if len(d.Components) != 2 || d.Components[1].Supervisor != "parent" {
		t.Fatalf("Describe: got %+v, want parent and its child", d.Components)
	}
	wantErr(t, "Kill", p.Kill(child), nil)
	if st, _, _ := k.State("child"); st != "killed" {
		t.Fatalf("child state: got %q, want killed", st)
	}
}

func TestKillWakesOwnBlockedVerbs(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func(pd *PD) error
	}{
		{"recv", func(pd *PD) error { _, err := pd.Recv(mustSlot(t, pd, "ep"), &Msg{}); return err }},
		{"send", func(pd *PD) error { return pd.Send(mustSlot(t, pd, "ep"), &Msg{}) }},
		{"wait", func(pd *PD) error { _, err := pd.Wait(mustSlot(t, pd, "n")); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, pds := harness(t, pair(AllRights), nil)
			done := make(chan error, 1)
			go func() { done <- tc.op(pds["b"]) }()
			time.Sleep(10 * time.Millisecond)
			wantErr(t, "Kill", k.Kill("b"), nil)
			within(t, 5*time.Second, tc.name, func() { wantErr(t, tc.name, <-done, ErrAborted) })
		})
	}
}

func TestStatsCountsFaultsAndBudget(t *testing.T) {
	var first atomic.Pointer[PD]
	sys := faultSystem()
	sys.Components[1].Budget = Budget{Bufs: 4}
	k, pds := harness(t, sys, map[string]Program{
		"server": func(pd *PD) error {
			if first.CompareAndSwap(nil, pd) {
				return errors.New("boom")
			}
			if _, err := pd.AllocBuf(); err != nil { // held until the end
				return err
			}
			<-pd.Context().Done()
			return nil
		},
	})
	sup := pds["sup"]
	m := Msg{Payload: make([]byte, 0, MaxPayload)}
	_, err := sup.Recv(mustSlot(t, sup, "faults"), &m)
	wantErr(t, "Recv fault", err, nil)
	s, err := k.Stats("server")
	wantErr(t, "Stats", err, nil)
	if s.State != "faulted" || s.Incarnations != 1 || s.Faults != 1 {
		t.Fatalf("Stats after the fault: got %+v, want faulted, 1 incarnation, 1 fault", s)
	}
	wantErr(t, "Restart", sup.Restart(mustSlot(t, sup, "server")), nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err = k.Stats("server")
		wantErr(t, "Stats", err, nil)
		if s.Budget.Bufs == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if s.State != "running" || s.Incarnations != 2 || s.Faults != 1 || s.Budget.Bufs != 1 {
		t.Fatalf("Stats after the restart: got %+v, want running, 2 incarnations, 1 fault, 1 buffer in use", s)
	}
	if s.Budget.Limit.Bufs != 4 {
		t.Fatalf("Stats budget limit: got %+v, want 4 buffers", s.Budget.Limit)
	}
	if _, err := k.Stats("nobody"); !errors.Is(err, ErrInvalidCap) {
		t.Fatalf("Stats of no component: got %v, want ErrInvalidCap", err)
	}
}
