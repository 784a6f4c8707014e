package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
)

// goRunner runs the bridge's goroutines as plain goroutines: a hosted
// program is no kernel component.
type goRunner struct{}

func (goRunner) Go(f func()) { go f() }

// ipnetCommand is "ouro ipnet NAME --tun DEV --route PREFIX=NAME[,...]".
func ipnetCommand() *command {
	return &command{name: "ipnet", args: "NAME --tun DEV --route PREFIX=PEER[,...]", group: "ip",
		summary: "carry IP over flows: a TUN interface bridged to peers' names", run: runIPNet,
		help: "Creates the TUN interface DEV (root or CAP_NET_ADMIN), binds NAME and\n" +
			"bridges: an IP packet read from DEV goes, as one SDU, on a flow to the\n" +
			"PEER whose PREFIX is the longest to match its destination (allocated on\n" +
			"demand, closed after --idle); packets on flows allocated to NAME are\n" +
			"written to DEV. Add addresses yourself (ip addr add 10.7.0.1/24 dev DEV).\n" +
			"The MTU should not exceed what the flows carry (their SDU limit): larger\n" +
			"packets are dropped and counted. PREFIX=PEER@voice (or @video) carries\n" +
			"the route's packets on flows of that class; --dscp picks the class by\n" +
			"each packet's DSCP where the route names none. Runs until interrupted,\n" +
			"then prints the counters per route (a bridge inside a node, [[ipnet]],\n" +
			"shows them while it runs: \"ouro bridges\"). docs/ipnet.md."}
}

func runIPNet(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		dev, routes string
		mtu         int
		idle        time.Duration
		sealed      bool
		dscp        bool
		aqm         time.Duration
	)
	fs.stringVar(&dev, "", "the TUN interface to create or attach to", "tun")
	fs.stringVar(&routes, "", "comma-separated `PREFIX=PEER[@CLASS]` routes (an address alone is a host route; CLASS voice or video)", "route")
	fs.intVar(&mtu, 1280, "the interface's `MTU` (at most the flows' SDU limit)", "mtu")
	fs.durationVar(&idle, time.Minute, "close a flow idle for `D`", "idle")
	fs.boolVar(&sealed, "seal the flows: an encrypted tunnel between the nodes", "sealed")
	fs.boolVar(&dscp, "choose each packet's flow class (voice, video, default) by its DSCP", "dscp")
	fs.durationVar(&aqm, ipnet.DefaultAQMTarget, "drop or mark CE packets that have waited `D` for a flow (CoDel); 0: off, only a full queue drops", "aqm-target")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if dev == "" {
		return usagef("ipnet: --tun DEV is required")
	}
	var rs []ipnet.Route
	for _, s := range strings.Split(routes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		r, err := ipnet.ParseRoute(s)
		if err != nil {
			return usagef("ipnet: %v", err)
		}
		rs = append(rs, r)
	}
	if mtu < flow.MinSDU || mtu > flow.MaxJumboSDU {
		return usagef("ipnet: --mtu %d: want %d to %d", mtu, flow.MinSDU, flow.MaxJumboSDU)
	}
	n, err := a.connectFlows()
	if err != nil {
		return err
	}
	defer n.Close()
	tun, err := openTUN(dev, mtu)
	if err != nil {
		return err
	}
	q := flow.BestEffort()
	q.Sealed = sealed
	b, err := ipnet.New(ipnet.Config{Broker: n, Dev: tun, Runner: goRunner{}, Name: pos[0], Routes: rs, QoS: q, DSCP: dscp, Idle: idle, AQMTarget: cmp.Or(aqm, -1),
		Log: slog.New(slog.NewTextHandler(a.stderr, nil))})
	if err != nil {
		tun.Close()
		return err
	}
	fmt.Fprintf(a.stdout, "ouro ipnet ready: name %s, tun %s, mtu %d, %d routes\n", pos[0], tun.name(), mtu, len(rs))
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case err = <-done: // the device failed
	case <-ctx.Done():
		tun.Close()
		err = <-done
	}
	tun.Close()
	routesStats, noRoute, in, inBytes, inDrops := b.Stats()
	fmt.Fprintf(a.stdout, "ouro ipnet %s: received %d packets (%s, %d TCP super-packets), %d dropped; %d packets with no route; %d accepts failed (tried again)\n",
		pos[0], in, siUnit(float64(inBytes), "B"), b.SupersIn(), inDrops, noRoute, b.AcceptErrors())
	for _, r := range routesStats {
		fmt.Fprintf(a.stdout, "  %s -> %s: sent %d packets (%s) of %d TCP super-packets read, dropped %d (%d too big, %d by the AQM), %d marked CE, %d flows, %d allocation errors\n",
			r.Prefix, r.Name, r.PktsOut, siUnit(float64(r.BytesOut), "B"), r.Supers, r.Drops, r.TooBig, r.AQMDrops, r.AQMMarks, r.Allocs, r.AllocErrors)
	}
	return err
}
