// Package node assembles a node from its configuration: the kernel, the
// IRM, one component per IPCP and, hosted, the socket gateway. It is the
// composition root shared by the images; nothing outside images/ uses it.
package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// Component, endpoint and slot names in the node's system description
// (docs/node.md draws it).
const (
	rootName    = "root" // supervises the IRM
	irmName     = "irm"
	gatewayName = "gateway"
	slotIRM     = "irm"     // every client's cap to the IRM's endpoint
	slotEP      = "ep"      // an IPCP's own endpoint
	slotFault   = "fault"   // a supervisor's fault endpoint (Read)
	slotSession = "session" // a gateway session component's session cap
)

// restartSlot names the supervisor's slot of its component cap to child.
func restartSlot(child string) string { return "restart." + child }

// faultEndpoint names the endpoint a supervisor receives its children's
// faults on.
func faultEndpoint(supervisor string) string { return supervisor + ".fault" }

// ipcpEnv is what an IPCP's component gives the IPCP it runs: its
// upcalls into the IRM and, for IPCPs that are themselves flow users
// (unicast, broadcast: their N-1 flows), a session with the IRM opened
// with the component's own (IPCP-badged) cap.
type ipcpEnv struct {
	pd    *kernel.PD
	irmEP kernel.Cap
	up    ipcp.Upcalls
}

// broker opens a session for the IPCP's own N-1 flows.
func (e ipcpEnv) broker() (*irm.Broker, error) {
	ctx, cancel := context.WithTimeout(e.pd.Context(), 10*time.Second)
	defer cancel()
	return irm.OpenSession(ctx, e.pd, e.irmEP, irm.SessionReq{})
}

// signer returns the component's signing capability to the node's
// signer (identity.go), or nil if it holds none (IPCPs created at run
// time) or the node's key is not known.
func (e ipcpEnv) signer(nodeKey ed25519.PublicKey) *SignerClient {
	if nodeKey == nil {
		return nil
	}
	c, err := e.pd.Slot(SlotSigner)
	if err != nil {
		return nil
	}
	return NewSignerClient(e.pd, c, nodeKey)
}

// ipcpImpl is an IPCP as the node runs it.
type ipcpImpl interface {
	ipcp.IPCP
	Start() error
	Stop()
}

// Node is a running node.
type Node struct {
	cfg    *Config
	k      *kernel.Kernel
	sys    *kernel.System
	log    *slog.Logger
	extras []Extra
	icfg   irm.Config         // the IRM's configuration; each IRM instance gets a fresh copy
	id     *identity.Identity // the node's key: the signer component's alone (identity.go)
	signer *SignerComponent
	irms   atomic.Int32
	clean  sync.Once
	// links are the board link devices the configuration's IPCPs use
	// and the others the board has, each with a driver component;
	// drivers is filled by Start before the kernel boots and only read
	// afterwards.
	links   []boardPort
	drivers drivers

	// Test seams (nil outside tests): wrap the IRM's program, or each
	// IPCP a component builds, to inject faults.
	wrapIRM  func(kernel.Program) kernel.Program
	wrapIPCP func(ipcpImpl) ipcpImpl
	// openLink, if set, replaces openBoardLink (a test's board link).
	openLink func(boardPort) (*netstack.Mux, error)
	// resetLink, with openLink, replaces resetBoardLink (nil: a test's
	// board link cannot be re-initialised).
	resetLink func(boardPort) func() error
}

// Extra is an additional component an image adds to the node (the socket
// gateway, an in-node application): it gets a cap to the IRM's endpoint in
// the slot named "irm" and the given budget. The IRM supervises it: a
// fault ends its sessions and restarts it (with back-off).
type Extra struct {
	Name    string
	Bufs    int
	Objects int // run-time objects it may create (endpoints, rings, children)
	Program kernel.Program
	// Mgmt gives it management authority: its sessions may change the
	// node (reg, create, IPCP commands). The gateway decides per session.
	Mgmt bool
	// Prepare, if set, runs before the kernel boots (to open a listener
	// that must exist once Start returns); an error aborts Start.
	Prepare func() error
	// Cleanup, if set, runs once the node has stopped.
	Cleanup func()
	// NoIRM: it is given no cap to the IRM (a component that does not
	// use the node's IPC, such as the scheduler's processors).
	NoIRM bool
}

// New builds a node from cfg; Start boots it.
func New(cfg *Config, extras ...Extra) (*Node, error) {
	return newNode(cfg, boardLinks(), extras...)
}

