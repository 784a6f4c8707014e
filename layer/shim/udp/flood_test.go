package udp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// echoServer accepts every flow the fake IRM hands over and echoes it
// until it closes, as the node's echo program does. live counts the
// flows it serves.
type echoServer struct {
	live atomic.Int64
	wg   sync.WaitGroup
	stop chan struct{}
}

func serveEcho(up *ipcptest.Upcalls) *echoServer {
	s := &echoServer{stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case acc := <-up.Accepted:
				s.live.Add(1)
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer s.live.Add(-1)
					defer acc.Port.Close()
					buf := make([]byte, flow.MaxSDU)
					for {
						n, err := acc.Port.Read(buf, time.Time{})
						if err != nil || acc.Port.Write(buf[:n], time.Time{}) != nil {
							return
						}
					}
				}()
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

// close ends the server once the shim stopped (the flows' ports are
// closed) and waits for its goroutines.
func (s *echoServer) close() {
	close(s.stop)
	s.wg.Wait()
}

// honest allocates a flow to "echo" from a, has one SDU echoed (sent
// again every 20 ms until the echo comes, as ping does: a flood may fill
// the socket's buffer, and UDP loses what does not fit) and closes the
// flow; it returns how long that took.
func honest(a *IPCP) (time.Duration, error) {
	start := time.Now()
	app, end := flowtest.Pipe(16)
	defer app.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Alloc(ctx, ipcp.AllocReq{Dst: "echo", QoS: flow.BestEffort()}, end); err != nil {
		return 0, err
	}
	buf := make([]byte, 16)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if err := app.Write([]byte("ping"), deadline); err != nil {
			return 0, err
		}
		n, err := app.Read(buf, time.Now().Add(20*time.Millisecond))
		if errors.Is(err, flow.ErrTimeout) {
			continue
		}
		if err != nil || string(buf[:n]) != "ping" {
			return 0, fmt.Errorf("echo: %q, %v", buf[:n], err)
		}
		return time.Since(start), nil
	}
	return 0, fmt.Errorf("echo: no answer: %w", flow.ErrTimeout)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestAllocFlood is the attack of issue 10: one peer sends allocation
// requests for a served name as fast as it can and never uses the flows.
// Defended (the defaults, scaled down), the shim keeps at most
// MaxFlowsPerPeer of them, refuses and counts the rest, frees them all
// after IdleTimeout, and an honest peer still allocates and is served.
// Undefended (no idle timeout, no per-peer bounds: the engine before
// them), the same flood leaves every flow in place for good, which is
// what shows that the checks below can fail.
func TestAllocFlood(t *testing.T) {
	const limit, flood = 32, 1500
	for _, tc := range []struct {
		name     string
		defended bool
	}{{"defended", true}, {"undefended", false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Layer: "udp.test", Name: "b", Runner: layertest.Runner{},
				IdleTimeout: 300 * time.Millisecond, MaxFlowsPerPeer: limit, MaxPendingPerPeer: 8}
			if !tc.defended {
				cfg.IdleTimeout, cfg.MaxFlowsPerPeer, cfg.MaxPendingPerPeer = -1, -1, -1
			}
			cb, ca := listen(t, "udp", "127.0.0.1:0"), listen(t, "udp", "127.0.0.1:0")
			cfg.Device = cb
			upB := ipcptest.NewUpcalls(64)
			b, err := New(cfg, upB)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(); err != nil {
				t.Fatal(err)
			}
			srv := serveEcho(upB)
			t.Cleanup(func() { b.Stop(); srv.close() })
			if err := b.Register(context.Background(), "echo"); err != nil {
				t.Fatal(err)
			}
			a, err := New(Config{Layer: "udp.test", Name: "a", Runner: layertest.Runner{}, Device: ca,
				RetryBase: 5 * time.Millisecond, Dir: map[string]netip.AddrPort{"echo": addrOf(cb)}}, ipcptest.NewUpcalls(1))
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Stop)

			var before []time.Duration
			for range 7 {
				d, err := honest(a)
				if err != nil {
					t.Fatalf("honest allocation before the flood: %v", err)
				}
				before = append(before, d)
			}

			// The attacker: a bare socket that never reads the answers.
			r := raw{t, listen(t, "udp", "127.0.0.1:0")}
			defer r.c.Close()
			attacker := addrOf(r.c)
			h := layer.HashName(layer.SHA3_256, "echo")
			fromAttacker := func() int {
				n := 0
				for _, f := range b.Flows() {
					if f.Peer == attacker.String() {
						n++
					}
				}
				return n
			}
			// The most attacker flows the shim ever held, sampled.
			var most atomic.Int64
			sampling := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					if n := int64(fromAttacker()); n > most.Load() {
						most.Store(n)
					}
					select {
					case <-sampling:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				for i := range flood {
					b, _ := engine.EncodeMsg(make([]byte, HeaderLen), &engine.Msg{Type: engine.MsgAllocReq, ReqID: uint64(i + 1), Src: uint32(i + 1), Hash: h[:]})
					Header(b).SetEID(CtlEID)
					r.c.WriteToUDPAddrPort(b, addrOf(cb))
					if i%64 == 63 {
						time.Sleep(time.Millisecond) // stay under the socket buffer: every request counts
					}
				}
			}()
			var during []time.Duration
			var failed []error
			for range 7 {
				d, err := honest(a)
				if err != nil {
					failed = append(failed, err)
					continue
				}
				during = append(during, d)
			}
			<-sent

			// Let the shim work through what arrived: nothing more read,
			// and the flow count steady.
			kept, ctl := -1, uint64(0)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				n, c := fromAttacker(), b.Stats().CtlIn
				if n == kept && c == ctl {
					break
				}
				kept, ctl = n, c
			}
			close(sampling)
			<-sampled
			kept = max(kept, int(most.Load()))
			st := b.Stats()
			t.Logf("%s: %d requests sent, %d control messages in, %d attacker flows kept, refused: %d at the peer limit, %d busy; %d live echo flows",
				tc.name, flood, st.CtlIn, kept, st.Drops.PeerLimit, st.Drops.Busy, srv.live.Load())
			t.Logf("%s: honest alloc+echo: median %v of 7 before the flood; during it %d of 7 failed %v, median of the rest %v",
				tc.name, median(before), len(failed), failed, median(append(during, 0)))

			if !tc.defended {
				// The attack works on the undefended engine: far more
				// flows than the limit, and they stay.
				if kept <= limit {
					t.Fatalf("undefended: %d attacker flows kept, want more than %d (the flood did not land)", kept, limit)
				}
				time.Sleep(time.Second)
				if n := fromAttacker(); n != kept || b.Stats().FlowsExpired != 0 {
					t.Fatalf("undefended: %d flows left of %d, %d expired: want all kept", n, kept, b.Stats().FlowsExpired)
				}
				return
			}
			if len(failed) > 0 {
				t.Logf("a: %+v", a.Stats())
				t.Logf("b: %+v", b.Stats())
				t.Fatalf("honest allocations failed during the flood: %v", failed)
			}
			t.Logf("honest alloc+echo during the flood: %.2fx the time before it (medians)", float64(median(during))/float64(median(before)))
			if kept > limit {
				t.Fatalf("%d attacker flows kept, want at most %d", kept, limit)
			}
			if st.Drops.PeerLimit == 0 {
				t.Fatal("no request refused at the peer limit")
			}
			// Idle flows go, and their programs' ends close (the echo
			// loops end).
			waitFor(t, func() bool { return fromAttacker() == 0 && srv.live.Load() == 0 })
			if got := b.Stats().FlowsExpired; got < uint64(kept) {
				t.Fatalf("%d flows expired, want at least %d", got, kept)
			}
			// The attacker may allocate again: its share is free.
			r.sendMsg(addrOf(cb), &engine.Msg{Type: engine.MsgAllocReq, ReqID: flood + 1, Src: flood + 1, Hash: h[:]})
			waitFor(t, func() bool { return fromAttacker() == 1 })
		})
	}
}

