package node

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/crypto/seal"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/broadcast"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/local"
	"github.com/ouronet/ouro/layer/shim/serial"
	"github.com/ouronet/ouro/layer/shim/udp"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dir/dht"
	"github.com/ouronet/ouro/layer/unicast/dt"
)

// udpConfig is the [ipcp.udp] table.
type udpConfig struct {
	Addr   string            `toml:"addr"`   // bind address, host:port (default [::]:3435)
	Hash   string            `toml:"hash"`   // sha3-256 (default) or sha256
	Dir    map[string]string `toml:"dir"`    // name = "host:port"
	Impair impair.Config     `toml:"impair"` // transmit-side impairment (tests)
	// What a peer can make the shim keep (zero: the default; negative:
	// no bound): docs/shims.md, "Bounded state".
	IdleTimeout       offDuration `toml:"idle_timeout"`         // a flow idle both ways this long is deallocated (default 60s)
	MaxFlowsPerPeer   int         `toml:"max_flows_per_peer"`   // incoming flows one peer may hold (default 256)
	MaxPendingPerPeer int         `toml:"max_pending_per_peer"` // one peer's requests waiting for an accept (default 16)
	// Sealed flows (docs/shims.md, "Sealed flows"): the shim seals with
	// the node's identity when the node has one.
	Seal       bool        `toml:"seal"`             // seal every flow, refuse unsealed requests
	SealPeers  []string    `toml:"seal_peers"`       // if set, the only node ids at the other end of a sealed flow
	SealTicket offDuration `toml:"seal_ticket_life"` // how long a resumption ticket lasts (default 10m; negative: never resume)
	SealAEAD   string      `toml:"seal_aead"`        // force the AEAD: "aes256gcm" or "chacha20poly1305" (default: negotiated)
	// MaxSDU is the largest SDU of the shim's flows (0: flow.MaxSDU,
	// 1400; up to flow.MaxJumboSDU): the node's packet buffers are sized
	// for the largest of its shims' (kernelBufSize).
	MaxSDU int `toml:"max_sdu"`
	// The socket's kernel buffers, bytes (0: udp.DefaultSocketBuffer, 4 MiB; negative: the kernel's).
	RecvBuffer int `toml:"recv_buffer"`
	SendBuffer int `toml:"send_buffer"`
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
	Board       boardPort     `toml:"board"`        // bare metal: true or "enet" the board's NIC, "usb" its USB gadget (board_*.go)
	Hash        string        `toml:"hash"`         // sha3-256 (default) or sha256
	Impair      impair.Config `toml:"impair"`       // transmit-side impairment (tests)
	Announce    offDuration   `toml:"announce"`     // how often to announce the names registered here (default 2s; negative: never)
	// As in udpConfig, per peer MAC.
	IdleTimeout       offDuration `toml:"idle_timeout"`
	MaxFlowsPerPeer   int         `toml:"max_flows_per_peer"`
	MaxPendingPerPeer int         `toml:"max_pending_per_peer"`
	// As in udpConfig.
	Seal       bool        `toml:"seal"`
	SealPeers  []string    `toml:"seal_peers"`
	SealTicket offDuration `toml:"seal_ticket_life"`
	SealAEAD   string      `toml:"seal_aead"`
}