// newNode is New on a board with the link devices has (a test's board
// has its own).
func newNode(cfg *Config, has []boardPort, extras ...Extra) (*Node, error) {
	n := &Node{cfg: cfg, extras: extras, links: nodeLinks(cfg, has), drivers: drivers{}}
	var err error
	if n.log, err = NewLogger(cfg, os.Stderr); err != nil {
		return nil, err
	}
	if n.id, err = loadIdentity(cfg); err != nil {
		return nil, err
	}
	if n.signer, err = n.newSigner(); err != nil {
		return nil, err
	}
	n.sys = n.describe()
	if err := n.signer.AddTo(n.sys); err != nil {
		return nil, fmt.Errorf("node: system description: %w", err)
	}
	superviseSigner(n.sys)
	if err := n.sys.Validate(); err != nil {
		return nil, fmt.Errorf("node: system description: %w", err)
	}
	autoreg := true
	if cfg.IRM.AutoRegister != nil {
		autoreg = *cfg.IRM.AutoRegister
	}
	n.icfg = irm.Config{
		RingSize:      cfg.IRM.RingSize,
		AcceptTimeout: cfg.IRM.AcceptTimeout.Duration,
		QueryTimeout:  cfg.IRM.QueryTimeout.Duration,
		CallTimeout:   cfg.IRM.CallTimeout.Duration,
		Backlog:       cfg.IRM.Backlog,
		AutoRegister:  autoreg,
		Describe:      n.Describe,
		ComponentStats: func(name string) (kernel.ComponentStats, error) {
			return n.k.Stats(name)
		},
		BufTotals: func() kernel.BufTotals { return n.k.BufTotals() },
		FaultSlot: slotFault,
		Restart: irm.RestartPolicy{
			Min: cfg.IRM.RestartMin.Duration, Max: cfg.IRM.RestartMax.Duration, Stable: cfg.IRM.RestartStable.Duration,
		},
		Creator: ipcpFactory{node: cfg.Node.Name, nodeKey: n.id.Public(), log: func() *slog.Logger { return n.log }, devices: boardDevices{n.drivers}},
		Incarnation: func(name string) (uint64, bool) {
			_, inc, err := n.k.State(name)
			return uint64(inc), err == nil
		},
	}
	for i, p := range cfg.IPCPs {
		name := ipcpComponent(p.Name)
		n.icfg.IPCPs = append(n.icfg.IPCPs, irm.IPCPSlot{
			Slot:      name,
			Component: restartSlot(name),
			Badge:     ipcpBadge(i),
			Info:      ipcp.Info{Name: p.Name, Layer: p.Layer, Kind: p.Kind, State: "init"},
		})
	}
	for i, x := range extras {
		n.icfg.Children = append(n.icfg.Children, irm.ChildSlot{Name: x.Name, Component: restartSlot(x.Name), Badge: n.extraBadge(i)})
	}
	for j, p := range n.links {
		name := driverComponent(p)
		n.icfg.Children = append(n.icfg.Children, irm.ChildSlot{Name: name, Component: restartSlot(name), Badge: driverBadge(j)})
	}
	return n, nil
}

func ipcpComponent(name string) string { return "ipcp." + name }

// endpointName names the endpoint a component serves.
func endpointName(component string) string { return component + ".ep" }

// ipcpBadge is the badge of the i-th configured IPCP's cap to the IRM.
func ipcpBadge(i int) kernel.Badge { return irm.MakeBadge(irm.RoleIPCP, uint64(i)) }

// extraBadge is the badge of extra i's cap to the IRM: its role.
func (n *Node) extraBadge(i int) kernel.Badge {
	x := n.extras[i]
	switch {
	case x.Name == gatewayName:
		return irm.MakeBadge(irm.RoleGateway, uint64(i))
	case x.Mgmt:
		return irm.MakeBadge(irm.RoleManager, uint64(i))
	}
	return irm.MakeBadge(irm.RoleApp, uint64(i))
}

