package kernel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/kernel/logx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness boots sys with a program per component that hands its PD to the
// test and then waits to be stopped, so a test can drive every component's
// verbs from its own goroutine. Programs in progs replace the default.
func harness(t testing.TB, sys *System, progs map[string]Program) (*Kernel, map[string]*PD) {
	t.Helper()
	k := New(Config{Log: logx.Test(t)})
	var mu sync.Mutex
	pds := make(map[string]*PD)
	got := make(chan struct{}, len(sys.Components))
	all := make(map[string]Program)
	for _, c := range sys.Components {
		if p := progs[c.Name]; p != nil {
			all[c.Name] = p
			got <- struct{}{}
			continue
		}
		all[c.Name] = func(pd *PD) error {
			mu.Lock()
			first := pds[pd.Name()] == nil
			pds[pd.Name()] = pd
			mu.Unlock()
			if first {
				got <- struct{}{}
			}
			<-pd.Context().Done()
			return nil
		}
	}
	if err := k.Boot(sys, all); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	t.Cleanup(k.Stop)
	for range sys.Components {
		<-got
	}
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]*PD, len(pds))
	for n, pd := range pds {
		out[n] = pd
	}
	return k, out
}

func mustSlot(t testing.TB, pd *PD, name string) Cap {
	t.Helper()
	c, err := pd.Slot(name)
	if err != nil {
		t.Fatalf("Slot(%q): %v", name, err)
	}
	return c
}

// pair is a client "a" and a server "b" sharing endpoint "ep", with
// notification "n" and ring "r" and a component "c" that b supervises.
func pair(rights Rights) *System {
	return &System{
		Endpoints:     []ObjectSpec{{Name: "ep"}},
		Notifications: []ObjectSpec{{Name: "n"}},
		Rings:         []RingSpec{{Name: "r", Size: 8}},
		Components: []ComponentSpec{
			{Name: "a", Budget: Budget{Bufs: 64, Objects: 8}, Caps: []CapSpec{
				{Name: "ep", Object: "ep", Rights: rights},
				{Name: "n", Object: "n", Rights: AllRights},
				{Name: "r", Object: "r", Rights: AllRights},
				{Name: "c", Object: "c", Rights: AllRights},
			}},
			{Name: "b", Budget: Budget{Bufs: 64, Objects: 8}, Caps: []CapSpec{
				{Name: "ep", Object: "ep", Rights: AllRights},
				{Name: "n", Object: "n", Rights: AllRights},
				{Name: "r", Object: "r", Rights: AllRights},
			}},
			{Name: "c"},
		},
	}
}

// recvAsync receives one message on pd's cap in a goroutine.
type recvd struct {
	m    Msg
	info RecvInfo
	err  error
}

func recvAsync(pd *PD, ep Cap) <-chan recvd {
	ch := make(chan recvd, 1)
	go func() {
		r := recvd{m: Msg{Payload: make([]byte, 0, MaxPayload)}}
		r.info, r.err = pd.Recv(ep, &r.m)
		ch <- r
	}()
	return ch
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func within(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
}

func wantErr(t testing.TB, what string, got, want error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Fatalf("%s: got error %v, want nil", what, got)
		}
		return
	}
	if !errors.Is(got, want) {
		t.Fatalf("%s: got error %v, want %v", what, got, want)
	}
}

var errCanceled = context.Canceled

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
