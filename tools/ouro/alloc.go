package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ouronet/ouro/flow"
)

func allocCommand() *command {
	return &command{name: "alloc", args: "NAME", group: "measurement", summary: "measure how long allocating a flow to NAME takes", run: runAlloc,
		help: "Allocates a flow to NAME and closes it, -c times over one session with\n" +
			"the node, and prints each allocation's time and a summary. The first\n" +
			"allocation also waits for the node to start the program's session;\n" +
			"the summary is of the others (and needs -c 2 or more). NAME is served\n" +
			"by any program that accepts flows (\"ouro echo NAME\").\n" +
			"Exit code 1 when no allocation succeeded."}
}

// allocJSON is alloc's --json output. Times are in ms; the statistics
// are of the allocations after the first.
type allocJSON struct {
	Name      string    `json:"name"`
	QoS       string    `json:"qos"`
	Sealed    bool      `json:"sealed"`
	Allocated int       `json:"allocated"`
	Failed    int       `json:"failed"`
	AllocMS   []float64 `json:"alloc_ms"` // every successful one, in order
	FirstMS   float64   `json:"first_ms,omitempty"`
	MinMS     float64   `json:"min_ms,omitempty"`
	MedianMS  float64   `json:"median_ms,omitempty"`
	AvgMS     float64   `json:"avg_ms,omitempty"`
	P90MS     float64   `json:"p90_ms,omitempty"`
	MaxMS     float64   `json:"max_ms,omitempty"`
	Errors    []string  `json:"errors,omitempty"`
}

// runAlloc is "ouro alloc NAME".
func runAlloc(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		count    int
		interval time.Duration
		timeout  time.Duration
		qos      string
		sealed   bool
		quiet    bool
	)
	fs.intVar(&count, 5, "allocate `N` flows, one after the other", "c", "count")
	fs.durationVar(&interval, 100*time.Millisecond, "wait `D` between a flow's close and the next allocation", "i", "interval")
	fs.durationVar(&timeout, 10*time.Second, "give an allocation up after `D`", "W", "timeout")
	fs.stringVar(&qos, "best_effort", "QoS `PRESET` of the flows: raw, best_effort, voice, video, data", "qos")
	fs.boolVar(&sealed, "seal the flows end to end (each allocation makes the key exchange)", "sealed")
	fs.boolVar(&quiet, "quiet: print the summary only", "q", "quiet")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if count < 1 || interval < 0 || timeout <= 0 {
		return usagef("alloc: -c must be at least 1, -i not negative and -W positive")
	}
	q, err := flow.Preset(qos)
	if err != nil {
		return usagef("--qos: %v", err)
	}
	q.Sealed = sealed
	n, err := a.connectFlows()
	if err != nil {
		return err
	}
	defer n.Close()
	name := pos[0]
	out := allocJSON{Name: name, QoS: qos, Sealed: sealed, AllocMS: []float64{}}
	text := !a.json
	if text {
		seal := ""
		if sealed {
			seal = ", sealed"
		}
		fmt.Fprintf(a.stdout, "ALLOC %s (qos %s%s), %d on one session\n", name, qos, seal, count)
	}
	firstOK := false // the first allocation succeeded: it is left out of the statistics
	for i := range count {
		if i > 0 && interval > 0 {
			select {
			case <-time.After(interval):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		c, info, _, err := allocFlow(actx, n, name, q)
		took := time.Since(start)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break // interrupted
			}
			out.Failed++
			out.Errors = append(out.Errors, err.Error())
			if text && !quiet {
				fmt.Fprintf(a.stdout, "%d: failed after %s ms: %v\n", i+1, ms(float64(took)/1e6), err)
			}
			continue
		}
		c.Close()
		v := float64(took) / 1e6
		out.Allocated++
		out.AllocMS = append(out.AllocMS, v)
		if i == 0 {
			out.FirstMS, firstOK = v, true
		}
		if text && !quiet {
			note := ""
			if i == 0 {
				note = ", with the session's start"
			}
			fmt.Fprintf(a.stdout, "%d: %s ms (flow %d, layer %s%s)\n", i+1, ms(v), info.ID, orDash(info.Layer), note)
		}
	}
	warm := out.AllocMS
	if firstOK {
		warm = warm[1:]
	}
	out.MinMS, out.MedianMS, out.AvgMS, out.P90MS, out.MaxMS = allocStats(warm)
	if a.json {
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stdout, "--- %s allocation statistics ---\n%d allocated, %d failed", name, out.Allocated, out.Failed)
		if firstOK {
			fmt.Fprintf(a.stdout, "; the first %s ms", ms(out.FirstMS))
		}
		if len(warm) > 0 {
			fmt.Fprintf(a.stdout, "; the other %d min/median/avg/p90/max = %s/%s/%s/%s/%s ms",
				len(warm), ms(out.MinMS), ms(out.MedianMS), ms(out.AvgMS), ms(out.P90MS), ms(out.MaxMS))
		}
		fmt.Fprintln(a.stdout)
	}
	if out.Allocated == 0 {
		if len(out.Errors) > 0 {
			return fmt.Errorf("alloc: no allocation succeeded: %s", out.Errors[len(out.Errors)-1])
		}
		return errors.New("alloc: interrupted before an allocation")
	}
	return nil
}

// allocStats returns the minimum, median, mean, 90th percentile and
// maximum of vs (zeros for none).
func allocStats(vs []float64) (lo, med, avg, p90, hi float64) {
	if len(vs) == 0 {
		return
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return s[0], s[(len(s)-1)/2], sum / float64(len(s)), s[(len(s)*9+9)/10-1], s[len(s)-1]
}
