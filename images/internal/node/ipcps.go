package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/irm"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/local"
	"github.com/ouronet/ouro/layer/shim/udp"
)

// udpConfig is the [ipcp.udp] table.
type udpConfig struct {
	Addr   string            `toml:"addr"`   // bind address, host:port (default [::]:3435)
	Hash   string            `toml:"hash"`   // sha3-256 (default) or sha256
	Dir    map[string]string `toml:"dir"`    // name = "host:port"
	Impair impair.Config     `toml:"impair"` // transmit-side impairment (tests)
	// Netstack, if set, runs the shim on the node's own UDP/IP stack
	// (netstack_device.go): bare metal, or hosted over a QEMU stream.
	Netstack *netstackConfig `toml:"netstack"`
}

// ethConfig is the [ipcp.eth] table. Exactly one of Interface,
// QEMUConnect and QEMUListen selects the device.
type ethConfig struct {
	Interface   string        `toml:"interface"`    // hosted: a Linux interface, through AF_PACKET
	QEMUConnect string        `toml:"qemu_connect"` // host:port of a QEMU -netdev socket,listen= (or another node's qemu_listen)
	QEMUListen  string        `toml:"qemu_listen"`  // host:port to accept a QEMU -netdev socket,connect=
	MAC         string        `toml:"mac"`          // the stream device's MAC (default: random, locally administered)
	Board       bool          `toml:"board"`        // bare metal: the board's NIC (board_*.go)
	Hash        string        `toml:"hash"`         // sha3-256 (default) or sha256
	Impair      impair.Config `toml:"impair"`       // transmit-side impairment (tests)
}

// newIPCP builds the IPCP p declares in the component env describes.
func (n *Node) newIPCP(p IPCPConfig, env ipcpEnv) (ipcpImpl, error) {
	up := env.up
	switch p.Kind {
	case "udp":
		var c udpConfig
		if err := n.cfg.decode(p.UDP, &c); err != nil {
			return nil, fmt.Errorf("[ipcp.udp] of %s: %w", p.Name, err)
		}
		cfg := udp.Config{Layer: p.Layer, Name: p.Name, Impair: c.Impair}
		var err error
		if c.Addr != "" {
			if cfg.Addr, err = netip.ParseAddrPort(c.Addr); err != nil {
				return nil, fmt.Errorf("[ipcp.udp] of %s: addr: %w", p.Name, err)
			}
		}
		if cfg.HashAlgo, err = layer.ParseHashAlgo(c.Hash); err != nil {
			return nil, fmt.Errorf("[ipcp.udp] of %s: %w", p.Name, err)
		}
		cfg.Dir = make(map[string]netip.AddrPort, len(c.Dir))
		for name, a := range c.Dir {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				return nil, fmt.Errorf("[ipcp.udp.dir] of %s: %q: %w", p.Name, name, err)
			}
			cfg.Dir[name] = ap
		}
		if c.Netstack != nil { // netstack-backed device: netstack_device.go
			if cfg.Device, err = netstackUDP(*c.Netstack, cfg.Addr); err != nil {
				return nil, fmt.Errorf("[ipcp.udp.netstack] of %s: %w", p.Name, err)
			}
		}
		ipcp, err := udp.New(cfg, up)
		if err != nil {
			if cfg.Device != nil {
				cfg.Device.Close()
			}
			return nil, err
		}
		return shimManager{ipcp}, nil
	case "eth":
		var c ethConfig
		if err := n.cfg.decode(p.Eth, &c); err != nil {
			return nil, fmt.Errorf("[ipcp.eth] of %s: %w", p.Name, err)
		}
		cfg := eth.Config{Layer: p.Layer, Name: p.Name, Impair: c.Impair, Interface: c.Interface}
		var err error
		if cfg.HashAlgo, err = layer.ParseHashAlgo(c.Hash); err != nil {
			return nil, fmt.Errorf("[ipcp.eth] of %s: %w", p.Name, err)
		}
		if cfg.Device, err = ethDevice(c); err != nil {
			return nil, fmt.Errorf("[ipcp.eth] of %s: %w", p.Name, err)
		}
		ipcp, err := eth.New(cfg, up)
		if err != nil {
			if cfg.Device != nil {
				cfg.Device.Close()
			}
			return nil, err
		}
		return shimManager{ipcp}, nil
	case "local":
		ipcp, err := local.New(local.Config{Layer: p.Layer, Name: p.Name}, up)
		if err != nil {
			return nil, err
		}
		return shimManager{ipcp}, nil
	}
	return nil, fmt.Errorf("ipcp %s: unknown kind %q (want udp, eth or local): %w", p.Name, p.Kind, flow.ErrInvalid)
}

