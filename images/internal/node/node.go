// Package node assembles a node from its configuration: the kernel, the
// IRM, one component per IPCP and, hosted, the socket gateway. It is the
// composition root shared by the images; nothing outside images/ uses it.
package node

import (
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/kernel"
)

// Component and slot names in the node's system description.
const (
	irmName     = "irm"
	gatewayName = "gateway"
	slotIRM     = "irm" // every client's cap to the IRM's endpoint
	slotEP      = "ep"  // an IPCP's own endpoint
)

// Badges on the IRM's endpoint: who is calling.
const (
	badgeGateway kernel.Badge = 1
	badgeApp     kernel.Badge = 2
	badgeIPCP0   kernel.Badge = 1 << 16 // + index of the IPCP
)

// ipcpEnv is what an IPCP's component gives the IPCP it runs: its
// upcalls into the IRM and, for IPCPs that are themselves flow users
// (unicast, broadcast: their N-1 flows), the component and its cap to the
// IRM's endpoint, from which irm.NewBroker makes the same broker every
// application uses.
type ipcpEnv struct {
	pd    *kernel.PD
	irmEP kernel.Cap
	up    irm.Upcalls
}

// broker returns a broker for the IPCP's own N-1 flows.
func (e ipcpEnv) broker() *irm.Broker { return irm.NewBroker(e.pd, e.irmEP, 0) }

// ipcpImpl is an IPCP as the node runs it.
type ipcpImpl interface {
	irm.IPCP
	Start() error
	Stop()
}

// Node is a running node.
type Node struct {
	cfg    *Config
	k      *kernel.Kernel
	irm    *irm.IRM
	sys    *kernel.System
	logf   func(string, ...any)
	extras []Extra
}

// Extra is an additional component an image adds to the node (the socket
// gateway, an in-node application): it gets a cap to the IRM's endpoint in
// the slot named "irm" and the given budget.
type Extra struct {
	Name    string
	Bufs    int
	Program kernel.Program
	// Prepare, if set, runs before the kernel boots (to open a listener
	// that must exist once Start returns); an error aborts Start.
	Prepare func() error
}

// New builds a node from cfg; Start boots it.
func New(cfg *Config, extras ...Extra) (*Node, error) {
	n := &Node{cfg: cfg, extras: extras}
	n.logf = func(string, ...any) {}
	if cfg.Node.Log {
		l := log.New(os.Stderr, cfg.Node.Name+": ", log.Lmicroseconds)
		n.logf = l.Printf
	}
	n.sys = n.describe()
	if err := n.sys.Validate(); err != nil {
		return nil, fmt.Errorf("node: system description: %w", err)
	}
	autoreg := true
	if cfg.IRM.AutoRegister != nil {
		autoreg = *cfg.IRM.AutoRegister
	}
	icfg := irm.Config{
		RingSize:      cfg.IRM.RingSize,
		AcceptTimeout: cfg.IRM.AcceptTimeout.Duration,
		QueryTimeout:  cfg.IRM.QueryTimeout.Duration,
		Backlog:       cfg.IRM.Backlog,
		AutoRegister:  autoreg,
		Logf:          n.logf,
		Describe:      n.Describe,
		Creator:       n,
	}
	for i, p := range cfg.IPCPs {
		icfg.IPCPs = append(icfg.IPCPs, irm.IPCPSlot{
			Slot:  ipcpComponent(p.Name),
			Badge: badgeIPCP0 + kernel.Badge(i),
			Info:  irm.Info{Name: p.Name, Layer: p.Layer, Kind: p.Kind, State: "init"},
		})
	}
	n.irm = irm.New(icfg)
	return n, nil
}

func ipcpComponent(name string) string { return "ipcp." + name }

// endpointName names the endpoint a component serves.
func endpointName(component string) string { return component + ".ep" }

