package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ouronet/ouro/images/mgmtflow"
	"github.com/ouronet/ouro/layer/ipcp"
)

func topCommand() *command {
	return &command{name: "top", args: "[-i D] [-n N] [--layer L [--names T]]", group: "management",
		summary: "a refreshing view of the node's IPCPs and flows: rates and drops", run: runTop,
		help: "Every -i (default 1 s) asks the node for its IPCPs (ipcps), each one's\n" +
			"counters (stats) and flows (flows), and redraws a table of the IPCPs with\n" +
			"their packet rates in and out and their drops (total and per second),\n" +
			"and one of the flows with their packet and byte rates and what waits at\n" +
			"their ends in the node (QUEUED, out/in: a unicast IPCP's). Rates are the\n" +
			"change since the previous round. It stops after -n rounds (default: until\n" +
			"interrupted); on a terminal it redraws in place.\n" +
			"With --layer L, every round asks the node's IPCP in layer L for the\n" +
			"layer's members and shows a section for each: this node's from its\n" +
			"socket, every other member's over a sealed management flow to its\n" +
			"management name, --names with {node} replaced by the member's name up to\n" +
			"its last dot (\"b.uni\" → \"b.mgmt\"); each member needs a \"mgmt\" app that\n" +
			"takes this node's flows (docs/observability.md)."}
}

// topIPCP is one IPCP in a round of top.
type topIPCP struct {
	name, layer, kind, state string
	in, out, drops           uint64
}

// topFlow is one flow of an IPCP in a round of top.
type topFlow struct {
	ipcp, eid, name, dir, cube         string
	pktsIn, pktsOut, bytesIn, bytesOut uint64
	drops                              string // "-" where the IPCP does not count them
	// queued is what waits now at the flow's ends in the node, "out/in"
	// (a unicast IPCP's queued_out and queued_in); "-" where the IPCP
	// does not say.
	queued string
}

func (f topFlow) key() string { return f.ipcp + "/" + f.eid }

// topRound is what one round of top saw.
type topRound struct {
	at    time.Time
	ipcps []topIPCP
	flows []topFlow
}

// mgmter is what top asks: a node, or a management flow.
type mgmter interface {
	Mgmt(ctx context.Context, req, resp any) error
}

