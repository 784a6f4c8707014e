package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
)

// IPNetConfig is one [[ipnet]] table: an IP bridge component (package
// flow/ipnet) between flows and either a TUN interface of the host or
// the node's own TCP/IP stack (docs/ipnet.md).
type IPNetConfig struct {
	// Name is bound: peers' flows to it carry IP packets for this node.
	Name string `toml:"name"`
	// TUN is the interface created (or attached to); it or Netstack is
	// required.
	TUN string `toml:"tun"`
	// Netstack, "ADDR/BITS", makes the bridge's IP side the node's own
	// TCP/IP stack (images/internal/ipstack) with that address, instead
	// of a TUN: hosted and on boards.
	Netstack string `toml:"netstack"`
	// Status, a TCP port, serves the node's status page on the netstack
	// address (0: none).
	Status uint16 `toml:"status"`
	// MTU of the interface (default 1280): at most the flows' SDU limit.
	MTU int `toml:"mtu"`
	// Routes are "PREFIX=NAME": packets for PREFIX go to the bridge NAME.
	Routes []string `toml:"routes"`
	// Sealed seals the bridge's flows (an encrypted tunnel).
	Sealed bool `toml:"sealed"`
	// DSCP chooses each packet's flow class (voice, video, default) by
	// its DSCP where its route names no class.
	DSCP bool `toml:"dscp"`
	// Idle closes a flow that carried nothing this long (default 60s).
	Idle duration `toml:"idle"`
	// Bufs is the component's packet-buffer budget (default 4096).
	Bufs int `toml:"bufs"`
	// AQMTarget is the wait that packets for a flow may stand at before
	// the bridge drops or marks them CE (CoDel; default 5ms, negative:
	// off, only a full queue drops).
	AQMTarget offDuration `toml:"aqm_target"`
}

// TUNOpener opens a TUN interface: hosted images pass ipnet.OpenTUN's;
// boards have none.
type TUNOpener func(name string, mtu int) (TUN, error)

// TUN is an opened interface: packets, and Close to stop.
type TUN interface {
	ipnet.Device
	io.Closer
}

// bridgeConfig checks c and returns the bridge's routes and QoS.
func (c IPNetConfig) bridgeConfig() ([]ipnet.Route, flow.QoS, error) {
	if c.Name == "" || !validName(c.Name) {
		return nil, flow.QoS{}, fmt.Errorf("name %q: letters, digits, '.', '_' and '-' only: %w", c.Name, flow.ErrInvalid)
	}
	if (c.TUN == "") == (c.Netstack == "") {
		return nil, flow.QoS{}, fmt.Errorf("set one of tun (a host interface) and netstack (the node's own stack, ADDR/BITS): %w", flow.ErrInvalid)
	}
	if c.Netstack != "" {
		if _, err := netip.ParsePrefix(c.Netstack); err != nil {
			return nil, flow.QoS{}, fmt.Errorf("netstack = %q: want ADDR/BITS: %w: %w", c.Netstack, flow.ErrInvalid, err)
		}
	}
	if c.Status != 0 && c.Netstack == "" {
		return nil, flow.QoS{}, fmt.Errorf("status = %d: serves on the node's own stack: set netstack: %w", c.Status, flow.ErrInvalid)
	}
	if c.MTU != 0 && (c.MTU < flow.MinSDU || c.MTU > flow.MaxJumboSDU) {
		return nil, flow.QoS{}, fmt.Errorf("mtu = %d: want %d to %d: %w", c.MTU, flow.MinSDU, flow.MaxJumboSDU, flow.ErrInvalid)
	}
	var rs []ipnet.Route
	for _, s := range c.Routes {
		r, err := ipnet.ParseRoute(s)
		if err != nil {
			return nil, flow.QoS{}, err
		}
		rs = append(rs, r)
	}
	q := flow.BestEffort()
	q.Sealed = c.Sealed
	return rs, q, nil
}

