package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
)

// target is what ping and perf measure: a flow to a name, or a UDP socket.
type target struct {
	c       conn
	label   string        // NAME, or the UDP address
	header  string        // "(flow 7, layer L, qos best_effort, allocated in 1.2 ms)"
	info    flow.Info     // zero for UDP
	qos     string        // the preset asked for; "" for UDP
	alloc   time.Duration // flow allocation time
	maxSDU  int           // the largest SDU the flow carries
	udp     bool
	closeFn func()
}

// open allocates a flow to name (or, with udp, dials the UDP address).
// The caller must call close.
// With sealed, the flow is sealed end to end and its header names the
// peer's verified identity.
func (a *app) open(ctx context.Context, name string, udp bool, qos string, sealed bool, timeout time.Duration) (*target, error) {
	if udp {
		p, err := probe.DialUDP(name)
		if err != nil {
			return nil, err
		}
		return &target{c: p, label: name, header: "(udp)", udp: true, maxSDU: 65000, closeFn: func() { p.Close() }}, nil
	}
	if udp && sealed {
		return nil, usagef("--sealed: a flow's option; --udp has no flow")
	}
	q, err := flow.Preset(qos)
	if err != nil {
		return nil, usagef("--qos: %v", err)
	}
	q.Sealed = sealed
	n, err := a.connectFlows()
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	c, info, maxSDU, err := allocFlow(actx, n, name, q)
	if err != nil {
		n.Close()
		return nil, err
	}
	t := &target{c: c, label: name, info: info, qos: qos, alloc: time.Since(start), maxSDU: maxSDU}
	sealedWith := ""
	if info.Peer != nil {
		sealedWith = ", sealed with " + info.Peer.String()
	}
	t.header = fmt.Sprintf("(flow %d, layer %s, qos %s%s, allocated in %s ms)", info.ID, orDash(info.Layer), qos, sealedWith, ms(float64(t.alloc)/1e6))
	t.closeFn = func() { c.Close(); n.Close() }
	return t, nil
}

func (t *target) close() { t.closeFn() }

// pingJSON is ping's --json output: the summary, and how the flow was made.
type pingJSON struct {
	probe.Summary
	UDP     bool       `json:"udp"`
	Flow    uint64     `json:"flow,omitempty"`
	Layer   string     `json:"layer,omitempty"`
	QoS     string     `json:"qos,omitempty"`
	Peer    *flow.Peer `json:"peer,omitempty"` // sealed flows: the verified peer
	Size    int        `json:"size"`
	AllocMS float64    `json:"alloc_ms,omitempty"`
}

// runPing is "ouro ping NAME | --udp HOST:PORT".
func runPing(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		cfg    probe.PingConfig
		qos    string
		quiet  bool
		udp    bool
		sealed bool
	)
	fs.intVar(&cfg.Count, 0, "send `N` SDUs, then stop (0: until interrupted or -w)", "c", "count")
	fs.durationVar(&cfg.Interval, time.Second, "wait `D` between SDUs (200ms, or seconds: 0.2)", "i", "interval")
	fs.intVar(&cfg.Size, 64, fmt.Sprintf("SDU size in `BYTES` (%d to %d for a flow: %d unless its layer carries more)", probe.HeaderLen, flow.MaxJumboSDU, flow.MaxSDU), "s", "size")
	fs.durationVar(&cfg.Deadline, 0, "stop after `D` whatever was sent or received", "w", "deadline")
	fs.durationVar(&cfg.Timeout, 2*time.Second, "a reply later than `D` counts as lost; also the wait for the last replies", "W", "timeout")
	fs.stringVar(&qos, "best_effort", "QoS `PRESET` of the flow: raw, best_effort, voice, video, data", "qos")
	fs.boolVar(&quiet, "quiet: print the summary only", "q", "quiet")
	fs.boolVar(&udp, "ping a UDP echo server at HOST:PORT (ouro echo --udp) as a baseline", "udp")
	fs.boolVar(&sealed, "seal the flow end to end (key exchange, encrypted and authenticated SDUs); the header names the verified peer", "sealed")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if cfg.Size < probe.HeaderLen || cfg.Size > flow.MaxJumboSDU {
		return usagef("ping: size %d: want %d to %d bytes", cfg.Size, probe.HeaderLen, flow.MaxJumboSDU)
	}
	if cfg.Count < 0 {
		return usagef("ping: negative count")
	}
	t, err := a.open(ctx, pos[0], udp, qos, sealed, max(cfg.Timeout, 10*time.Second))
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	defer t.close()
	cfg.Name = t.label
	if cfg.Size > t.maxSDU {
		return fmt.Errorf("ping: size %d: the flow carries at most %d bytes: %w", cfg.Size, t.maxSDU, flow.ErrTooBig)
	}

	text := !a.json
	if text {
		fmt.Fprintf(a.stdout, "PING %s %s: %d-byte SDUs\n", t.label, t.header, cfg.Size)
	}
	var mu sync.Mutex // orders reply lines
	onReply := func(r probe.PingReply) {
		if !text || quiet {
			return
		}
		note := ""
		if r.Outcome != probe.OK {
			note = " (" + r.Outcome.String() + ")"
		}
		mu.Lock()
		fmt.Fprintf(a.stdout, "%d bytes from %s: seq=%d time=%s ms%s\n", r.Size, t.label, r.Seq, ms(float64(r.RTT)/1e6), note)
		mu.Unlock()
	}
	sum, err := probe.Ping(ctx, t.c, cfg, onReply)
	if a.json {
		j := pingJSON{Summary: sum, UDP: t.udp, Flow: t.info.ID, Layer: t.info.Layer, QoS: t.qos, Peer: t.info.Peer, Size: cfg.Size, AllocMS: float64(t.alloc) / 1e6}
		if jerr := a.printJSON(j); jerr != nil && err == nil {
			err = jerr
		}
	} else {
		printPingSummary(a, sum)
	}
	if err != nil {
		return err
	}
	if sum.Transmitted > 0 && sum.Received == 0 {
		return fmt.Errorf("ping %s: no reply", t.label)
	}
	return nil
}

// printPingSummary prints ping(8)'s two closing lines.
func printPingSummary(a *app, s probe.Summary) {
	w := a.stdout
	fmt.Fprintf(w, "\n--- %s ping statistics ---\n", s.Name)
	extra := []string{}
	for _, x := range []struct {
		n    uint64
		what string
	}{{s.Duplicates, "duplicates"}, {s.OutOfOrder, "out of order"}, {s.Late, "late"}, {s.Invalid, "invalid"}} {
		if x.n > 0 {
			extra = append(extra, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	tail := ""
	if len(extra) > 0 {
		tail = " (" + strings.Join(extra, ", ") + ")"
	}
	fmt.Fprintf(w, "%d SDUs transmitted, %d received, %s packet loss, time %.0f ms%s\n",
		s.Transmitted, s.Received, percent(s.LossPercent), s.TimeMS, tail)
	if s.Received > 0 {
		fmt.Fprintf(w, "rtt min/avg/max/mdev = %s/%s/%s/%s ms\n", ms(s.RTTMinMS), ms(s.RTTAvgMS), ms(s.RTTMaxMS), ms(s.RTTMdevMS))
	}
}
