package node

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
)

// A board link device (the board's Ethernet NIC, its USB Ethernet gadget)
// has a driver component of its own, "driver.enet" or "driver.usb": the
// node initialises the device before the kernel boots (Node.Start), and
// the driver component runs its receive half, the netstack.Mux that
// splits frames between the Ethernet shim's port and the netstack's. The
// IRM supervises it like an in-node app: a fault (a panic in the receive
// path) is logged and the component restarted with back-off; the ports
// and their queues outlive it, so the shims on them carry on after a gap.
// The driver holds no cap: it cannot reach the IRM, an IPCP or a program.
//
// The shims reach the device only through the port they open
// (ipcpDevices, boardLink): a bounded queue each way in, a direct write
// out.

// driverComponent names the driver component of board link p.
func driverComponent(p boardPort) string { return "driver." + string(p) }

// driverBadge is the badge of driver j's faults (RoleApp, ids from
// 1<<20 up: no extra has as many). The driver holds no cap to the IRM, so
// it authorises nothing.
func driverBadge(j int) kernel.Badge { return irm.MakeBadge(irm.RoleApp, 1<<20+uint64(j)) }

// boardLinksUsed returns the board link devices cfg's IPCPs use, each
// once, in order of first use.
func boardLinksUsed(cfg *Config) []boardPort {
	var out []boardPort
	add := func(p boardPort) {
		for _, q := range out {
			if q == p {
				return
			}
		}
		out = append(out, p)
	}
	for _, p := range cfg.IPCPs {
		switch p.Kind {
		case "eth":
			var c ethConfig
			if cfg.decode(p.Eth, &c) == nil && c.Board != "" && c.Interface == "" && c.QEMUConnect == "" && c.QEMUListen == "" {
				add(c.Board)
			}
		case "udp":
			var c udpConfig
			if cfg.decode(p.UDP, &c) == nil && c.Netstack != nil && c.Netstack.Board != "" {
				add(c.Netstack.Board)
			}
		}
	}
	return out
}

// driver is the state of one board link's driver component that outlives
// its incarnations: the Mux and the fault record shown in the stats of
// the shims on it.
type driver struct {
	port boardPort
	mux  *netstack.Mux

	incarnations atomic.Uint64
	faults       atomic.Uint64
	mu           sync.Mutex // guards lastFault, lastAt
	lastFault    string
	lastAt       time.Time
}

// program is the driver component's program: run the Mux's receive loop
// until the incarnation ends. A panic in it is recorded and passed on to
// the kernel (a fault for the IRM, which restarts the component).
func (d *driver) program(pd *kernel.PD) error {
	d.incarnations.Add(1)
	// A receive blocked in the device returns when woken: at the end of
	// the incarnation (killed, restarted, the node stopping).
	pd.Go(func() {
		<-pd.Context().Done()
		d.mux.Wake()
	})
	defer func() {
		if r := recover(); r != nil {
			d.faults.Add(1)
			d.mu.Lock()
			d.lastFault, d.lastAt = fmt.Sprint(r), time.Now()
			d.mu.Unlock()
			panic(r) // the kernel's: a fault of this component
		}
	}()
	if err := d.mux.Run(pd.Context()); err != nil {
		return fmt.Errorf("%s: %w", driverComponent(d.port), err)
	}
	return nil
}

// rows are the driver's counters as rows of a shim's "stats" table.
func (d *driver) rows() [][]string {
	s := d.mux.Stats()
	d.mu.Lock()
	last := "-"
	if d.lastFault != "" {
		last = fmt.Sprintf("%s (%v ago)", d.lastFault, time.Since(d.lastAt).Round(time.Millisecond))
	}
	d.mu.Unlock()
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return [][]string{
		{"driver.component", driverComponent(d.port)},
		{"driver.incarnations", u(d.incarnations.Load())},
		{"driver.faults", u(d.faults.Load())},
		{"driver.last_fault", last},
		{"driver.rx_frames", u(s.RxFrames)},
		{"driver.rx_errors", u(s.RxErrors)},
		{"driver.drops_shim", u(s.Drops[netstack.PortShim])},
		{"driver.drops_ip", u(s.Drops[netstack.PortIP])},
	}
}

// drivers are the node's board link drivers, by port. It is filled by
// Node.Start before the kernel boots and only read afterwards.
type drivers map[boardPort]*driver

// open opens port i of board link p: the handle a shim's device is.
func (ds drivers) open(p boardPort, i int) (*netstack.MuxPort, error) {
	d := ds[p]
	if d == nil {
		return nil, fmt.Errorf("board link %q: no driver running (the node starts one for each board link its configured IPCPs use): %w", p, flow.ErrNotFound)
	}
	return d.mux.Open(i)
}

// boardShim is a shim on a board link: its "stats" end with the driver's
// counters.
type boardShim struct {
	shimManager
	d *driver
}

// Mgmt implements irm.Manager.
func (s boardShim) Mgmt(ctx context.Context, req irm.MgmtReq) (irm.MgmtResp, error) {
	resp, err := s.shimManager.Mgmt(ctx, req)
	if err == nil && req.Cmd == "stats" && s.d != nil {
		resp.Table.Rows = append(resp.Table.Rows, s.d.rows()...)
	}
	return resp, err
}

// DriverSummary describes each board link driver in one line (for an
// image's console at exit): its restarts, faults and receive counters.
func (n *Node) DriverSummary() []string {
	var out []string
	for _, p := range n.links {
		d := n.drivers[p]
		if d == nil {
			continue
		}
		s := d.mux.Stats()
		d.mu.Lock()
		last := d.lastFault
		d.mu.Unlock()
		if last == "" {
			last = "-"
		}
		out = append(out, fmt.Sprintf("%s: incarnations %d, faults %d, last fault %s; rx %d frames, %d errors, drops shim %d ip %d",
			driverComponent(p), d.incarnations.Load(), d.faults.Load(), last, s.RxFrames, s.RxErrors, s.Drops[netstack.PortShim], s.Drops[netstack.PortIP]))
	}
	return out
}