// IPNets returns the [[ipnet]] bridges cfg declares, as Extras for New:
// each a component "ipnet.NAME" that opens its TUN with open (or makes
// its own TCP/IP stack, and serves the status page on it if asked),
// opens a session with the IRM and runs the bridge until the component
// stops.
func IPNets(cfg *Config, open TUNOpener, log *slog.Logger) ([]Extra, error) {
	for i, c := range cfg.IPNets {
		if c.TUN != "" && open == nil {
			return nil, fmt.Errorf("config: [[ipnet]] #%d: tun = %q: this image has no TUN interfaces (netstack = ADDR/BITS gives the node its own stack): %w", i+1, c.TUN, flow.ErrInvalid)
		}
	}
	log = logx.Or(log)
	var xs []Extra
	for i, c := range cfg.IPNets {
		routes, q, err := c.bridgeConfig()
		if err != nil {
			return nil, fmt.Errorf("config: [[ipnet]] #%d: %w", i+1, err)
		}
		mtu := c.MTU
		if mtu == 0 {
			mtu = 1280
		}
		log := log.With("component", "ipnet."+c.Name)
		// Objects: the endpoint its counters are served on (bridgeTarget),
		// and room for the next incarnation's while the IRM drops this
		// one's.
		xs = append(xs, Extra{Name: "ipnet." + c.Name, Bufs: c.Bufs, Objects: 2, Program: func(pd *kernel.PD) error {
			var tun TUN
			var st ipStack
			var err error
			if c.Netstack != "" {
				if st, err = newIPStack(netip.MustParsePrefix(c.Netstack), mtu); err == nil {
					tun = st
				}
			} else {
				tun, err = open(c.TUN, mtu)
			}
			if err != nil {
				return err
			}
			ctx := pd.Context()
			stop := context.AfterFunc(ctx, func() { tun.Close() })
			defer stop()
			defer tun.Close()
			ep, err := pd.Slot(slotIRM)
			if err != nil {
				return err
			}
			var b *irm.Broker
			for delay := 10 * time.Millisecond; b == nil; delay = min(2*delay, time.Second) {
				if b, err = irm.OpenSession(ctx, pd, ep, irm.SessionReq{}); err == nil {
					break
				}
				select {
				case <-time.After(delay): // the IRM starts alongside
				case <-ctx.Done():
					return nil
				}
			}
			defer b.Close()
			br, err := ipnet.New(ipnet.Config{Broker: b, Dev: tun, Runner: pd, Name: c.Name, Routes: routes, QoS: q, DSCP: c.DSCP, Idle: c.Idle.Duration,
				AQMTarget: c.AQMTarget.Duration,
				Log:       log})
			if err != nil {
				return err
			}
			if err := b.ServeTarget(ctx, irm.TargetArgs{Kind: irm.TargetIPNet, Name: c.Name}, bridgeTarget{br}); err != nil {
				// The bridge carries packets all the same; only
				// "ouro bridges" does not see it.
				log.Warn("counters not offered to management", "err", err)
			}
			if st == nil {
				log.Info("bridge started", "tun", c.TUN, "mtu", mtu, "routes", len(routes))
				return br.Run(ctx)
			}
			log.Info("bridge started", "netstack", c.Netstack, "mtu", mtu, "routes", len(routes))
			if c.Status != 0 {
				if err := st.serveStatus(pd, c.Status, b, log); err != nil {
					return err
				}
				log.Info("status page", "url", fmt.Sprintf("http://%s:%d/", st.Addr(), c.Status))
			}
			return br.Run(ctx)
		}})
	}
	return xs, nil
}

// bridgeTarget answers the IRM's ipcp.CmdBridges for one bridge with its
// counters (irm.BridgeColumns): a row per route, in route order, then
// "in" (packets peers sent it: written to the device, or dropped;
// flow_errors are Accepts that failed), "no_route" (packets read that
// matched no route) and "device" (device reads that failed and were
// passed over). Routes to one peer name share that name's counters.
type bridgeTarget struct{ b *ipnet.Bridge }

var _ ipcp.Manager = bridgeTarget{}

// Mgmt implements ipcp.Manager.
func (t bridgeTarget) Mgmt(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if req.Cmd != ipcp.CmdBridges {
		return ipcp.MgmtResp{}, fmt.Errorf("ipnet: no command %q: %w", req.Cmd, flow.ErrInvalid)
	}
	return ipcp.MgmtResp{Table: bridgeTable(t.b)}, nil
}

// bridgeTable is b's rows of the "bridges" table.
func bridgeTable(b *ipnet.Bridge) ipcp.Table {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	routes, noRoute, in, inBytes, inDrops := b.Stats()
	aqmDrops, aqmMarks := b.InAQM()
	t := ipcp.Table{Columns: irm.BridgeColumns}
	for _, r := range routes {
		t.Rows = append(t.Rows, []string{r.Prefix, r.Name, u(r.PktsOut), u(r.BytesOut), u(r.Drops), u(r.TooBig), u(r.AQMDrops), u(r.AQMMarks), u(r.Supers), u(r.Allocs), u(r.AllocErrors)})
	}
	t.Rows = append(t.Rows,
		[]string{"in", "-", u(in), u(inBytes), u(inDrops), "-", u(aqmDrops), u(aqmMarks), u(b.SupersIn()), "-", u(b.AcceptErrors())},
		[]string{"no_route", "-", "-", "-", u(noRoute), "-", "-", "-", "-", "-", "-"},
		[]string{"device", "-", "-", "-", u(b.DevErrors()), "-", "-", "-", "-", "-", "-"})
	return t
}