// newIPCP builds the IPCP p declares in the component env describes, with
// only what deps gives it.
func newIPCP(p IPCPConfig, deps ipcpDeps, env ipcpEnv) (ipcpImpl, error) {
	up := env.up
	switch p.Kind {
	case "udp":
		var c udpConfig
		if err := deps.decode(p.UDP, &c); err != nil {
			return nil, fmt.Errorf("[ipcp.udp] of %s: %w", p.Name, err)
		}
		cfg := udp.Config{Layer: p.Layer, Name: p.Name, Impair: c.Impair, Runner: env.pd,
			IdleTimeout: c.IdleTimeout.Duration, MaxFlowsPerPeer: c.MaxFlowsPerPeer, MaxPendingPerPeer: c.MaxPendingPerPeer,
			Seal: c.Seal, SealPeers: c.SealPeers, SealTicketLife: c.SealTicket.Duration,
			RecvBuffer: c.RecvBuffer, SendBuffer: c.SendBuffer, MaxSDU: c.MaxSDU}
		if room := env.pd.BufSize() - bufSlack; c.MaxSDU > max(room, flow.MaxSDU) {
			// An IPCP created after the node started (ouro create): its
			// packet buffers were sized for the configuration then.
			return nil, fmt.Errorf("[ipcp.udp] of %s: max_sdu = %d needs the node's packet buffers to hold %d bytes, they hold %d: give it in the node's configuration: %w",
				p.Name, c.MaxSDU, c.MaxSDU+bufSlack, env.pd.BufSize(), flow.ErrInvalid)
		}
		if s := env.signer(deps.nodeKey); s != nil {
			cfg.Signer = s
		}
		var err error
		if cfg.SealAEAD, err = sealAEAD(c.SealAEAD); err != nil {
			return nil, fmt.Errorf("[ipcp.udp] of %s: %w", p.Name, err)
		}
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
			if cfg.Device, err = deps.devices.netstackUDP(*c.Netstack, cfg.Addr, env.pd); err != nil {
				return nil, fmt.Errorf("[ipcp.udp.netstack] of %s: %w", p.Name, err)
			}
		}
		proc, err := udp.New(cfg, up)
		if err != nil {
			if cfg.Device != nil {
				cfg.Device.Close()
			}
			return nil, err
		}
		if c.Netstack != nil {
			if d := deps.devices.driver(c.Netstack.Board); d != nil {
				return boardShim{shimManager{proc}, d}, nil
			}
		}
		return shimManager{proc}, nil
	case "eth":
		var c ethConfig
		if err := deps.decode(p.Eth, &c); err != nil {
			return nil, fmt.Errorf("[ipcp.eth] of %s: %w", p.Name, err)
		}
		cfg := eth.Config{Layer: p.Layer, Name: p.Name, Impair: c.Impair, Interface: c.Interface, Runner: env.pd, Bufs: env.pd, Announce: c.Announce.Duration,
			IdleTimeout: c.IdleTimeout.Duration, MaxFlowsPerPeer: c.MaxFlowsPerPeer, MaxPendingPerPeer: c.MaxPendingPerPeer,
			Seal: c.Seal, SealPeers: c.SealPeers, SealTicketLife: c.SealTicket.Duration}
		if s := env.signer(deps.nodeKey); s != nil {
			cfg.Signer = s
		}
		var err error
		if cfg.SealAEAD, err = sealAEAD(c.SealAEAD); err != nil {
			return nil, fmt.Errorf("[ipcp.eth] of %s: %w", p.Name, err)
		}
		if cfg.HashAlgo, err = layer.ParseHashAlgo(c.Hash); err != nil {
			return nil, fmt.Errorf("[ipcp.eth] of %s: %w", p.Name, err)
		}
		if cfg.Device, err = deps.devices.eth(c, env.pd); err != nil {
			return nil, fmt.Errorf("[ipcp.eth] of %s: %w", p.Name, err)
		}
		if m := ethMaxSDU(c); m <= env.pd.BufSize()-bufSlack {
			cfg.MaxSDU = m // else created after the node started with smaller buffers: the default
		}
		proc, err := eth.New(cfg, up)
		if err != nil {
			if cfg.Device != nil {
				cfg.Device.Close()
			}
			return nil, err
		}
		if d := deps.devices.driver(c.Board); d != nil && c.Interface == "" && c.QEMUConnect == "" && c.QEMUListen == "" {
			return boardShim{shimManager{proc}, d}, nil
		}
		return shimManager{proc}, nil
	case "local":
		proc, err := local.New(local.Config{Layer: p.Layer, Name: p.Name, Runner: env.pd}, up)
		if err != nil {
			return nil, err
		}
		return shimManager{proc}, nil
	case "unicast":
		var c unicastConfig
		if err := deps.decode(p.Unicast, &c); err != nil {
			return nil, fmt.Errorf("[ipcp.unicast] of %s: %w", p.Name, err)
		}
		cfg, err := c.config(p)
		if err != nil {
			return nil, fmt.Errorf("[ipcp.unicast] of %s: %w", p.Name, err)
		}
		cfg.Log = deps.log.With("component", ipcpComponent(p.Name), "layer", p.Layer)
		cfg.Runner = env.pd
		cfg.Bufs, cfg.Reserve = unicastPoolBufs(p), env.pd.Reserve
		if m := env.pd.BufSize() - bufSlack; m > flow.MaxSDU {
			cfg.MaxSDU = m // a lower layer carries larger SDUs: kernelBufSize
		}
		if s := env.signer(deps.nodeKey); s != nil {
			cfg.Signer = s
		}
		b, err := env.broker()
		if err != nil {
			return nil, err
		}
		if cfg.Discover {
			cfg.Heard = lowerHearer{b: b, lower: cfg.Lower}
		}
		return unicast.New(cfg, up, b, brokerRegistrar{b})
	case "broadcast":
		var c broadcastConfig
		if err := deps.decode(p.Broadcast, &c); err != nil {
			return nil, fmt.Errorf("[ipcp.broadcast] of %s: %w", p.Name, err)
		}
		b, err := env.broker()
		if err != nil {
			return nil, err
		}
		proc, err := broadcast.New(broadcast.Config{
			Layer: p.Layer, Name: p.Name, Neighbours: c.Neighbours, Lower: c.Lower,
			TTL: c.TTL, WriteTimeout: c.WriteTimeout.Duration, Retry: c.Retry.Duration, Log: deps.log.With("component", ipcpComponent(p.Name)),
			Runner: env.pd,
		}, b, brokerRegistrar{b})
		if err != nil {
			return nil, err
		}
		return proc, nil
	case "serial":
		var c serialConfig
		if err := deps.decode(p.Serial, &c); err != nil {
			return nil, fmt.Errorf("[ipcp.serial] of %s: %w", p.Name, err)
		}
		cfg := serial.Config{Layer: p.Layer, Name: p.Name, Window: c.Window,
			Keepalive: c.Keepalive.Duration, DeadTime: c.DeadTime.Duration, RetryBase: c.RetryBase.Duration,
			Runner: env.pd, Seal: c.Seal, SealPeers: c.SealPeers, SealTicketLife: c.SealTicket.Duration}
		if s := env.signer(deps.nodeKey); s != nil {
			cfg.Signer = s
		}
		var err error
		if cfg.SealAEAD, err = sealAEAD(c.SealAEAD); err != nil {
			return nil, fmt.Errorf("[ipcp.serial] of %s: %w", p.Name, err)
		}
		if cfg.HashAlgo, err = layer.ParseHashAlgo(c.Hash); err != nil {
			return nil, fmt.Errorf("[ipcp.serial] of %s: %w", p.Name, err)
		}
		if cfg.Device, err = deps.devices.serial(c); err != nil {
			return nil, fmt.Errorf("[ipcp.serial] of %s: %w", p.Name, err)
		}
		proc, err := serial.New(cfg, up)
		if err != nil {
			cfg.Device.Close()
			return nil, err
		}
		return shimManager{proc}, nil
	case "diode": // intermittent.go
		return newDiode(p, deps, env)
	case "carrier": // intermittent.go
		return newCarrier(p, deps, env)
	}
	return nil, fmt.Errorf("ipcp %s: unknown kind %q (want udp, eth, local, serial, unicast, broadcast, diode or carrier): %w", p.Name, p.Kind, flow.ErrInvalid)
}

