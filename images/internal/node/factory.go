package node

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/BurntSushi/toml"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/serial"
	"github.com/ouronet/ouro/layer/shim/udp"
)

// tomlPrimitive is an IPCP's undecoded kind table.
type tomlPrimitive = toml.Primitive

// ipcpDevices opens the devices an IPCP's configuration names: the only
// way an IPCP's component reaches hardware or host sockets it does not
// open itself.
type ipcpDevices interface {
	// eth opens an [ipcp.eth] table's device (nil: the shim opens the
	// named interface itself); a board link's is its port's ring from
	// the driver, held by pd's component.
	eth(c ethConfig, pd *kernel.PD) (eth.Device, error)
	// serial opens an [ipcp.serial] table's byte stream.
	serial(c serialConfig) (serial.Device, error)
	// netstackUDP builds an [ipcp.udp.netstack] stack and its UDP socket.
	// pd runs its goroutines (and holds a board link's ring).
	netstackUDP(c netstackConfig, addr netip.AddrPort, pd *kernel.PD) (udp.Device, error)
	// driver returns the driver of board link p, or nil.
	driver(p boardPort) *driver
}

// boardDevices opens devices on the board (or the host) the image runs
// on; board links are reached through their drivers' ports only.
type boardDevices struct{ drivers drivers }

var _ ipcpDevices = boardDevices{}

func (d boardDevices) eth(c ethConfig, pd *kernel.PD) (eth.Device, error) {
	if c.Board != "" && c.Interface == "" && c.QEMUConnect == "" && c.QEMUListen == "" {
		return d.drivers.openRing(c.Board, portShim, pd)
	}
	return ethDevice(c)
}

func (boardDevices) serial(c serialConfig) (serial.Device, error) { return serialDevice(c) }

func (d boardDevices) netstackUDP(c netstackConfig, addr netip.AddrPort, pd *kernel.PD) (udp.Device, error) {
	return netstackUDP(c, addr, pd, d.drivers)
}

func (d boardDevices) driver(p boardPort) *driver { return d.drivers[p] }

// ipcpFactory builds IPCPs declared at run time ("ouro create") exactly
// as the configuration's IPCPs are built; it is the IRM's irm.Creator. It
// holds the node's name, its log and the device openers: nothing of the
// running node.
type ipcpFactory struct {
	node    string
	nodeKey ed25519.PublicKey   // the node's key: created IPCPs sign with it through the signing cap Provision gives them
	log     func() *slog.Logger // the node's logger (tests replace it after New)
	devices ipcpDevices
}

var _ irm.Creator = ipcpFactory{}

var _ irm.Provisioner = ipcpFactory{}

// Provision implements irm.Provisioner: an IPCP on a board link gets the
// cap to attach to the link's driver (the IRM holds one for each link the
// board has) and the objects for its rings. The driver of a link no IPCP
// used before initialises its device when the IPCP attaches; a link the
// board lacks, or whose device failed to initialise, is refused here.
func (f ipcpFactory) Provision(req ipcp.MgmtReq) ([]kernel.CapSpec, int, error) {
	cfg, err := parseCreated([]byte(f.doc(req)))
	if err != nil {
		return nil, 0, err
	}
	// A signing cap of the IRM's for its kind (identity.go): the IPCP
	// signs with the node's key as a configured one would.
	caps := []kernel.CapSpec{{Name: SlotSigner, Object: createdSignerSlot(cfg.IPCPs[0].Kind), Rights: kernel.Write | kernel.GrantReply}}
	link, _, ok := boardUse(cfg, cfg.IPCPs[0])
	if !ok {
		return caps, 0, nil
	}
	d := f.devices.driver(link)
	if d == nil {
		return nil, 0, fmt.Errorf("ipcp %s: board link %q: this board has no such link: %w", req.Name, link, flow.ErrInvalid)
	}
	if err := d.initErr(); err != nil {
		return nil, 0, fmt.Errorf("ipcp %s: %w: %w", req.Name, err, flow.ErrInvalid)
	}
	return append(caps, kernel.CapSpec{Name: attachSlot(link), Object: attachSlot(link), Rights: attachRights}), attachObjects, nil
}

// doc is the configuration document req declares.
func (f ipcpFactory) doc(req ipcp.MgmtReq) string {
	kind := req.Args["kind"]
	doc := fmt.Sprintf("[node]\nname = %q\n[[ipcp]]\nkind = %q\nname = %q\nlayer = %q\n", f.node, kind, req.Name, req.Layer)
	if b := req.Args["bufs"]; b != "" {
		doc += "bufs = " + b + "\n"
	}
	if c := req.Args["config"]; c != "" {
		doc += fmt.Sprintf("[ipcp.%s]\n%s\n", kind, c)
	}
	return doc
}

// NewIPCP implements irm.Creator. req.Name and req.Layer name the IPCP;
// req.Args carries "kind", "config" (the kind's TOML table, e.g. addr =
// "127.0.0.1:3436") and optionally "bufs".
func (f ipcpFactory) NewIPCP(req ipcp.MgmtReq) (ipcp.Info, kernel.Program, int, <-chan error, error) {
	cfg, err := parseCreated([]byte(f.doc(req)))
	if err != nil {
		return ipcp.Info{}, nil, 0, nil, err
	}
	p := cfg.IPCPs[0]
	started := make(chan error, 1)
	info := ipcp.Info{Name: p.Name, Layer: p.Layer, Kind: p.Kind, State: "init"}
	deps := ipcpDeps{node: f.node, decode: cfg.decode, log: f.log(), devices: f.devices, nodeKey: f.nodeKey}
	return info, ipcpProgram(p, deps, started), p.Bufs, started, nil
}
