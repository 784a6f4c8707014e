// Package procs sets how many processors the Go scheduler of a hosted
// node uses (GOMAXPROCS) by the node's own load: one while the node is
// quiet, every one it may use once it is busy.
//
// A node mostly hands work from one goroutine to the next: a program's
// SDU, an allocation's request, each goes through several. With two or
// more processors every hand-off wakes a second thread (the scheduler's
// wakep), which looks for work, steals, sleeps again: on a lightly loaded
// machine most of a node's CPU time and much of a round trip's is that,
// not the node's work (docs/benchmarks.md, "Rings kept between flows,
// and one processor while quiet"). With one processor the woken
// goroutine runs on the thread that woke it once that one waits. Under a flood one processor is not enough; the
// node then uses them all.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/kernel"
)

// Adaptive switches the node between one processor and Max by the CPU
// time the process spent over each Interval: at one processor, a share of
// one core of Up or more over one interval means busy (Max at once); at
// Max, a share below Down for Calm intervals in a row means quiet (one).
// The gap between the two keeps it from switching to and fro.
type Adaptive struct {
	Max      int           // processors while busy (> 1, else Run does nothing)
	Interval time.Duration // how often the load is looked at
	Up       float64       // share of a core, at one processor, that means busy
	Down     float64       // share of a core, at Max, below which the node is quiet...
	Calm     int           // ...for this many intervals in a row

	// Set sets the processors (runtime.GOMAXPROCS); CPU returns the
	// process's CPU time so far (user and system). Tests replace them.
	Set func(n int)
	CPU func() time.Duration
	Log *slog.Logger

	procs int // as last set
	calm  int // intervals in a row below Down
}

// New returns an Adaptive between one processor and max, with the
// defaults: looked at every 50 ms, busy at 0.7 of a core, quiet below
// 0.35 for 1 s. Where the process's CPU time is unknown (not Linux) its
// Run does nothing.
func New(max int, log *slog.Logger) *Adaptive {
	if !haveCPU {
		max = 0
	}
	return &Adaptive{
		Max: max, Interval: 50 * time.Millisecond, Up: 0.7, Down: 0.35, Calm: 20,
		Set: func(n int) { runtime.GOMAXPROCS(n) }, CPU: processCPU, Log: log,
	}
}

// Run starts the node at one processor and adapts until ctx ends, then
// leaves it at Max. With Max at one or less it sets nothing and waits for
// ctx (the component stays up, with nothing to do).
func (a *Adaptive) Run(ctx context.Context) {
	if a.Max <= 1 {
		<-ctx.Done()
		return
	}
	a.set(1)
	defer a.set(a.Max)
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	last, at := a.CPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := a.CPU()
			if wall := now.Sub(at); wall > 0 {
				a.set(a.step(float64(cpu-last) / float64(wall)))
			}
			last, at = cpu, now
		}
	}
}

// Extra is the node component that runs a: it holds no cap and moves
// no packets; its context ending (the node stopping) leaves Max.
func (a *Adaptive) Extra() node.Extra {
	return node.Extra{
		Name:    "procs",
		Bufs:    1, // it uses none
		NoIRM:   true,
		Program: func(pd *kernel.PD) error { a.Run(pd.Context()); return nil },
	}
}

// step returns the processors for the next interval, given the share of
// one core the process used over the last.
func (a *Adaptive) step(share float64) int {
	if a.procs <= 1 {
		a.calm = 0
		if share >= a.Up {
			return a.Max
		}
		return 1
	}
	if share >= a.Down {
		a.calm = 0
		return a.procs
	}
	if a.calm++; a.calm >= a.Calm {
		a.calm = 0
		return 1
	}
	return a.procs
}

func (a *Adaptive) set(n int) {
	if n == a.procs {
		return
	}
	if a.Log != nil {
		a.Log.Debug("processors", "from", a.procs, "to", n)
	}
	a.procs = n
	a.Set(n)
}