// broadcastConfig is the [ipcp.broadcast] table.
type broadcastConfig struct {
	Neighbours   []string `toml:"neighbours"`    // IPCP names to allocate N-1 flows to (list each adjacency at one end)
	Lower        []string `toml:"lower"`         // layers to register this IPCP's name in
	TTL          uint8    `toml:"ttl"`           // hops (default 16)
	WriteTimeout duration `toml:"write_timeout"` // how long a slow member may hold up a flood (default 50ms)
	Retry        duration `toml:"retry"`         // reconnection period (default 1s)
}

// serialConfig is the [ipcp.serial] table. Exactly one of Device,
// TCPConnect, TCPListen and Board selects the byte stream.
type serialConfig struct {
	Device     string   `toml:"device"`      // hosted: a tty or pty, e.g. /dev/ttyUSB0
	Baud       int      `toml:"baud"`        // its speed (0: keep)
	TCPConnect string   `toml:"tcp_connect"` // a QEMU -chardev socket,...,server=on (reconnects)
	TCPListen  string   `toml:"tcp_listen"`  // accept a QEMU -chardev socket,...,server=off
	Board      bool     `toml:"board"`       // bare metal: the board's link UART
	Hash       string   `toml:"hash"`        // sha3-256 (default) or sha256
	Window     int      `toml:"window"`      // credit granted, bytes (default 3584)
	Keepalive  duration `toml:"keepalive"`   // default 1s
	DeadTime   duration `toml:"dead_time"`   // default 4 × keepalive
	RetryBase  duration `toml:"retry_base"`  // first alloc retransmission (default 20ms; raise on slow lines)
	// As in udpConfig.
	Seal       bool        `toml:"seal"`
	SealPeers  []string    `toml:"seal_peers"`
	SealTicket offDuration `toml:"seal_ticket_life"`
	SealAEAD   string      `toml:"seal_aead"`
}