// ethDevice opens the stream device an [ipcp.eth] table asks for; nil
// when it names an interface (the shim opens AF_PACKET itself).
func ethDevice(c ethConfig) (eth.Device, error) {
	if c.Board && c.Interface == "" && c.QEMUConnect == "" && c.QEMUListen == "" {
		return boardFrames(portShim) // board_*.go
	}
	set := 0
	for _, v := range []string{c.Interface, c.QEMUConnect, c.QEMUListen} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("set exactly one of interface, qemu_connect and qemu_listen: %w", flow.ErrInvalid)
	}
	var mac net.HardwareAddr
	if c.MAC != "" {
		var err error
		if mac, err = net.ParseMAC(c.MAC); err != nil {
			return nil, fmt.Errorf("mac: %w", err)
		}
	}
	switch {
	case c.QEMUConnect != "":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return eth.DialQEMU(ctx, c.QEMUConnect, mac)
	case c.QEMUListen != "":
		return eth.ListenQEMU(c.QEMUListen, mac)
	}
	return nil, nil
}

// shimIPCP is a shim as the node manages it.
type shimIPCP interface {
	ipcpImpl
	Stats() shim.Stats
	Flows() []shim.FlowInfo
}

// shimManager answers the management commands every shim has: stats and
// flows.
type shimManager struct{ shimIPCP }

var _ irm.Manager = shimManager{}

// Mgmt implements irm.Manager.
func (s shimManager) Mgmt(_ context.Context, req irm.MgmtReq) (irm.MgmtResp, error) {
	switch req.Cmd {
	case "stats":
		return irm.MgmtResp{Table: counterTable(s.Stats())}, nil
	case "flows":
		t := irm.Table{Columns: []string{"eid", "peer_eid", "peer", "name", "dir", "cube", "pkts_in", "bytes_in", "pkts_out", "bytes_out"}}
		for _, f := range s.Flows() {
			dir := "in"
			if f.Outgoing {
				dir = "out"
			}
			t.Rows = append(t.Rows, []string{
				strconv.FormatUint(f.LocalEID, 10), strconv.FormatUint(f.RemoteEID, 10), f.Peer, f.Name, dir,
				f.QoS.Cube().String(), strconv.FormatUint(f.PacketsIn, 10), strconv.FormatUint(f.BytesIn, 10),
				strconv.FormatUint(f.PacketsOut, 10), strconv.FormatUint(f.BytesOut, 10),
			})
		}
		return irm.MgmtResp{Table: t}, nil
	}
	return irm.MgmtResp{}, fmt.Errorf("%s: unknown command %q (want stats or flows): %w", s.Info().Name, req.Cmd, flow.ErrInvalid)
}

// counterTable flattens a struct of counters (through its JSON form) into
// a two-column table, nested structs as "outer.inner".
func counterTable(v any) irm.Table {
	t := irm.Table{Columns: []string{"counter", "value"}}
	b, err := json.Marshal(v)
	if err != nil {
		return t
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // counters print as integers, not floats
	if dec.Decode(&m) != nil {
		return t
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch x := m[k].(type) {
			case map[string]any:
				walk(prefix+k+".", x)
			default:
				t.Rows = append(t.Rows, []string{prefix + k, fmt.Sprint(x)})
			}
		}
	}
	walk("", m)
	return t
}
