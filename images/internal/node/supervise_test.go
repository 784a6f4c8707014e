package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

// panicky wraps an IPCP so that its management handler panics on the
// command "panic", as a bug in an IPCP would.
type panicky struct{ ipcpImpl }

func (p panicky) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if req.Cmd == "panic" {
		panic("test: a bug in " + p.Info().Name + "'s management handler")
	}
	if m, ok := p.ipcpImpl.(ipcp.Manager); ok {
		return m.Mgmt(ctx, req)
	}
	return ipcp.MgmtResp{}, fmt.Errorf("no command %q: %w", req.Cmd, flow.ErrInvalid)
}

// startNodeWith starts a node from cfg whose IPCPs are wrapped by wrap.
func startNodeWith(t *testing.T, cfg string, setup func(*Node), extras ...Extra) *Node {
	t.Helper()
	c, err := ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(c, extras...)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(n)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// ipcpRow returns the "ouro ipcps" row of ipcp as column → value.
func ipcpRow(t *testing.T, b *irm.Broker, proc string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil {
		t.Fatalf("ipcps: %v", err)
	}
	for _, row := range r.Table.Rows {
		if row[0] == proc {
			m := map[string]string{}
			for i, c := range r.Table.Columns {
				m[c] = row[i]
			}
			return m
		}
	}
	t.Fatalf("ipcps: no %s in %v", proc, r.Table.Rows)
	return nil
}

// waitState waits until ipcp is in state, or fails.
func waitState(t *testing.T, b *irm.Broker, proc, state string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		row := ipcpRow(t, b, proc)
		if row["state"] == state {
			return row
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %q, want %q (%v)", proc, row["state"], state, row)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failsFast checks that err is an error naming ipcp that the caller got
// at once, not by its own deadline.
func failsFast(t *testing.T, what string, err error, proc string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s while %s is down: no error", what, proc)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, flow.ErrTimeout):
		t.Errorf("%s while %s is down: hung until the deadline: %v", what, proc, err)
	case !strings.Contains(err.Error(), proc):
		t.Errorf("%s while %s is down: %v, want an error naming it", what, proc, err)
	}
}

// TestIPCPFaultRestart makes the management handler of a UDP shim panic:
// the IPCP is marked faulted at once, its flows are closed, calls to it
// fail at once with an error naming it, it is restarted (at once after a
// first fault, after a back-off when it faults again soon), registers
// its names again, and serves flows again.
func TestIPCPFaultRestart(t *testing.T) {
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	appB, brB := mgmtApp("app")
	startNodeWith(t, fmt.Sprintf(`
[node]
name = "b"
[irm]
restart_min = "3s"
restart_stable = "1m"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
`, pb), func(n *Node) {
		n.wrapIPCP = func(i ipcpImpl) ipcpImpl { return panicky{i} }
	}, appB)
	appA, brA := app("app")
	startNode(t, fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "udp"
layer = "net"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { echo = "127.0.0.1:%d", late = "127.0.0.1:%d" }
`, pa, pb, pb), appA)
	a, b := <-brA, <-brB
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	roundTrip := func(what string) flow.Port {
		t.Helper()
		acc := make(chan flow.Port, 1)
		go func() {
			p, _, err := b.Accept(ctx)
			if err != nil {
				t.Errorf("%s: accept: %v", what, err)
			}
			acc <- p
		}()
		pa, _, err := a.Alloc(ctx, "echo", flow.BestEffort())
		if err != nil {
			t.Fatalf("%s: alloc: %v", what, err)
		}
		pb := <-acc
		if pb == nil {
			t.FailNow()
		}
		if err := pa.Write([]byte("ping"), time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		buf := make([]byte, 64)
		if n, err := pb.Read(buf, time.Now().Add(2*time.Second)); err != nil || string(buf[:n]) != "ping" {
			t.Fatalf("%s: read %q, %v", what, buf[:n], err)
		}
		pa.Close()
		return pb
	}
	held := roundTrip("before the fault")

	// First fault: restarted at once, and it comes back by itself.
	if _, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: "panic", IPCP: "b.udp"}); err == nil {
		t.Fatal("the panicking command returned no error")
	}
	if _, err := held.Read(make([]byte, 64), time.Now().Add(5*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("a flow through the faulted IPCP: read %v, want ErrClosed", err)
	}
	row := waitState(t, b, "b.udp", irm.StateOperational)
	if row["restarts"] != "1" || !strings.Contains(row["last_fault"], "panic") {
		t.Errorf("after one fault: %v, want 1 restart and the panic as last fault", row)
	}
	roundTrip("after the restart") // "echo" was registered again

	// A second fault soon after: restarted only after restart_min (3s);
	// meanwhile every call to it fails at once.
	b.Mgmt(ctx, ipcp.MgmtReq{Cmd: "panic", IPCP: "b.udp"})
	waitState(t, b, "b.udp", irm.StateFaulted) // backing off
	callCtx, callCancel := context.WithTimeout(ctx, 2*time.Second)
	defer callCancel()
	down := time.Now()
	_, err := b.Mgmt(callCtx, ipcp.MgmtReq{Cmd: "panic", IPCP: "b.udp"})
	failsFast(t, "management", err, "b.udp")
	_, err = b.Mgmt(callCtx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: "x", Layer: "net"})
	if err != nil {
		t.Errorf("reg while b.udp is down: %v, want it recorded for its restart", err)
	}
	if err := b.Bind(callCtx, "late"); err != nil { // auto-registration must not hang
		t.Errorf("bind while b.udp is down: %v", err)
	}
	_, _, err = b.Alloc(callCtx, "anything", flow.BestEffort())
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, flow.ErrTimeout) {
		t.Errorf("alloc while b.udp is down: %v, want a prompt error", err)
	}
	stats, err := b.Mgmt(callCtx, ipcp.MgmtReq{Cmd: "stats", IPCP: "b.udp"})
	if err != nil || !strings.Contains(fmt.Sprint(stats.Table.Rows), "faulted") {
		t.Errorf("stats while b.udp is down: %v, %v; want its supervision state", stats.Table.Rows, err)
	}
	if callCtx.Err() != nil {
		t.Fatal("calls to the faulted IPCP took until the deadline")
	}
	t.Logf("six calls to the faulted IPCP took %v", time.Since(down))

	row = waitState(t, b, "b.udp", irm.StateOperational)
	if row["restarts"] != "2" {
		t.Errorf("after two faults: %v, want 2 restarts", row)
	}
	roundTrip("after the second restart")
	// The name bound while it was down was registered on its hello.
	acc := make(chan error, 1)
	go func() {
		p, _, err := b.Accept(ctx)
		if err == nil {
			p.Close()
		}
		acc <- err
	}()
	p, _, err := a.Alloc(ctx, "late", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc of a name bound while its IPCP was down: %v", err)
	}
	p.Close()
	if err := <-acc; err != nil {
		t.Fatal(err)
	}
}

// TestBackoff checks the restart delays of a crash loop: at once after a
// stable run, then doubling from Min up to Max, and at once again after
// a stable run.
func TestBackoff(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := irm.NewBackoff(irm.RestartPolicy{Min: 100 * time.Millisecond, Max: 400 * time.Millisecond, Stable: 10 * time.Second}, t0)
	now := t0.Add(time.Minute)
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond}
	for i, w := range want {
		if got := b.Fault(now); got != w {
			t.Fatalf("fault %d in a row: delay %v, want %v", i+1, got, w)
		}
		now = now.Add(w + time.Millisecond)
		b.Started(now)
		now = now.Add(time.Second) // faults again 1s after each restart
	}
	b.Started(now)
	if got := b.Fault(now.Add(11 * time.Second)); got != 0 {
		t.Fatalf("fault after a stable run: delay %v, want 0", got)
	}
}

// TestCrashLoop makes an in-node app fault at every start: the IRM
// restarts it with growing delays and reports it, and the rest of the
// node is not disturbed.
func TestCrashLoop(t *testing.T) {
	var mu sync.Mutex
	var restarts []string
	starts := make(chan time.Time, 16)
	crash := Extra{Name: "app.crash", Program: func(pd *kernel.PD) error {
		starts <- time.Now()
		return errors.New("test: crashes at every start")
	}}
	appX, brX := mgmtApp("app")
	n := startNodeWith(t, `
[node]
name = "n"
[irm]
restart_min = "50ms"
restart_max = "200ms"
[[ipcp]]
kind = "local"
`, func(n *Node) {
		n.log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) {
			if s := string(p); strings.Contains(s, "faulted=app.crash") {
				mu.Lock()
				restarts = append(restarts, s)
				mu.Unlock()
			}
		}), nil))
	}, crash, appX)
	b := <-brX
	var times []time.Time
	for len(times) < 5 {
		select {
		case at := <-starts:
			times = append(times, at)
		case <-time.After(10 * time.Second):
			t.Fatalf("the crashing app was started %d times, want 5", len(times))
		}
	}
	mu.Lock()
	logged := append([]string(nil), restarts...)
	mu.Unlock()
	want := []string{"delay=0s", "delay=50ms", "delay=100ms", "delay=200ms"}
	for i, w := range want {
		if i >= len(logged) || !strings.Contains(logged[i], w+" ") && !strings.HasSuffix(strings.TrimSpace(logged[i]), w) {
			t.Fatalf("restart log %q, want delays %v", logged, want)
		}
	}
	// The rest of the node works meanwhile.
	if _, err := b.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs}); err != nil {
		t.Fatal(err)
	}
	if st, _, err := n.Kernel().State(ipcpComponent("n.local")); err != nil || st != "running" {
		t.Fatalf("the IPCP: %s, %v", st, err)
	}
}

// TestIRMRestart makes the IRM fault: the root supervisor restarts it, a
// fresh IRM instance restarts every other component, programs on the
// socket see their session end, old session caps are dead, and the node
// serves again (in-node apps bound again, new sessions work).
func TestIRMRestart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "n.sock")
	trigger := make(chan struct{}, 1)
	appX, brX := app("client")
	c, err := ParseConfig([]byte(`
[node]
name = "n"
[[ipcp]]
kind = "local"
[[app]]
kind = "echo"
`))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := Apps(c, AppEnv{Log: logx.Test(t)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(c, append(apps, Gateway(sock, logx.Test(t)), appX)...)
	if err != nil {
		t.Fatal(err)
	}
	n.wrapIRM = func(p kernel.Program) kernel.Program {
		return func(pd *kernel.PD) error {
			pd.Go(func() {
				select {
				case <-trigger:
					panic("test: a bug in the IRM")
				case <-pd.Context().Done():
				}
			})
			return p(pd)
		}
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	old := <-brX
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	prog, err := flow.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if err := prog.Bind(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		_, _, err := prog.Accept(ctx)
		accepted <- err
	}()
	echoFlow := func(b flow.Broker) error {
		p, _, err := b.Alloc(ctx, "echo", flow.BestEffort())
		if err != nil {
			return err
		}
		defer p.Close()
		if err := p.Write([]byte("hi"), time.Now().Add(2*time.Second)); err != nil {
			return err
		}
		buf := make([]byte, 16)
		_, err = p.Read(buf, time.Now().Add(2*time.Second))
		return err
	}
	// The echo app registers its name as it starts, which may be after
	// the node reports ready: wait for it (5 s at most).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := echoFlow(prog)
		if err == nil {
			break
		}
		if !errors.Is(err, flow.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("before the fault: %v", err)
		}
	}
	_, ipcpIncs, _ := n.Kernel().State(ipcpComponent("n.local"))

	trigger <- struct{}{}
	select {
	case err := <-accepted:
		if err == nil {
			t.Fatal("a program's Accept succeeded across the IRM's restart")
		}
	case <-ctx.Done():
		t.Fatal("a program's session did not end when the IRM died")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, incs, _ := n.Kernel().State(irmName)
		_, ipIncs, _ := n.Kernel().State(ipcpComponent("n.local"))
		if incs == 2 && ipIncs > ipcpIncs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("IRM incarnations %d (want 2), IPCP %d (want > %d)", incs, ipIncs, ipcpIncs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The old incarnation's session caps are gone with its components.
	if err := old.Bind(ctx, "stale"); err == nil {
		t.Error("a session of the old IRM still works")
	}
	// A new program session works, "svc" is free again, and the in-node
	// echo app is bound again. A session opened while the restarted IRM
	// was still restarting the gateway ends with it (EOF): dial again.
	deadline = time.Now().Add(20 * time.Second) // restarts in turn, on a loaded machine
	for {
		again, err := flow.Dial(sock)
		if err == nil {
			if err = again.Bind(ctx, "svc"); err == nil {
				err = echoFlow(again)
			}
			again.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("a session binding svc and the echo app after the IRM's restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lateStart is an IPCP that takes 100 ms to start, so says hello late.
type lateStart struct{ ipcpImpl }

func (l lateStart) Start() error {
	time.Sleep(100 * time.Millisecond)
	return l.ipcpImpl.Start()
}

// TestRegisterWhileLowerStarts starts, many times, a node whose broadcast
// IPCP registers its name in the local shim as the node starts, while the
// shim may not have said hello to the IRM yet (every other time surely
// not): the registration is recorded and made at the hello, not refused.
// The narrow race it once lost (the shim's hello between the IRM's two
// looks at its state: "has not started yet" refused the node's start) is
// closed by register deciding in one step; this test hit it only under
// load (TestScrapeMatchesStats did, in CI).
func TestRegisterWhileLowerStarts(t *testing.T) {
	const cfg = `
[node]
name = "a"
[[ipcp]]
kind = "local"
[[ipcp]]
name = "a.bc"
kind = "broadcast"
layer = "bc"
[ipcp.broadcast]
lower = ["local"]
`
	for i := range 10 {
		mgmt, brc := mgmtApp("mgmt")
		c, err := ParseConfig([]byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(c, mgmt)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			// Every other time the shim says hello late, surely after
			// the broadcast IPCP registered.
			n.wrapIPCP = func(i ipcpImpl) ipcpImpl {
				if i.Info().Name == "a.local" {
					return lateStart{i}
				}
				return i
			}
		}
		if err := n.Start(); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		b := <-brc
		waitState(t, b, "a.local", irm.StateOperational)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdNames})
		cancel()
		if err != nil {
			n.Stop()
			t.Fatal(err)
		}
		if !strings.Contains(fmt.Sprint(r.Table.Rows), "a.bc") {
			n.Stop()
			t.Fatalf("start %d: a.bc not registered: %v", i, r.Table)
		}
		n.Stop()
	}
}

// TestComponentsTable: "ouro components" lists every component as the
// kernel sees it, with the IRM's supervision where it supervises: an
// IPCP operational, a component that faulted once restarted with one
// fault counted, and budgets against their limits.
func TestComponentsTable(t *testing.T) {
	var once sync.Once
	boom := Extra{Name: "boom", Program: func(pd *kernel.PD) error {
		faulted := false
		once.Do(func() { faulted = true })
		if faulted {
			panic("boom: the first incarnation faults")
		}
		<-pd.Context().Done()
		return nil
	}}
	mgmt, brc := mgmtApp("mgmt")
	startNodeWith(t, "[node]\nname = \"a\"\n[[ipcp]]\nkind = \"local\"\nbufs = 128\n", nil, mgmt, boom)
	b := <-brc
	var rows map[string]map[string]string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdComponents})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rows = map[string]map[string]string{}
		for _, row := range r.Table.Rows {
			m := map[string]string{}
			for i, c := range r.Table.Columns {
				m[c] = row[i]
			}
			rows[row[0]] = m
		}
		if rows["boom"]["incarnations"] == "2" || time.Now().After(deadline) {
			break
		}
	}
	if c := rows["boom"]; c["faults"] != "1" || c["incarnations"] != "2" || c["state"] != "running" || !strings.Contains(c["last_fault"], "first incarnation faults") {
		t.Errorf("boom: %v; want restarted once after one fault", c)
	}
	if c := rows["ipcp.a.local"]; c["supervised"] != irm.StateOperational || c["bufs_limit"] != "128" {
		t.Errorf("the local IPCP: %v; want operational, a budget of 128", c)
	}
	for _, name := range []string{"irm", "mgmt"} {
		if rows[name] == nil {
			t.Errorf("no %s in %v", name, rows)
		}
	}
}

// writerFunc is an io.Writer calling f with each write (a log record).
type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
