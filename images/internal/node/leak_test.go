package node

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/rpc"
)

// TestAbandonedAccepts opens 500 sessions with 100 Accepts each that
// their callers abandon, then ends the sessions, four rounds: no
// goroutine is left behind after a round (goleak checks the end of the
// package's tests too) and the heap stays flat. On the IRM before
// sessions were its own, each round left 10,000 goroutines parked and
// the node grew from 0.6 to 3.0 GB over four rounds.
func TestAbandonedAccepts(t *testing.T) {
	const (
		rounds   = 4
		sessions = 500
		accepts  = 100
		parallel = 10 // sessions at once (the race detector allows 8128 goroutines)
	)
	x, ch := rawApp("app.leaky", false)
	startNode(t, `
[node]
name = "n"
[[ipcp]]
kind = "local"
`, x)
	c := <-ch
	settle := func() (goroutines int, heap uint64) {
		var ms runtime.MemStats
		for i := 0; i < 3; i++ {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	// waitGoroutines waits for the goroutine count to come down to at
	// most want, and returns it.
	waitGoroutines := func(want int) int {
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= want || time.Now().After(deadline) {
				return n
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	base, _ := settle()
	// What may stay after a round without being a leak: the IRM's RPC
	// server keeps up to rpc.MaxIdle handler goroutines waiting for the
	// next request, and a few others end late. A leak is proportional to
	// the sessions or Accepts: 10,000 goroutines a round before.
	slack := 10 + rpc.MaxIdle
	var heaps []uint64
	for round := 0; round < rounds; round++ {
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for s := 0; s < sessions; s++ {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				b, err := irm.OpenSession(context.Background(), c.pd, c.irm, irm.SessionReq{})
				if err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithCancel(context.Background())
				var calls sync.WaitGroup
				for a := 0; a < accepts; a++ {
					calls.Add(1)
					go func() {
						defer calls.Done()
						if _, _, err := b.Accept(ctx); err == nil {
							t.Error("an Accept with no flow to accept returned one")
						}
					}()
				}
				time.Sleep(5 * time.Millisecond) // most reach the IRM; the rest give up before
				cancel()                         // the callers give up ...
				calls.Wait()
				b.Close() // ... and the session ends
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if n := waitGoroutines(base + slack); n > base+slack {
			t.Fatalf("round %d: %d goroutines, %d before the first round", round+1, n, base)
		}
		_, heap := settle()
		heaps = append(heaps, heap)
		t.Logf("round %d: heap in use %.1f MB", round+1, float64(heap)/(1<<20))
	}
	if grow := int64(heaps[rounds-1]) - int64(heaps[0]); grow > 16<<20 {
		t.Fatalf("heap grew %.1f MB from round 1 to round %d", float64(grow)/(1<<20), rounds)
	}

	// In a session that stays open, the IRM's side of an abandoned
	// Accept ends when its caller gives up (the handler's context is
	// the caller's): ten times the per-session limit of waiting Accepts
	// come and go, and nothing is left waiting.
	b, err := irm.OpenSession(context.Background(), c.pd, c.irm, irm.SessionReq{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		var calls sync.WaitGroup
		for a := 0; a < 255; a++ { // the limit (256) less the probe below, which may linger
			calls.Add(1)
			go func() {
				defer calls.Done()
				_, _, err := b.Accept(ctx)
				if errors.Is(err, flow.ErrBusy) {
					t.Error("abandoned Accepts are still counted as waiting:", err)
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
		calls.Wait()
		// The IRM's handlers see their callers' cancellation a moment
		// later (more under load): wait, at most 2 s, until a new Accept
		// is not refused as one too many.
		for deadline := time.Now().Add(2 * time.Second); ; {
			pctx, pcancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, _, err := b.Accept(pctx)
			pcancel()
			if !errors.Is(err, flow.ErrBusy) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("abandoned Accepts are still counted as waiting 2 s after their callers gave up:", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if n := waitGoroutines(base + slack); n > base+slack {
		t.Fatalf("%d goroutines with a session open after its Accepts were abandoned, %d before", n, base)
	}
}