// sealAEAD is a seal_aead setting: "" negotiates (zero), else the AEAD
// it names.
func sealAEAD(s string) (seal.AEAD, error) {
	if s == "" {
		return 0, nil
	}
	a, err := seal.ParseAEAD(s)
	if err != nil {
		return 0, fmt.Errorf("seal_aead: %w: %w", err, flow.ErrInvalid)
	}
	return a, nil
}

// serialDevice opens the byte stream an [ipcp.serial] table asks for.
func serialDevice(c serialConfig) (serial.Device, error) {
	set := 0
	for _, on := range []bool{c.Device != "", c.TCPConnect != "", c.TCPListen != "", c.Board} {
		if on {
			set++
		}
	}
	if set != 1 {
		return nil, fmt.Errorf("set exactly one of device, tcp_connect, tcp_listen and board: %w", flow.ErrInvalid)
	}
	switch {
	case c.Device != "":
		return serial.OpenTTY(c.Device, c.Baud)
	case c.TCPConnect != "":
		return serial.DialTCP(c.TCPConnect)
	case c.TCPListen != "":
		return serial.ListenTCP(c.TCPListen)
	}
	return boardUART()
}

// unicastConfig is the [ipcp.unicast] table. The layer keys (hash,
// addr_width, routing, ca, dir, hello, dead) matter only where bootstrap
// is set: the others receive the layer's configuration when they enroll.
type unicastConfig struct {
	Lower      []string    `toml:"lower"`            // lower layers to register the IPCP's name in
	Bootstrap  bool        `toml:"bootstrap"`        // the layer's first member
	Enroll     string      `toml:"enroll"`           // IPCP name of a member to enroll through
	Neighbours []string    `toml:"neighbours"`       // IPCP names to keep adjacencies with
	Discover   bool        `toml:"discover"`         // also connect to the members the lower eth shims heard announced
	Addr       uint64      `toml:"addr"`             // static address (default: random)
	Cert       string      `toml:"cert"`             // membership certificate (ouro cert issue): a file, or "base64:DATA" (boards); for layers admitted by authority
	CRL        string      `toml:"crl"`              // the authority's revocation list (ouro cert revoke): a file, or "base64:DATA"
	Seal       bool        `toml:"seal"`             // seal every flow of this member (unsealed requests refused); otherwise flows whose QoS asks are sealed
	SealPeers  []string    `toml:"seal_peers"`       // if set, the only node ids (ouro id) a sealed flow may have at its other end
	SealTicket offDuration `toml:"seal_ticket_life"` // how long a sealed flow's resumption ticket lasts (default 10m; negative: never resume)
	SealAEAD   string      `toml:"seal_aead"`        // force the AEAD of sealed flows: "aes256gcm" or "chacha20poly1305" (default: negotiated)

	Admission string `toml:"admission"`  // who may join: open, allow key=HEX..., authority authority=HEX... (required with bootstrap; elsewhere the policy to expect)
	Hash      string `toml:"hash"`       // sha3-256 (default) or sha256
	AddrWidth uint8  `toml:"addr_width"` // 4 (default) or 8
	Routing   string `toml:"routing"`    // simple, alternate (default) or multipath
	CA        string `toml:"ca"`         // nop, mb-ecn or mb-ecn-local (default)
	Dir       string `toml:"dir"`        // dht (default) or flood
	Names     string `toml:"names"`      // who owns a directory name: "" (first come; a certificate listing it outranks) or certified (only names certificates list; needs dir = dht and an authority policy)
	Hello     uint32 `toml:"hello"`      // keepalive period on management flows, ms (default 100)
	Dead      uint32 `toml:"dead"`       // hello periods of silence before a neighbour is dead (default 3)

	Sched       string   `toml:"sched"`        // strict (default) or wrr
	QueueLen    int      `toml:"queue_len"`    // per-cube queue of each N-1 flow (default 256)
	RoutingTick duration `toml:"routing_tick"` // default 100ms
	KeepAlive   duration `toml:"keepalive"`    // flow keepalive (default 1s)
	FlowTimeout duration `toml:"flow_timeout"` // a silent peer's flow is closed (default 4s)
}