// describe builds the node's system description: which components exist
// and which caps each starts with. It is data: printable, drawable and
// checked by tests for who can reach whom (docs/node.md).
func (n *Node) describe() *kernel.System {
	cfg := n.cfg
	irmEPName := endpointName(irmName)
	sys := &kernel.System{Endpoints: []kernel.ObjectSpec{
		{Name: irmEPName}, {Name: faultEndpoint(irmName)}, {Name: faultEndpoint(rootName)},
	}}
	// The root supervises the IRM alone: it receives the IRM's faults
	// and restarts it; a new IRM restarts everything else (irm.Config.Fresh).
	root := kernel.ComponentSpec{
		Name: rootName,
		Caps: []kernel.CapSpec{
			{Name: slotFault, Object: faultEndpoint(rootName), Rights: kernel.Read},
			{Name: restartSlot(irmName), Object: irmName, Rights: kernel.Write},
		},
	}
	irmSpec := kernel.ComponentSpec{
		Name:          irmName,
		Supervisor:    rootName,
		FaultEndpoint: faultEndpoint(rootName),
		// Bufs: 64 of its own, the rest for IPCPs it creates at run time
		// (a child's budget is carved from its spawner's).
		Budget: kernel.Budget{Bufs: 64 + 1<<16, Objects: 1 << 16},
		Caps: []kernel.CapSpec{
			{Name: slotIRM, Object: irmEPName, Rights: kernel.AllRights},
			{Name: slotFault, Object: faultEndpoint(irmName), Rights: kernel.Read},
		},
	}
	// supervised returns spec with the IRM as its supervisor, its faults
	// badged with its cap's badge, and the IRM's cap to restart it.
	supervised := func(spec kernel.ComponentSpec, badge kernel.Badge) kernel.ComponentSpec {
		spec.Supervisor = irmName
		spec.FaultEndpoint = faultEndpoint(irmName)
		spec.FaultBadge = badge
		irmSpec.Caps = append(irmSpec.Caps, kernel.CapSpec{Name: restartSlot(spec.Name), Object: spec.Name, Rights: kernel.Write})
		return spec
	}
	var comps []kernel.ComponentSpec
	// A board link's driver (driver.go): supervised, Read on its attach
	// endpoint, nothing else; the IPCPs that use the link and the IRM
	// (for IPCPs it creates at run time) hold Write with Grant on it.
	drivers := map[boardPort]*kernel.ComponentSpec{}
	for _, p := range n.links {
		// Bufs: the receive buffer in hand and a transmit batch; Objects:
		// the notification its shims' transmit rings are bound to.
		drivers[p] = &kernel.ComponentSpec{Name: driverComponent(p), Budget: kernel.Budget{Bufs: 1 + popBatch, Objects: 1}}
		sys.Endpoints = append(sys.Endpoints, kernel.ObjectSpec{Name: attachEndpoint(p)})
		drivers[p].Caps = append(drivers[p].Caps, kernel.CapSpec{Name: slotDriverAttach, Object: attachEndpoint(p), Rights: kernel.Read})
		irmSpec.Caps = append(irmSpec.Caps, kernel.CapSpec{Name: attachSlot(p), Object: attachEndpoint(p), Rights: attachRights})
	}
	for i, p := range cfg.IPCPs {
		name := ipcpComponent(p.Name)
		ep := endpointName(name)
		sys.Endpoints = append(sys.Endpoints, kernel.ObjectSpec{Name: ep})
		irmSpec.Caps = append(irmSpec.Caps, kernel.CapSpec{
			Name: name, Object: ep, Rights: kernel.Write | kernel.Grant | kernel.GrantReply,
		})
		spec := kernel.ComponentSpec{
			Name:   name,
			Budget: kernel.Budget{Bufs: p.Bufs},
			Caps: []kernel.CapSpec{
				{Name: slotEP, Object: ep, Rights: kernel.Read},
				{Name: slotIRM, Object: irmEPName, Rights: kernel.Write | kernel.Grant | kernel.GrantReply, Badge: ipcpBadge(i)},
			},
		}
		// An IPCP on a board link may attach to the link's driver (and
		// makes its two rings).
		if link, _, ok := boardUse(cfg, p); ok && drivers[link] != nil {
			spec.Caps = append(spec.Caps, kernel.CapSpec{Name: attachSlot(link), Object: attachEndpoint(link), Rights: attachRights})
			spec.Budget.Objects += attachObjects
		}
		comps = append(comps, supervised(spec, ipcpBadge(i)))
	}
	for j, p := range n.links {
		comps = append(comps, supervised(*drivers[p], driverBadge(j)))
	}
	for i, x := range n.extras {
		bufs := x.Bufs
		if bufs == 0 {
			bufs = 4096
		}
		badge := n.extraBadge(i)
		spec := kernel.ComponentSpec{Name: x.Name, Budget: kernel.Budget{Bufs: bufs, Objects: x.Objects}}
		if !x.NoIRM {
			spec.Caps = []kernel.CapSpec{
				{Name: slotIRM, Object: irmEPName, Rights: kernel.Write | kernel.Grant | kernel.GrantReply, Badge: badge},
			}
		}
		comps = append(comps, supervised(spec, badge))
	}
	sys.Components = append(sys.Components, root, irmSpec)
	sys.Components = append(sys.Components, comps...)
	return sys
}