// TestPendingPerPeer: a peer whose requests wait for the IRM (nobody
// accepts) holds at most MaxPendingPerPeer of the shim's slots for
// incoming allocations, so another peer's request is still handled.
func TestPendingPerPeer(t *testing.T) {
	cb := listen(t, "udp", "127.0.0.1:0")
	up := &blockingUpcalls{release: make(chan struct{})}
	b, err := New(Config{Layer: "udp.test", Name: "b", Runner: layertest.Runner{}, Device: cb, MaxPendingPerPeer: 4}, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	defer close(up.release)
	b.Register(context.Background(), "echo")
	h := layer.HashName(layer.SHA3_256, "echo")
	r := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r.c.Close()
	for i := range 100 {
		r.sendMsg(addrOf(cb), &engine.Msg{Type: engine.MsgAllocReq, ReqID: uint64(i + 1), Src: uint32(i + 1), Hash: h[:]})
	}
	waitFor(t, func() bool { return b.Stats().CtlIn == 100 })
	// The requests taken wait for the IRM in goroutines of their own,
	// which may not have started yet when the last message is counted:
	// wait for them (a 5th would fail the limit below or the check after).
	waitFor(t, func() bool { return up.waiting.Load() >= 4 })
	if got := up.waiting.Load(); got != 4 {
		t.Fatalf("%d requests of one peer wait for the IRM, want 4", got)
	}
	// The refusal is counted after the message: wait for the last one.
	waitFor(t, func() bool { return b.Stats().Drops.PeerLimit >= 96 })
	if got := b.Stats().Drops.PeerLimit; got != 96 {
		t.Fatalf("%d refused at the peer limit, want 96", got)
	}
	// A refusal is an answer: busy.
	r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if m := r.recvMsg(); m.Type != engine.MsgAllocResp || m.Result != engine.ResBusy {
		t.Fatalf("got %+v, want a busy allocation response", m)
	}
	// Another peer still gets a slot.
	r2 := raw{t, listen(t, "udp", "127.0.0.1:0")}
	defer r2.c.Close()
	r2.sendMsg(addrOf(cb), &engine.Msg{Type: engine.MsgAllocReq, ReqID: 1, Src: 1, Hash: h[:]})
	waitFor(t, func() bool { return up.waiting.Load() == 5 })
}

// blockingUpcalls is an IRM whose programs never accept: FlowReq waits
// until release or its ctx ends.
type blockingUpcalls struct {
	waiting atomic.Int64
	release chan struct{}
}

func (u *blockingUpcalls) FlowReq(ctx context.Context, _ ipcp.AllocReq) (flow.Port, error) {
	u.waiting.Add(1)
	select {
	case <-u.release:
	case <-ctx.Done():
	}
	return nil, errors.New("not accepted")
}