func (c unicastConfig) config(p IPCPConfig) (unicast.Config, error) {
	cfg := unicast.Config{
		Name: p.Name, Layer: p.Layer, Lower: c.Lower,
		Bootstrap: c.Bootstrap, Enroll: c.Enroll, Neighbours: c.Neighbours, Discover: c.Discover,
		Addr: layer.Addr(c.Addr), QueueLen: c.QueueLen, Seal: c.Seal, SealPeers: c.SealPeers, SealTicketLife: c.SealTicket.Duration,
		RoutingTick: c.RoutingTick.Duration, KeepAlive: c.KeepAlive.Duration, FlowTimeout: c.FlowTimeout.Duration,
		Directories: map[string]dir.Builder{"dht": dht.Policy(dht.Config{})},
	}
	if c.Cert != "" {
		b, err := blob(c.Cert)
		if err != nil {
			return cfg, fmt.Errorf("cert: %w", err)
		}
		if _, err := identity.DecodeCert(b); err != nil {
			return cfg, fmt.Errorf("cert %s: %w", short(c.Cert), err)
		}
		cfg.Cert = b
	}
	var err error
	if cfg.SealAEAD, err = sealAEAD(c.SealAEAD); err != nil {
		return cfg, err
	}
	for _, id := range c.SealPeers {
		if !identity.IsName(id) {
			return cfg, fmt.Errorf("seal_peers: %q is not a node id (16 characters, as ouro id prints): %w", id, flow.ErrInvalid)
		}
	}
	if c.CRL != "" {
		b, err := blob(c.CRL)
		if err != nil {
			return cfg, fmt.Errorf("crl: %w", err)
		}
		if _, err := identity.DecodeCRL(b); err != nil {
			return cfg, fmt.Errorf("crl %s: %w", short(c.CRL), err)
		}
		cfg.CRL = b
	}
	if !c.Bootstrap && c.Admission != "" {
		pol, err := admission.Parse(c.Admission)
		if err != nil {
			return cfg, fmt.Errorf("admission: %w", err)
		}
		cfg.LayerConfig.Admission = pol
	}
	switch c.Sched {
	case "", "strict":
		cfg.Sched = dt.StrictPriority
	case "wrr":
		cfg.Sched = dt.WeightedRoundRobin
	default:
		return cfg, fmt.Errorf("sched %q (want strict or wrr): %w", c.Sched, flow.ErrInvalid)
	}
	if c.Bootstrap {
		args := map[string]string{}
		for k, v := range map[string]string{"admission": c.Admission, "hash": c.Hash, "routing": c.Routing, "ca": c.CA, "dir": c.Dir, "names": c.Names} {
			if v != "" {
				args[k] = v
			}
		}
		for k, v := range map[string]uint64{"addr_width": uint64(c.AddrWidth), "hello": uint64(c.Hello), "dead": uint64(c.Dead)} {
			if v != 0 {
				args[k] = strconv.FormatUint(v, 10)
			}
		}
		lc, err := unicast.ParseLayerConfig(args)
		if err != nil {
			return cfg, err
		}
		cfg.LayerConfig = lc
	}
	return cfg, nil
}