// System returns the node's system description as configured.
func (n *Node) System() *kernel.System { return n.sys }

// Start boots the kernel with every component and waits until each IPCP
// started (or failed to).
func (n *Node) Start() error {
	// The IRM holds two caps per open flow: its CSpace bounds how many
	// flows the node can have (slots are allocated as they are used).
	n.k = kernel.New(kernel.Config{Log: n.log, CSpaceSize: 1 << 20, MaxBufs: n.cfg.Kernel.MaxBufs, BufSize: n.kernelBufSize()})
	progs := map[string]kernel.Program{
		rootName:   rootProgram(n.log.With("component", rootName), n.icfg.Restart),
		irmName:    n.irmProgram(),
		SignerName: n.signer.Program,
	}
	if n.wrapIRM != nil {
		progs[irmName] = n.wrapIRM(progs[irmName])
	}
	// Board link devices the configuration uses are initialised here,
	// before any component runs; the others the board has when a shim
	// created at run time first attaches (driver.ensureOpen). Each one's
	// receive half is its driver component's.
	openLink, resetLink := openBoardLink, resetBoardLink
	if n.openLink != nil {
		openLink, resetLink = n.openLink, n.resetLink
	}
	used := boardLinksUsed(n.cfg)
	for _, p := range n.links {
		d := &driver{port: p, open: func() (*netstack.Mux, error) { return openLink(p) }}
		if slices.Contains(used, p) {
			m, err := openLink(p)
			if err != nil {
				n.Stop() // closes the links opened before this one
				return fmt.Errorf("node: board link %s: %w", p, err)
			}
			d.opened(m, 1)
		}
		if resetLink != nil {
			d.reset = resetLink(p)
		}
		if n.openLink == nil {
			d.wedge = wedgeBoardLink(p)
		}
		n.drivers[p] = d
		progs[driverComponent(p)] = d.program
	}
	deps := ipcpDeps{node: n.cfg.Node.Name, decode: n.cfg.decode, log: n.log, devices: boardDevices{n.drivers}, wrap: n.wrapIPCP, nodeKey: n.id.Public()}
	var waits []chan error
	for _, p := range n.cfg.IPCPs {
		ch := make(chan error, 1)
		waits = append(waits, ch)
		progs[ipcpComponent(p.Name)] = ipcpProgram(p, deps, ch)
	}
	for _, x := range n.extras {
		progs[x.Name] = x.Program
		if x.Prepare != nil {
			if err := x.Prepare(); err != nil {
				n.cleanup()
				return fmt.Errorf("node: %s: %w", x.Name, err)
			}
		}
	}
	if err := n.k.Boot(n.sys, progs); err != nil {
		n.Stop()
		return fmt.Errorf("node: boot: %w", err)
	}
	var errs []error
	for i, ch := range waits {
		select {
		case err := <-ch:
			if err != nil {
				errs = append(errs, fmt.Errorf("ipcp %s: %w", n.cfg.IPCPs[i].Name, err))
			}
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("ipcp %s: did not start in 10s", n.cfg.IPCPs[i].Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		n.Stop()
		return fmt.Errorf("node: %w", err)
	}
	n.log.Info("node ready", "ipcps", len(n.cfg.IPCPs))
	return nil
}

// irmProgram is the IRM component's program. Each incarnation is a fresh
// IRM instance with empty tables: a restarted IRM never serves from the
// tables of the one that died. It restarts every other component (except
// at boot), so the node starts over cleanly; programs on the socket see
// their session end and connect again (docs/node.md).
func (n *Node) irmProgram() kernel.Program {
	return func(pd *kernel.PD) error {
		inc := n.irms.Add(1)
		cfg := n.icfg
		cfg.Log = n.log
		cfg.Epoch = uint16(inc)
		cfg.Fresh = inc > 1
		if c, err := pd.Slot(SlotSigner); err == nil {
			signer := NewSignerClient(pd, c, n.id.Public())
			cfg.Document = signer.Document
		}
		return irm.New(cfg).Run(slotIRM)(pd)
	}
}

// ipcpDeps is everything an IPCP component's program may use besides its
// own configuration: not the node, nor the kernel, nor the IRM.
type ipcpDeps struct {
	node    string                                // the node's name
	decode  func(prim tomlPrimitive, v any) error // the decoder of the IPCP's kind table
	log     *slog.Logger
	devices ipcpDevices
	wrap    func(ipcpImpl) ipcpImpl // a test seam; nil outside tests
	nodeKey ed25519.PublicKey       // the node's public key (nil: the IPCP has no signing cap)
}

// ipcpProgram is the program of one IPCP's component: build the IPCP,
// start it, say hello to the IRM, serve the IRM's calls, stop it. Every
// incarnation builds the IPCP afresh from its configuration (the kernel
// starts it once the previous incarnation's goroutines have returned,
// so its socket or device is free). started gets the first
// incarnation's outcome.
func ipcpProgram(p IPCPConfig, deps ipcpDeps, started chan<- error) kernel.Program {
	var once sync.Once
	report := func(err error) { once.Do(func() { started <- err }) }
	return func(pd *kernel.PD) error {
		ep, err := pd.Slot(slotEP)
		if err != nil {
			report(err)
			return err
		}
		irmEP, err := pd.Slot(slotIRM)
		if err != nil {
			report(err)
			return err
		}
		up := irm.NewUpcalls(pd, irmEP)
		impl, err := newIPCP(p, deps, ipcpEnv{pd: pd, irmEP: irmEP, up: up})
		if err != nil {
			report(err)
			return err
		}
		if deps.wrap != nil {
			impl = deps.wrap(impl)
		}
		up.Serve(impl)
		if err := impl.Start(); err != nil {
			report(err)
			return err
		}
		defer impl.Stop()
		// Hello once the endpoint is served: the IRM may call back at once.
		pd.Go(func() {
			ctx, cancel := context.WithTimeout(pd.Context(), 10*time.Second)
			defer cancel()
			err := up.Hello(ctx, impl.Info())
			if err != nil && pd.Context().Err() == nil {
				deps.log.Warn("hello to the IRM failed", "component", ipcpComponent(p.Name), "err", err)
			}
			report(err)
		})
		return irm.ServeIPCP(pd, ep, impl)
	}
}

// Stop stops every component, waits for them, then closes the board
// link devices and cleans up what the extras left (the gateway's socket).
func (n *Node) Stop() {
	if n.k != nil {
		n.k.Stop()
	}
	for _, d := range n.drivers {
		if m := d.mux(); m != nil {
			m.Close()
		}
	}
	n.cleanup()
}

func (n *Node) cleanup() {
	n.clean.Do(func() {
		for _, x := range n.extras {
			if x.Cleanup != nil {
				x.Cleanup()
			}
		}
	})
}

// Kernel returns the node's kernel (for management and tests).
func (n *Node) Kernel() *kernel.Kernel { return n.k }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Node.Name }

// Describe returns the live system description.
func (n *Node) Describe() *kernel.System {
	if n.k == nil {
		return n.sys
	}
	return n.k.Describe()
}

// bufSlack is what a packet buffer holds beyond the largest SDU of the
// node's layers: the tag of a sealed SDU (sealed in place, behind it),
// with room to spare.
const bufSlack = 64

// kernelBufSize is the data size of the node's packet buffers: enough for
// the largest SDU any of its shims carries (a UDP shim's max_sdu, an
// Ethernet shim's interface with jumbo frames: ethMaxSDU), or the
// kernel's default when none carries more than flow.MaxSDU. Budgets
// count buffers, so a node made for jumbo SDUs holds that much more
// memory per buffer (docs/config.md).
func (n *Node) kernelBufSize() int {
	most := flow.MaxSDU
	for _, p := range n.cfg.IPCPs {
		switch p.Kind {
		case "udp":
			var c udpConfig
			if n.cfg.decode(p.UDP, &c) == nil && c.MaxSDU > most {
				most = min(c.MaxSDU, flow.MaxJumboSDU)
			}
		case "eth":
			var c ethConfig
			if n.cfg.decode(p.Eth, &c) == nil {
				most = max(most, ethMaxSDU(c))
			}
		}
	}
	return max(kernel.BufSize, most+bufSlack)
}

// ethMaxSDU is the largest SDU of an Ethernet shim on c's device: what a
// hosted interface's MTU takes beyond flow.MaxSDU (a jumbo-frame link,
// up to flow.MaxJumboSDU), else 0 (the default). Every member of the
// layer must take as much: a longer frame is dropped by a smaller
// member's device.
func ethMaxSDU(c ethConfig) int {
	if c.Interface == "" {
		return 0
	}
	ifi, err := net.InterfaceByName(c.Interface)
	if err != nil || ifi.MTU-eth.ShimLen <= flow.MaxSDU {
		return 0
	}
	return min(ifi.MTU-eth.ShimLen, flow.MaxJumboSDU)
}