// topPoll asks the node for a round.
func topPoll(ctx context.Context, n mgmter) (topRound, error) {
	r := topRound{at: time.Now()}
	call := func(req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		cctx, cancel := context.WithTimeout(ctx, defaultMgmtTimeout)
		defer cancel()
		var resp ipcp.MgmtResp
		err := n.Mgmt(cctx, req, &resp)
		return resp, err
	}
	ips, err := call(ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil {
		return r, fmt.Errorf("top: ipcps: %w", err)
	}
	col := func(t ipcp.Table, row []string, name string) string {
		if i := slices.Index(t.Columns, name); i >= 0 && i < len(row) {
			return row[i]
		}
		return ""
	}
	for _, row := range ips.Table.Rows {
		ip := topIPCP{name: col(ips.Table, row, "name"), layer: col(ips.Table, row, "layer"), kind: col(ips.Table, row, "kind"), state: col(ips.Table, row, "state")}
		if st, err := call(ipcp.MgmtReq{Cmd: "stats", IPCP: ip.name}); err == nil {
			ip.in, ip.out, ip.drops = statsRates(st.Table)
		}
		r.ipcps = append(r.ipcps, ip)
		fl, err := call(ipcp.MgmtReq{Cmd: "flows", IPCP: ip.name})
		if err != nil {
			continue
		}
		u := func(row []string, name string) uint64 {
			v, _ := strconv.ParseUint(col(fl.Table, row, name), 10, 64)
			return v
		}
		for _, row := range fl.Table.Rows {
			f := topFlow{ipcp: ip.name, eid: col(fl.Table, row, "eid"), name: col(fl.Table, row, "name"), dir: col(fl.Table, row, "dir"), cube: col(fl.Table, row, "cube"),
				pktsIn: u(row, "pkts_in"), pktsOut: u(row, "pkts_out"), bytesIn: u(row, "bytes_in"), bytesOut: u(row, "bytes_out"), drops: col(fl.Table, row, "drops")}
			if f.drops == "" {
				f.drops = "-"
			}
			f.queued = "-"
			if qo, qi := col(fl.Table, row, "queued_out"), col(fl.Table, row, "queued_in"); qo != "" || qi != "" {
				f.queued = orDash(qo) + "/" + orDash(qi)
			}
			r.flows = append(r.flows, f)
		}
	}
	return r, nil
}

// statsRates reads an IPCP's packets in and out and its drops from its
// stats table: a shim's packets_in and packets_out, a unicast IPCP's
// delivered and sent (plus forwarded, both ways), and every drops.* row.
func statsRates(t ipcp.Table) (in, out, drops uint64) {
	for _, row := range t.Rows {
		if len(row) != 2 {
			continue
		}
		v, err := strconv.ParseUint(row[1], 10, 64)
		if err != nil {
			continue
		}
		switch k := row[0]; {
		case k == "packets_in" || k == "delivered":
			in += v
		case k == "packets_out" || k == "sent":
			out += v
		case k == "forwarded":
			in += v
			out += v
		case strings.HasPrefix(k, "drops."):
			drops += v
		}
	}
	return in, out, drops
}

// rate is the change of a counter per second between two rounds.
func rate(prev, cur uint64, dt time.Duration, ok bool) string {
	if !ok || dt <= 0 || cur < prev {
		return "-"
	}
	return strconv.FormatFloat(float64(cur-prev)/dt.Seconds(), 'f', 0, 64)
}

// renderTop draws a round; prev (nil on the first) gives the rates.
func renderTop(w io.Writer, prev *topRound, cur topRound) {
	var dt time.Duration
	if prev != nil {
		dt = cur.at.Sub(prev.at)
	}
	fmt.Fprintf(w, "ouro top — %s, %d IPCPs, %d flows\n\n", cur.at.Format("15:04:05"), len(cur.ipcps), len(cur.flows))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IPCP\tLAYER\tKIND\tSTATE\tIN/s\tOUT/s\tDROPS\tDROPS/s")
	for _, ip := range cur.ipcps {
		var p topIPCP
		ok := false
		if prev != nil {
			for _, q := range prev.ipcps {
				if q.name == ip.name {
					p, ok = q, true
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", ip.name, ip.layer, ip.kind, ip.state,
			rate(p.in, ip.in, dt, ok), rate(p.out, ip.out, dt, ok), ip.drops, rate(p.drops, ip.drops, dt, ok))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IPCP\tEID\tNAME\tDIR\tCUBE\tPKTS_IN/s\tPKTS_OUT/s\tKB_IN/s\tKB_OUT/s\tDROPS\tQUEUED")
	prevFlows := map[string]topFlow{}
	if prev != nil {
		for _, f := range prev.flows {
			prevFlows[f.key()] = f
		}
	}
	flows := slices.Clone(cur.flows)
	slices.SortStableFunc(flows, func(a, b topFlow) int { return strings.Compare(a.key(), b.key()) })
	for _, f := range flows {
		p, ok := prevFlows[f.key()]
		kb := func(prev, cur uint64) string {
			s := rate(prev, cur, dt, ok)
			if s == "-" {
				return s
			}
			v, _ := strconv.ParseFloat(s, 64)
			return strconv.FormatFloat(v/1000, 'f', 1, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ipcp, f.eid, orDash(f.name), f.dir, f.cube,
			rate(p.pktsIn, f.pktsIn, dt, ok), rate(p.pktsOut, f.pktsOut, dt, ok), kb(p.bytesIn, f.bytesIn), kb(p.bytesOut, f.bytesOut), f.drops, orDash(f.queued))
	}
	tw.Flush()
}

func runTop(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		interval time.Duration
		rounds   int
	)
	fs.durationVar(&interval, time.Second, "redraw every `D`", "i", "interval")
	fs.intVar(&rounds, 0, "stop after `N` rounds (0: until interrupted)", "n", "rounds")
	var layer, names string
	fs.stringVar(&layer, "", "show every member of layer `L` (see above)", "layer", "l")
	fs.stringVar(&names, "{node}.mgmt", "the members' management names: `TEMPLATE` with {node}", "names")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	if interval <= 0 || rounds < 0 {
		return usagef("top: -i must be positive and -n not negative")
	}
	n, err := a.connect()
	if err != nil {
		return err
	}
	defer n.Close()
	tty := false
	if f, ok := a.stdout.(*os.File); ok {
		tty = isTerminal(f)
	}
	if layer != "" {
		return a.topLayer(ctx, n, layer, names, interval, rounds, tty)
	}
	var prev *topRound
	for i := 0; rounds == 0 || i < rounds; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(interval):
			}
		}
		cur, err := topPoll(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var b strings.Builder
		renderTop(&b, prev, cur)
		if tty {
			fmt.Fprint(a.stdout, "\x1b[H\x1b[2J") // home, clear
		} else if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprint(a.stdout, b.String())
		prev = &cur
	}
	return nil
}

// topMember is one member of a layer as top --layer sees it.
type topMember struct {
	name, via string // the member's IPCP name; its management name ("" for this node)
	m         mgmter // how to ask it; nil until its flow is up
	c         *flowMgmt
	prev      *topRound
}

// memberNode is the node name part of a member's IPCP name: up to its
// last dot.
func memberNode(member string) string {
	if i := strings.LastIndexByte(member, '.'); i > 0 {
		return member[:i]
	}
	return member
}

// topLayer runs top --layer: a section per member of layer.
func (a *app) topLayer(ctx context.Context, home node, layer, names string, interval time.Duration, rounds int, tty bool) error {
	members := map[string]*topMember{}
	defer func() {
		for _, m := range members {
			if m.c != nil {
				m.c.c.Close()
			}
		}
	}()
	for i := 0; rounds == 0 || i < rounds; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(interval):
			}
		}
		cctx, cancel := context.WithTimeout(ctx, defaultMgmtTimeout)
		var list ipcp.MgmtResp
		err := home.Mgmt(cctx, ipcp.MgmtReq{Cmd: "members", IPCP: layer}, &list)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("top: members of %s: %w", layer, err)
		}
		nameCol, nbCol := slices.Index(list.Table.Columns, "name"), slices.Index(list.Table.Columns, "neighbour")
		if nameCol < 0 || nbCol < 0 {
			return fmt.Errorf("top: members of %s: columns %v, want name and neighbour", layer, list.Table.Columns)
		}
		var order []string
		for _, row := range list.Table.Rows {
			if nameCol >= len(row) || nbCol >= len(row) || row[nameCol] == "" {
				continue
			}
			name := row[nameCol]
			m := members[name]
			if m == nil {
				m = &topMember{name: name}
				if row[nbCol] == "self" {
					m.m = home
				} else {
					m.via = strings.ReplaceAll(names, "{node}", memberNode(name))
				}
				members[name] = m
			}
			order = append(order, name)
		}
		slices.Sort(order)
		var b strings.Builder
		fmt.Fprintf(&b, "ouro top --layer %s — %s, %d members\n", layer, time.Now().Format("15:04:05"), len(order))
		for _, name := range order {
			m := members[name]
			fmt.Fprintf(&b, "\n== %s", name)
			if m.via != "" {
				fmt.Fprintf(&b, " (via %s)", m.via)
			} else {
				fmt.Fprint(&b, " (this node)")
			}
			fmt.Fprintln(&b, " ==")
			if m.m == nil {
				dctx, dcancel := context.WithTimeout(ctx, defaultMgmtTimeout)
				c, err := mgmtflow.Dial(dctx, home, m.via)
				dcancel()
				if err != nil {
					fmt.Fprintf(&b, "no management flow: %v\n", err)
					continue
				}
				m.c = &flowMgmt{c: c, name: m.via}
				m.m = m.c
			}
			cur, err := topPoll(ctx, m.m)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				fmt.Fprintf(&b, "%v\n", err)
				if m.c != nil { // dial again next round
					m.c.c.Close()
					m.c, m.m = nil, nil
				}
				continue
			}
			renderTop(&b, m.prev, cur)
			m.prev = &cur
		}
		if tty {
			fmt.Fprint(a.stdout, "\x1b[H\x1b[2J")
		} else if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprint(a.stdout, b.String())
	}
	return nil
}