// blob reads a file named by a configuration value, or, for a value
// "base64:DATA", decodes DATA: how a board image, which has no files,
// carries a certificate or revocation list in its embedded configuration.
func blob(v string) ([]byte, error) {
	if data, ok := strings.CutPrefix(v, "base64:"); ok {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("base64: %w: %w", flow.ErrInvalid, err)
		}
		return b, nil
	}
	return os.ReadFile(v)
}

// short shortens a configuration value for an error message.
func short(v string) string {
	if len(v) > 40 {
		return v[:37] + "..."
	}
	return v
}

// brokerRegistrar registers a unicast IPCP's name in its lower layers
// through the IRM's "reg" command.
type brokerRegistrar struct{ b *irm.Broker }

// Reg implements unicast.Registrar.
func (r brokerRegistrar) Reg(ctx context.Context, name, lower string) error {
	_, err := r.b.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: name, Layer: lower})
	return err
}

// lowerHearer asks a unicast IPCP's lower layers, through the IRM's
// read-only "heard" command, which of a list of names their shims heard
// announced on their segments (unicast.Config.Discover).
type lowerHearer struct {
	b     *irm.Broker
	lower []string
}

// Heard implements unicast.Hearer. A lower layer that cannot answer (not
// an Ethernet shim, or down) hears nothing: it is skipped, not an error,
// since discovery asks again every round.
func (h lowerHearer) Heard(ctx context.Context, names []string) ([]string, error) {
	var out []string
	for _, l := range h.lower {
		r, err := h.b.Mgmt(ctx, ipcp.MgmtReq{Cmd: cmdHeard, IPCP: l, Args: map[string]string{"names": strings.Join(names, "\n")}})
		if err != nil {
			if ctx.Err() != nil {
				return out, fmt.Errorf("heard in %s: %w", l, err)
			}
			continue
		}
		for _, row := range r.Table.Rows {
			if len(row) > 0 && !slices.Contains(out, row[0]) {
				out = append(out, row[0])
			}
		}
	}
	return out, nil
}

// cmdHeard asks a shim which of Args["names"] (one a line) it heard
// announced (read-only; eth shims, docs/shims.md "Announcements").
const cmdHeard = "heard"

// hearer is a shim that learns its segment's names from announcements.
type hearer interface {
	Heard(names []string) []string
}

// ethDevice opens the stream device an [ipcp.eth] table asks for; nil
// when it names an interface (the shim opens AF_PACKET itself). Board
// links are boardDevices.eth's.
func ethDevice(c ethConfig) (eth.Device, error) {
	if c.Board != "" && c.Interface == "" && c.QEMUConnect == "" && c.QEMUListen == "" {
		return nil, fmt.Errorf("board = %q: no driver for board links here: %w", c.Board, flow.ErrInvalid)
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

// boardPort selects a board link device: "" none, "enet" the board's
// Ethernet NIC, "usb" its USB CDC-ECM gadget.
type boardPort string

// UnmarshalTOML accepts board = true (as "enet"), false, "enet" or "usb".
func (p *boardPort) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		*p = ""
		if v {
			*p = "enet"
		}
		return nil
	case string:
		switch v {
		case "enet", "usb":
			*p = boardPort(v)
			return nil
		}
	}
	return fmt.Errorf("board = %v: want true, false, \"enet\" or \"usb\": %w", v, flow.ErrInvalid)
}

// shimIPCP is a shim as the node manages it.
type shimIPCP interface {
	ipcpImpl
	Stats() shim.Stats
	Flows() []shim.FlowInfo
}

// capturer is a shim that serves the capture command (udp, eth).
type capturer interface {
	Capture(args map[string]string) (ipcp.MgmtResp, error)
}

