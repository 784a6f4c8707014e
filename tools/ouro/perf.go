package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
)

// perfJSON is perf's --json output: the result, and how the flow was made.
type perfJSON struct {
	probe.PerfResult
	UDP     bool       `json:"udp"`
	Flow    uint64     `json:"flow,omitempty"`
	Layer   string     `json:"layer,omitempty"`
	QoS     string     `json:"qos,omitempty"`
	Peer    *flow.Peer `json:"peer,omitempty"` // sealed flows: the verified peer
	AllocMS float64    `json:"alloc_ms,omitempty"`
}

// runPerf is "ouro perf NAME | --udp HOST:PORT | --server NAME | --server --udp ADDR".
func runPerf(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		cfg      probe.PerfConfig
		qos      string
		serve    bool
		udp      bool
		count    int
		verbose  bool
		noVerb   bool
		rateFlag float64
		sealed   bool
	)
	fs.boolVar(&serve, "serve NAME (or, with --udp, ADDR): count what arrives and report it to clients", "server")
	fs.boolVar(&udp, "measure plain UDP to HOST:PORT (or serve it on ADDR) as a baseline", "udp")
	fs.boolVar(&sealed, "client: seal the flow end to end", "sealed")
	fs.durationVar(&cfg.Duration, 10*time.Second, "client: send for `D`", "t", "time")
	fs.intVar(&cfg.Size, 1000, fmt.Sprintf("client: SDU size in `BYTES` (%d to %d for a flow: %d unless its layer carries more)", probe.HeaderLen, flow.MaxJumboSDU, flow.MaxSDU), "s", "size")
	fs.floatVar(&rateFlag, 0, "client: send `PPS` SDUs per second (0: flood, as fast as the flow takes them)", "rate", "r")
	fs.stringVar(&qos, "raw", "client: QoS `PRESET` of the flow: raw, best_effort, voice, video, data", "qos")
	fs.boolVar(&verbose, "client: print progress each second on stderr (default when stderr is a terminal)", "v", "progress")
	fs.boolVar(&noVerb, "client: no progress output", "no-progress")
	fs.intVar(&count, 0, "server: exit after `N` flows were accepted and closed (0: serve until interrupted)", "count", "c")
	var allow string
	fs.stringVar(&allow, "", "server: take sealed flows from these nodes only (`IDS`: ids as \"ouro id\" prints them, comma-separated)", "allow")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}

	if serve {
		s := &server{a: a, kind: "perf", allow: parseAllow(allow)}
		if udp {
			if count != 0 {
				return usagef("perf: --count counts flows; it does not apply to --udp")
			}
			if allow != "" {
				return usagef("perf: --allow chooses peers of flows; it does not apply to --udp")
			}
			return s.serveUDP(ctx, pos[0], true)
		}
		return s.serveFlows(ctx, pos[0], count, func(c conn, stop <-chan struct{}, e *flowEvent) error {
			r, err := probe.ServePerf(c, stop)
			e.SDUs, e.Bytes, e.Report = r.SDUs, r.Bytes, &r
			return err
		})
	}

	cfg.Rate = rateFlag
	if cfg.Size < probe.HeaderLen || cfg.Size > flow.MaxJumboSDU {
		return usagef("perf: size %d: want %d to %d bytes", cfg.Size, probe.HeaderLen, flow.MaxJumboSDU)
	}
	if cfg.Rate < 0 || cfg.Duration <= 0 {
		return usagef("perf: want a positive duration and a rate of 0 (flood) or more")
	}
	t, err := a.open(ctx, pos[0], udp, qos, sealed, 10*time.Second)
	if err != nil {
		return fmt.Errorf("perf: %w", err)
	}
	defer t.close()
	cfg.Name = t.label
	if cfg.Size > t.maxSDU {
		return fmt.Errorf("perf: size %d: the flow carries at most %d bytes: %w", cfg.Size, t.maxSDU, flow.ErrTooBig)
	}

	mode := "flood"
	if cfg.Rate > 0 {
		mode = fmt.Sprintf("%g SDU/s", cfg.Rate)
	}
	if !a.json {
		fmt.Fprintf(a.stdout, "PERF %s %s: %d-byte SDUs for %v, %s\n", t.label, t.header, cfg.Size, cfg.Duration, mode)
	}
	if (verbose || a.stderrTTY) && !noVerb {
		cfg.Progress = func(p probe.Progress) {
			fmt.Fprintf(a.stderr, "[%5.1f s] sent %d SDUs: %.1f SDU/s, %s\n",
				p.Elapsed.Seconds(), p.Sent, p.PPS, siUnit(p.BPS, "bit/s"))
		}
	}
	res, err := probe.PerfClient(ctx, t.c, cfg)
	if err != nil && !errors.Is(err, probe.ErrNoReport) {
		return err
	}
	if a.json {
		j := perfJSON{PerfResult: res, UDP: t.udp, Flow: t.info.ID, Layer: t.info.Layer, QoS: t.qos, Peer: t.info.Peer, AllocMS: float64(t.alloc) / 1e6}
		if jerr := a.printJSON(j); jerr != nil {
			return jerr
		}
	} else {
		printPerf(a, res)
	}
	return err
}

// printPerf prints a perf result: a line per side, then loss.
func printPerf(a *app, r probe.PerfResult) {
	w := a.stdout
	fmt.Fprintf(w, "\n--- %s perf results ---\n", r.Name)
	fmt.Fprintf(w, "sent      %10d SDUs  %10s in %s  %12.1f SDU/s  %14s  (client)\n",
		r.Sent, siUnit(float64(r.SentBytes), "B"), secs(time.Duration(r.SendNS)), r.SendPPS, siUnit(r.SendBPS, "bit/s"))
	if !r.HaveServer {
		fmt.Fprintln(w, "received  no report from the server")
		return
	}
	s := r.Server
	fmt.Fprintf(w, "received  %10d SDUs  %10s in %s  %12.1f SDU/s  %14s  (server)\n",
		s.SDUs, siUnit(float64(s.Bytes), "B"), secs(time.Duration(s.SpanNS)), r.RecvPPS, siUnit(r.RecvBPS, "bit/s"))
	if s.SteadySDUs > 0 {
		fmt.Fprintf(w, "from 1 s   %9d SDUs  %10s in %s  %12.1f SDU/s  %14s  (server, from %v after its first SDU)\n",
			s.SteadySDUs, siUnit(float64(s.SteadyBytes), "B"), secs(time.Duration(s.SteadySpanNS)), r.RecvSteadyPPS, siUnit(r.RecvSteadyBPS, "bit/s"), probe.SteadyAfter)
	}
	fmt.Fprintf(w, "loss %s, %d reordered, %d send errors\n", percent(r.Loss), s.Reordered, r.SendErrors)
}
