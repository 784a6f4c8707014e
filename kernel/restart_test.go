package kernel

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/kernel/logx"
)

// bootWith boots sys on a kernel with cfg and returns it.
func bootWith(t *testing.T, cfg Config, sys *System, progs map[string]Program) *Kernel {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = logx.Test(t)
	}
	k := New(cfg)
	if err := k.Boot(sys, progs); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	return k
}

// TestRestartWaitsForOldIncarnation checks that a restarted component's
// new incarnation starts only after every goroutine of the old one has
// returned: the program binds a "port" (a resource outside the kernel,
// like a UDP socket) that the old incarnation's goroutines let go of only
// some time after its death, as a blocked read returns once its socket is
// closed. Without the wait the new incarnation finds the port taken.
func TestRestartWaitsForOldIncarnation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart func(k *Kernel, sup *PD) error
		holder  string // which goroutine lets go of the port late
	}{
		{"Kernel.Restart, PD.Go goroutine", func(k *Kernel, sup *PD) error { return k.Restart("svc") }, "go"},
		{"Kernel.Restart, program", func(k *Kernel, sup *PD) error { return k.Restart("svc") }, "program"},
		{"PD.Restart, PD.Go goroutine", func(k *Kernel, sup *PD) error { return sup.Restart(mustSlot(t, sup, "svc")) }, "go"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var port atomic.Bool
			bound := make(chan error, 2)
			sys := &System{Components: []ComponentSpec{
				{Name: "sup", Caps: []CapSpec{{Name: "svc", Object: "svc", Rights: Write}}},
				{Name: "svc"},
			}}
			supc := make(chan *PD, 1)
			k := bootWith(t, Config{}, sys, map[string]Program{
				"sup": func(pd *PD) error { supc <- pd; <-pd.Context().Done(); return nil },
				"svc": func(pd *PD) error {
					if !port.CompareAndSwap(false, true) {
						bound <- errors.New("port in use")
						return nil
					}
					bound <- nil
					letGo := func() {
						<-pd.Context().Done()
						time.Sleep(30 * time.Millisecond)
						port.Store(false)
					}
					if tc.holder == "go" {
						pd.Go(letGo)
						<-pd.Context().Done()
						return nil
					}
					letGo()
					return nil
				},
			})
			defer k.Stop()
			sup := <-supc
			wantErr(t, "first bind", <-bound, nil)
			wantErr(t, "Restart", tc.restart(k, sup), nil)
			var err error
			within(t, 5*time.Second, "second bind", func() { err = <-bound })
			wantErr(t, "bind by the new incarnation", err, nil)
			if st, inc, _ := k.State("svc"); st != "running" || inc != 2 {
				t.Fatalf("after Restart: got %q incarnation %d, want running 2", st, inc)
			}
		})
	}
}

// TestRestartTimeout checks that Restart gives up, with ErrAborted naming
// the component, when the old incarnation's goroutines do not return in
// time, leaves the component dead, and succeeds once they have returned;
// and that Kernel.Stop ends a waiting Restart with ErrClosed.
func TestRestartTimeout(t *testing.T) {
	release := make(chan struct{})
	started := make(chan uint64, 2)
	sys := &System{Components: []ComponentSpec{
		{Name: "sup", Caps: []CapSpec{{Name: "svc", Object: "svc", Rights: Write}}},
		{Name: "svc"},
	}}
	supc := make(chan *PD, 1)
	k := bootWith(t, Config{RestartTimeout: 50 * time.Millisecond}, sys, map[string]Program{
		"sup": func(pd *PD) error { supc <- pd; <-pd.Context().Done(); return nil },
		"svc": func(pd *PD) error {
			started <- pd.inc
			if pd.inc == 1 {
				pd.Go(func() { <-release }) // ignores its Context
			}
			<-pd.Context().Done()
			return nil
		},
	})
	defer k.Stop()
	sup := <-supc
	<-started
	err := sup.Restart(mustSlot(t, sup, "svc"))
	wantErr(t, "Restart with a goroutine that does not return", err, ErrAborted)
	if !strings.Contains(err.Error(), "restart svc") || !strings.Contains(err.Error(), "1 goroutines running") {
		t.Fatalf("Restart error: got %q, want it to name svc and the goroutine left", err)
	}
	if st, inc, _ := k.State("svc"); st != "killed" || inc != 1 {
		t.Fatalf("after a Restart that timed out: got %q incarnation %d, want killed 1", st, inc)
	}
	select {
	case inc := <-started:
		t.Fatalf("incarnation %d started while the old one's goroutine runs", inc)
	default:
	}
	close(release)
	wantErr(t, "Restart once the goroutine returned", k.Restart("svc"), nil)
	if inc := <-started; inc != 2 {
		t.Fatalf("started: got incarnation %d, want 2", inc)
	}
}

func TestRestartEndsWithStop(t *testing.T) {
	release := make(chan struct{})
	sys := &System{Components: []ComponentSpec{{Name: "svc"}}}
	up := make(chan struct{}, 1)
	k := bootWith(t, Config{}, sys, map[string]Program{
		"svc": func(pd *PD) error {
			pd.Go(func() { <-release })
			up <- struct{}{}
			<-pd.Context().Done()
			return nil
		},
	})
	<-up
	done := make(chan error, 1)
	go func() { done <- k.Restart("svc") }()
	time.Sleep(10 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { k.Stop(); close(stopped) }()
	var err error
	within(t, 5*time.Second, "Restart during Stop", func() { err = <-done })
	wantErr(t, "Restart during Stop", err, ErrClosed)
	close(release)
	within(t, 5*time.Second, "Stop", func() { <-stopped })
}
