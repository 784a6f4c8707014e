package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
)

// flowEvent is one line of a server's output: a flow (or UDP peer)
// opened or closed. With --json it is printed as one JSON object a line.
type flowEvent struct {
	Event   string        `json:"event"` // "ready", "opened" or "closed"
	Server  string        `json:"server"`
	Name    string        `json:"name,omitempty"` // the bound name (ready)
	UDP     string        `json:"udp,omitempty"`  // the UDP address served (ready) or the peer
	Flow    uint64        `json:"flow,omitempty"`
	Remote  string        `json:"remote,omitempty"`
	Layer   string        `json:"layer,omitempty"`
	QoS     string        `json:"qos,omitempty"`
	Peer    *flow.Peer    `json:"peer,omitempty"` // sealed flows: the verified peer
	SDUs    uint64        `json:"sdus"`
	Bytes   uint64        `json:"bytes"`
	Seconds float64       `json:"seconds,omitempty"`
	Report  *probe.Report `json:"report,omitempty"` // perf: what was counted
	Error   string        `json:"error,omitempty"`
}

// server is what echo and perf --server share: the accept loop over
// flows, the UDP loop, and the event output.
type server struct {
	a     *app
	kind  string   // "echo" or "perf"
	allow []string // --allow: the only peers (node ids) whose flows it takes
	mu    sync.Mutex
}

// parseAllow splits --allow's comma-separated node ids.
func parseAllow(v string) []string {
	var ids []string
	for id := range strings.SplitSeq(v, ",") {
		if id = strings.TrimSpace(id); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// event prints e as a line of text or JSON; safe for concurrent use.
func (s *server) event(e flowEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.Server = s.kind
	if s.a.json {
		s.a.printJSONLine(e)
		return
	}
	out := s.a.stdout
	switch {
	case e.Event == "ready" && e.UDP != "":
		fmt.Fprintf(out, "ouro %s ready: udp %s\n", s.kind, e.UDP)
	case e.Event == "ready":
		fmt.Fprintf(out, "ouro %s ready: name %s\n", s.kind, e.Name)
	case e.Event == "opened" && e.UDP != "":
		fmt.Fprintf(out, "udp %s opened\n", e.UDP)
	case e.Event == "opened":
		sealed := ""
		if e.Peer != nil {
			sealed = ", sealed with " + e.Peer.String()
		}
		fmt.Fprintf(out, "flow %d opened: from %s, layer %s, qos %s%s\n", e.Flow, orDash(e.Remote), orDash(e.Layer), e.QoS, sealed)
	default:
		what := fmt.Sprintf("flow %d", e.Flow)
		if e.UDP != "" {
			what = "udp " + e.UDP
		}
		line := fmt.Sprintf("%s closed: %d SDUs, %s", what, e.SDUs, siUnit(float64(e.Bytes), "B"))
		if e.Report != nil {
			span := time.Duration(e.Report.SpanNS)
			pps, bps := probe.Rate(e.Report.SDUs, e.Report.Bytes, span)
			line = fmt.Sprintf("%s closed: %d SDUs, %s in %s: %.1f SDU/s, %s, %d reordered", what,
				e.Report.SDUs, siUnit(float64(e.Report.Bytes), "B"), secs(span), pps, siUnit(bps, "bit/s"), e.Report.Reordered)
		}
		if e.Error != "" {
			line += " (" + e.Error + ")"
		}
		fmt.Fprintln(out, line)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// serveFlows binds name and runs handle on every flow allocated to it,
// concurrently, until ctx ends or, with count > 0, count flows were
// accepted and have all closed. handle returns what to report when the
// flow closes; it must return once stop is closed.
func (s *server) serveFlows(ctx context.Context, name string, count int,
	handle func(c conn, stop <-chan struct{}, e *flowEvent) error) error {
	n, err := s.a.connectFlows()
	if err != nil {
		return err
	}
	defer n.Close()
	if len(s.allow) > 0 {
		pb, ok := n.(flow.PeerBinder)
		if !ok {
			return fmt.Errorf("bind %q: --allow: this node connection cannot choose peers: %w", name, flow.ErrInvalid)
		}
		err = pb.BindPeers(ctx, name, s.allow)
	} else {
		err = n.Bind(ctx, name)
	}
	if err != nil {
		return fmt.Errorf("bind %q: %w", name, err)
	}
	defer n.Unbind(context.Background(), name)
	s.event(flowEvent{Event: "ready", Name: name})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	for accepted := 0; count <= 0 || accepted < count; accepted++ {
		c, info, err := acceptFlow(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: a normal end for a server
			}
			return fmt.Errorf("accept on %q: %w", name, err)
		}
		s.event(flowEvent{Event: "opened", Flow: info.ID, Remote: info.Remote, Layer: info.Layer, QoS: qosName(info.QoS), Peer: info.Peer})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			start := time.Now()
			e := flowEvent{Event: "closed", Flow: info.ID, Remote: info.Remote, Layer: info.Layer, QoS: qosName(info.QoS)}
			if err := handle(c, stop, &e); err != nil {
				e.Error = err.Error()
			}
			e.Seconds = time.Since(start).Seconds()
			s.event(e)
		}()
	}
	// count flows accepted: wait for them to close (or an interrupt).
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// serveUDP runs the UDP twin of the server on addr until ctx ends.
func (s *server) serveUDP(ctx context.Context, addr string, perf bool) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("udp %s: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("udp %s: %w", addr, err)
	}
	defer pc.Close()
	s.event(flowEvent{Event: "ready", UDP: pc.LocalAddr().String()})
	return probe.ServeUDP(ctx, pc, perf, func(pe probe.PeerEvent) {
		e := flowEvent{Event: "opened", UDP: pe.Peer.String()}
		if !pe.Open {
			e.Event, e.SDUs, e.Bytes = "closed", pe.SDUs, pe.Bytes
			if perf {
				r := pe.Report
				e.Report = &r
			}
		}
		s.event(e)
	})
}

// runEcho is "ouro echo NAME | --udp ADDR".
func runEcho(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		count int
		udp   bool
		allow string
	)
	fs.intVar(&count, 0, "exit after `N` flows were accepted and closed (0: serve until interrupted)", "count", "c")
	fs.boolVar(&udp, "echo UDP datagrams on ADDR (host:port) instead of flows to a name", "udp")
	fs.stringVar(&allow, "", "take sealed flows from these nodes only (`IDS`: ids as \"ouro id\" prints them, comma-separated); others and unsealed flows are refused", "allow")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	s := &server{a: a, kind: "echo", allow: parseAllow(allow)}
	if udp {
		if count != 0 {
			return usagef("echo: --count counts flows; it does not apply to --udp")
		}
		if allow != "" {
			return usagef("echo: --allow chooses peers of flows; it does not apply to --udp")
		}
		return s.serveUDP(ctx, pos[0], false)
	}
	return s.serveFlows(ctx, pos[0], count, func(c conn, stop <-chan struct{}, e *flowEvent) error {
		var err error
		e.SDUs, e.Bytes, err = probe.Echo(c, stop)
		return err
	})
}