// describe builds the node's system description: which components exist
// and which caps each starts with. It is data: printable, drawable and
// checked by tests for who can reach whom.
func (n *Node) describe() *kernel.System {
	cfg := n.cfg
	irmEPName := endpointName(irmName)
	sys := &kernel.System{Endpoints: []kernel.ObjectSpec{{Name: irmEPName}}}
	irmSpec := kernel.ComponentSpec{
		Name: irmName,
		// Bufs: 64 of its own, the rest for IPCPs it creates at run time
		// (a child's budget is carved from its spawner's).
		Budget: kernel.Budget{Bufs: 64 + 1<<16, Objects: 1 << 16},
		Caps:   []kernel.CapSpec{{Name: slotIRM, Object: irmEPName, Rights: kernel.AllRights}},
	}
	var comps []kernel.ComponentSpec
	for i, p := range cfg.IPCPs {
		name := ipcpComponent(p.Name)
		ep := endpointName(name)
		sys.Endpoints = append(sys.Endpoints, kernel.ObjectSpec{Name: ep})
		irmSpec.Caps = append(irmSpec.Caps, kernel.CapSpec{
			Name: name, Object: ep, Rights: kernel.Write | kernel.Grant | kernel.GrantReply,
		})
		comps = append(comps, kernel.ComponentSpec{
			Name:       name,
			Supervisor: irmName,
			Budget:     kernel.Budget{Bufs: p.Bufs},
			Caps: []kernel.CapSpec{
				{Name: slotEP, Object: ep, Rights: kernel.Read},
				{Name: slotIRM, Object: irmEPName, Rights: kernel.Write | kernel.Grant | kernel.GrantReply, Badge: badgeIPCP0 + kernel.Badge(i)},
			},
		})
	}
	sys.Components = append(sys.Components, irmSpec)
	sys.Components = append(sys.Components, comps...)
	for i, x := range n.extras {
		bufs := x.Bufs
		if bufs == 0 {
			bufs = 4096
		}
		badge := badgeApp + kernel.Badge(i)
		if x.Name == gatewayName {
			badge = badgeGateway
		}
		sys.Components = append(sys.Components, kernel.ComponentSpec{
			Name:   x.Name,
			Budget: kernel.Budget{Bufs: bufs},
			Caps: []kernel.CapSpec{
				{Name: slotIRM, Object: irmEPName, Rights: kernel.Write | kernel.Grant | kernel.GrantReply, Badge: badge},
			},
		})
	}
	return sys
}

// System returns the node's system description as configured.
func (n *Node) System() *kernel.System { return n.sys }

// Start boots the kernel with every component and waits until each IPCP
// started (or failed to).
func (n *Node) Start() error {
	// The IRM holds two caps per open flow: its CSpace bounds how many
	// flows the node can have (slots are allocated as they are used).
	n.k = kernel.New(kernel.Config{Logf: n.logf, CSpaceSize: 1 << 20})
	progs := map[string]kernel.Program{irmName: n.irm.Run(slotIRM)}
	var waits []chan error
	for _, p := range n.cfg.IPCPs {
		ch := make(chan error, 1)
		waits = append(waits, ch)
		progs[ipcpComponent(p.Name)] = n.ipcpProgram(p, ch)
	}
	for _, x := range n.extras {
		progs[x.Name] = x.Program
		if x.Prepare != nil {
			if err := x.Prepare(); err != nil {
				return fmt.Errorf("node: %s: %w", x.Name, err)
			}
		}
	}
	if err := n.k.Boot(n.sys, progs); err != nil {
		n.k.Stop()
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
		n.k.Stop()
		return fmt.Errorf("node: %w", err)
	}
	n.logf("node %s: ready with %d IPCPs", n.cfg.Node.Name, len(n.cfg.IPCPs))
	return nil
}

// ipcpProgram is the program of one IPCP's component: build the IPCP,
// start it, serve the IRM's calls, stop it.
func (n *Node) ipcpProgram(p IPCPConfig, started chan<- error) kernel.Program {
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
		impl, err := n.newIPCP(p, ipcpEnv{pd: pd, irmEP: irmEP, up: up})
		if err != nil {
			report(err)
			return err
		}
		up.Serve(impl)
		if err := impl.Start(); err != nil {
			report(err)
			return err
		}
		defer impl.Stop()
		report(nil)
		return irm.ServeIPCP(pd, ep, impl)
	}
}

var _ irm.Creator = (*Node)(nil)

// NewIPCP implements irm.Creator: it builds an IPCP declared at run time
// (ouro create) exactly as the configuration's IPCPs are built. req.Name
// and req.Layer name it; req.Args carries "kind", "config" (the kind's
// TOML table, e.g. addr = "127.0.0.1:3436") and optionally "bufs".
func (n *Node) NewIPCP(req irm.MgmtReq) (irm.Info, kernel.Program, int, <-chan error, error) {
	kind := req.Args["kind"]
	doc := fmt.Sprintf("[node]\nname = %q\n[[ipcp]]\nkind = %q\nname = %q\nlayer = %q\n", n.cfg.Node.Name, kind, req.Name, req.Layer)
	if b := req.Args["bufs"]; b != "" {
		doc += "bufs = " + b + "\n"
	}
	if c := req.Args["config"]; c != "" {
		doc += fmt.Sprintf("[ipcp.%s]\n%s\n", kind, c)
	}
	cfg, err := parseCreated([]byte(doc))
	if err != nil {
		return irm.Info{}, nil, 0, nil, err
	}
	p := cfg.IPCPs[0]
	// The IPCP's kind-specific table lives in cfg's metadata: build it
	// with a node view of cfg.
	view := &Node{cfg: cfg, logf: n.logf}
	started := make(chan error, 1)
	info := irm.Info{Name: p.Name, Layer: p.Layer, Kind: p.Kind, State: "init"}
	return info, view.ipcpProgram(p, started), p.Bufs, started, nil
}

// Stop stops every component and waits for them.
func (n *Node) Stop() {
	if n.k != nil {
		n.k.Stop()
	}
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