// shimManager answers the management commands every shim has: stats and
// flows.
type shimManager struct{ shimIPCP }

var (
	_ ipcp.Manager    = shimManager{}
	_ ipcp.SDULimiter = shimManager{}
)

// MaxSDU implements ipcp.SDULimiter for a shim that carries SDUs larger
// than flow.MaxSDU (a UDP shim's max_sdu), so that its flows' ports and
// rings are made for them; for the others it says nothing (0: the
// default).
func (s shimManager) MaxSDU() int {
	if l, ok := s.shimIPCP.(ipcp.SDULimiter); ok && l.MaxSDU() > flow.MaxSDU {
		return l.MaxSDU()
	}
	return 0
}

// AllocPeer implements ipcp.PeerAllocator for the shims that seal flows
// (udp, eth): the IRM learns a sealed flow's verified peer. Other shims:
// Alloc, no peer.
func (s shimManager) AllocPeer(ctx context.Context, req ipcp.AllocReq, port flow.Port) (ipcp.AllocResult, error) {
	if pa, ok := s.shimIPCP.(ipcp.PeerAllocator); ok {
		return pa.AllocPeer(ctx, req, port)
	}
	return ipcp.AllocResult{}, s.shimIPCP.Alloc(ctx, req, port)
}

// Mgmt implements ipcp.Manager.
func (s shimManager) Mgmt(_ context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if c, ok := s.shimIPCP.(capturer); ok && req.Cmd == capture.Cmd {
		return c.Capture(req.Args)
	}
	if h, ok := s.shimIPCP.(hearer); ok && req.Cmd == cmdHeard {
		t := ipcp.Table{Columns: []string{"name"}}
		for _, n := range h.Heard(strings.Split(req.Args["names"], "\n")) {
			t.Rows = append(t.Rows, []string{n})
		}
		return ipcp.MgmtResp{Table: t}, nil
	}
	switch req.Cmd {
	case "stats":
		return ipcp.MgmtResp{Table: counterTable(s.Stats())}, nil
	case "flows":
		t := ipcp.Table{Columns: []string{"eid", "peer_eid", "peer", "name", "dir", "cube", "pkts_in", "bytes_in", "pkts_out", "bytes_out"}}
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
		return ipcp.MgmtResp{Table: t}, nil
	}
	want := "stats or flows"
	if _, ok := s.shimIPCP.(capturer); ok {
		want = "stats, flows or capture"
	}
	return ipcp.MgmtResp{}, fmt.Errorf("%s: unknown command %q (want %s): %w", s.Info().Name, req.Cmd, want, flow.ErrInvalid)
}

// counterTable flattens a struct of counters into a two-column table
// sorted by name, nested structs as "outer.inner", under the names its
// JSON form has (the fields' json tags; an embedded struct's fields
// promoted, zero omitempty fields left out): what a JSON round trip gave, without linking encoding/json's
// decoder into board images (TestCounterTable compares the two). Counters
// are integers; a field of another kind prints as fmt.Sprint prints it.
func counterTable(v any) ipcp.Table {
	t := ipcp.Table{Columns: []string{"counter", "value"}}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		type field struct {
			name string
			v    reflect.Value
		}
		var fs []field
		var collect func(v reflect.Value)
		collect = func(v reflect.Value) {
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				switch {
				case name == "-":
				case opts == "omitempty" && f.Type.Kind() != reflect.Struct && v.Field(i).IsZero():
				case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
					collect(v.Field(i))
				case f.IsExported():
					if name == "" {
						name = f.Name
					}
					fs = append(fs, field{name, v.Field(i)})
				}
			}
		}
		collect(v)
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
		for _, f := range fs {
			if f.v.Kind() == reflect.Struct {
				walk(prefix+f.name+".", f.v)
				continue
			}
			t.Rows = append(t.Rows, []string{prefix + f.name, fmt.Sprint(f.v.Interface())})
		}
	}
	if rv := reflect.Indirect(reflect.ValueOf(v)); rv.Kind() == reflect.Struct {
		walk("", rv)
	}
	return t
}
