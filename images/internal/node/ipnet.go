package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/ipnet"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/kernel"
)

// IPNetConfig is one [[ipnet]] table: an IP bridge component (package
// flow/ipnet) between a TUN interface and flows (docs/ipnet.md).
type IPNetConfig struct {
	// Name is bound: peers' flows to it carry IP packets for this node.
	Name string `toml:"name"`
	// TUN is the interface created (or attached to); required.
	TUN string `toml:"tun"`
	// MTU of the interface (default 1280): at most the flows' SDU limit.
	MTU int `toml:"mtu"`
	// Routes are "PREFIX=NAME": packets for PREFIX go to the bridge NAME.
	Routes []string `toml:"routes"`
	// Sealed seals the bridge's flows (an encrypted tunnel).
	Sealed bool `toml:"sealed"`
	// Idle closes a flow that carried nothing this long (default 60s).
	Idle duration `toml:"idle"`
	// Bufs is the component's packet-buffer budget (default 4096).
	Bufs int `toml:"bufs"`
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
	if c.Name == "" || !nameRE.MatchString(c.Name) {
		return nil, flow.QoS{}, fmt.Errorf("name %q: letters, digits, '.', '_' and '-' only: %w", c.Name, flow.ErrInvalid)
	}
	if c.TUN == "" {
		return nil, flow.QoS{}, fmt.Errorf("tun: the interface's name is required: %w", flow.ErrInvalid)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > flow.MaxSDU) {
		return nil, flow.QoS{}, fmt.Errorf("mtu = %d: want 576 to %d: %w", c.MTU, flow.MaxSDU, flow.ErrInvalid)
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
// each a component "ipnet.NAME" that opens its TUN with open, opens a
// session with the IRM and runs the bridge until the component stops.
func IPNets(cfg *Config, open TUNOpener, logf func(string, ...any)) ([]Extra, error) {
	if len(cfg.IPNets) > 0 && open == nil {
		return nil, fmt.Errorf("config: [[ipnet]]: this image has no TUN interfaces: %w", flow.ErrInvalid)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
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
		xs = append(xs, Extra{Name: "ipnet." + c.Name, Bufs: c.Bufs, Program: func(pd *kernel.PD) error {
			tun, err := open(c.TUN, mtu)
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
			br, err := ipnet.New(ipnet.Config{Broker: b, Dev: tun, Runner: pd, Name: c.Name, Routes: routes, QoS: q, Idle: c.Idle.Duration,
				Logf: func(format string, args ...any) { logf("ipnet %s: "+format, append([]any{c.Name}, args...)...) }})
			if err != nil {
				return err
			}
			logf("ipnet %s: tun %s, mtu %d, %d routes", c.Name, c.TUN, mtu, len(routes))
			return br.Run(ctx)
		}})
	}
	return xs, nil
}
