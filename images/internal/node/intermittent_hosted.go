//go:build !tamago

package node

// The diode and carrier shims as a hosted node builds them (their media
// are a host's UDP socket and directories: boards have neither, see
// intermittent_board.go and docs/intermittent.md).

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim"
	"github.com/ouronet/ouro/layer/shim/carrier"
	"github.com/ouronet/ouro/layer/shim/diode"
)

// signLabels returns the labels an IPCP of kind may have signed: a diode
// or carrier shim its blocks or bundles only, any other IPCP the layer's
// messages (ipcpSignLabels).
func signLabels(kind string) []string {
	switch kind {
	case "diode":
		return []string{diode.Label}
	case "carrier":
		return []string{carrier.Label, carrier.AckLabel}
	}
	return ipcpSignLabels
}

// grantKinds are the kinds whose signing grants differ (signLabels,
// agrees): every other kind signs as "ipcp" does.
var grantKinds = []string{"ipcp", "diode", "carrier"}

// grantKind is the one of grantKinds that kind signs as.
func grantKind(kind string) string {
	switch kind {
	case "diode", "carrier":
		return kind
	}
	return "ipcp"
}

// agrees reports whether an IPCP of kind may have X25519 agreements made
// with the node key: the carrier shim, which opens bundles sealed to the
// node.
func agrees(kind string) bool { return kind == "carrier" }

// config is the shim's configuration but its medium and signer.
func (c diodeConfig) config(p IPCPConfig) (diode.Config, error) {
	cfg := diode.Config{Layer: p.Layer, Name: p.Name, K: c.K, Loss: c.Loss, Parity: c.Parity, MTU: c.MTU,
		Rate: c.Rate, Linger: c.Linger.Duration, Window: c.Window, Impair: c.Impair}
	if (c.Send == "") == (c.Receive == "") {
		return cfg, fmt.Errorf("set exactly one of send (the sending end) and receive (the receiving end): %w", flow.ErrInvalid)
	}
	if len(c.Flows) == 0 {
		return cfg, fmt.Errorf("flows: at least one name = id, the same at both ends: %w", flow.ErrInvalid)
	}
	names := make([]string, 0, len(c.Flows))
	for n := range c.Flows {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cfg.Flows = append(cfg.Flows, diode.Flow{ID: c.Flows[n], Name: n})
	}
	if c.Receive != "" {
		k, err := peerKey(c.PeerKey)
		if err != nil {
			return cfg, fmt.Errorf("peer_key: %w", err)
		}
		cfg.Peer = k
	} else if c.PeerKey != "" {
		return cfg, fmt.Errorf("peer_key is the receiving end's (the sending end signs with the node's own key): %w", flow.ErrInvalid)
	}
	if c.Impair.Enabled() && c.Receive != "" {
		return cfg, fmt.Errorf("impair: only the sending end transmits: %w", flow.ErrInvalid)
	}
	if err := c.Impair.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// newDiode builds a diode shim: it opens its UDP socket itself, one way.
func newDiode(p IPCPConfig, deps ipcpDeps, env ipcpEnv) (ipcpImpl, error) {
	var c diodeConfig
	if err := deps.decode(p.Diode, &c); err != nil {
		return nil, fmt.Errorf("[ipcp.diode] of %s: %w", p.Name, err)
	}
	cfg, err := c.config(p)
	if err != nil {
		return nil, fmt.Errorf("[ipcp.diode] of %s: %w", p.Name, err)
	}
	cfg.Runner = env.pd
	if c.Send != "" {
		if s := env.signer(deps.nodeKey); s != nil {
			cfg.Signer = s
		} else {
			return nil, fmt.Errorf("[ipcp.diode] of %s: the sending end signs with the node's key, and the node has none: %w", p.Name, flow.ErrInvalid)
		}
		to, err := netip.ParseAddrPort(c.Send)
		if err != nil {
			return nil, fmt.Errorf("[ipcp.diode] of %s: send: %w", p.Name, err)
		}
		var from netip.AddrPort
		if c.Bind != "" {
			if from, err = netip.ParseAddrPort(c.Bind); err != nil {
				return nil, fmt.Errorf("[ipcp.diode] of %s: bind: %w", p.Name, err)
			}
		}
		if cfg.Tx, err = diode.DialUDP(from, to); err != nil {
			return nil, fmt.Errorf("[ipcp.diode] of %s: %w", p.Name, err)
		}
	} else {
		at, err := netip.ParseAddrPort(c.Receive)
		if err != nil {
			return nil, fmt.Errorf("[ipcp.diode] of %s: receive: %w", p.Name, err)
		}
		if cfg.Rx, err = diode.ListenUDP(at); err != nil {
			return nil, fmt.Errorf("[ipcp.diode] of %s: %w", p.Name, err)
		}
	}
	proc, err := diode.New(cfg, env.up)
	if err != nil {
		if cfg.Tx != nil {
			cfg.Tx.Close()
		}
		if cfg.Rx != nil {
			cfg.Rx.Close()
		}
		return nil, err
	}
	return diodeManager{shimManager{proc}, proc}, nil
}

// diodeManager adds the FEC counters to the shim's stats.
type diodeManager struct {
	shimManager
	d *diode.IPCP
}

var _ ipcp.SDULimiter = diodeManager{}

// MaxSDU implements ipcp.SDULimiter.
func (m diodeManager) MaxSDU() int { return m.d.MaxSDU() }

// Mgmt implements ipcp.Manager.
func (m diodeManager) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if req.Cmd == "stats" {
		return ipcp.MgmtResp{Table: counterTable(struct {
			shim.Stats
			FEC diode.FECStats `json:"fec"`
		}{m.d.Stats(), m.d.FEC()})}, nil
	}
	return m.shimManager.Mgmt(ctx, req)
}

// config is the shim's configuration but its signer.
func (c carrierConfig) config(p IPCPConfig) (carrier.Config, error) {
	cfg := carrier.Config{Layer: p.Layer, Name: p.Name, Out: c.Out, In: c.In, State: c.State, Ack: c.Ack, Resend: c.Resend.Duration, Names: c.Names,
		Expiry: c.Expiry.Duration, MinTimeout: c.MinTimeout.Duration, Poll: c.Poll.Duration, Linger: c.Linger.Duration,
		MaxBundle: c.MaxBundle, MaxBytes: c.MaxBytes, MaxFiles: c.MaxFiles, MaxSeen: c.MaxSeen, MaxFlows: c.MaxFlows}
	if c.Out == "" || c.In == "" {
		return cfg, fmt.Errorf("out and in: both directories are needed: %w", flow.ErrInvalid)
	}
	if c.Out == c.In {
		return cfg, fmt.Errorf("out and in are the same directory: the node would take its own bundles: %w", flow.ErrInvalid)
	}
	if c.Resend.Duration < 0 || c.Resend.Duration > 0 && c.State == "" {
		return cfg, fmt.Errorf("resend needs state (where unacknowledged bundles are kept) and must not be negative: %w", flow.ErrInvalid)
	}
	if c.State != "" && (c.State == c.Out || c.State == c.In) {
		return cfg, fmt.Errorf("state is out or in: the seen-set is the node's own, not carried: %w", flow.ErrInvalid)
	}
	if len(c.PeerKeys) == 0 {
		return cfg, fmt.Errorf("peer_keys: at least one node whose bundles are accepted: %w", flow.ErrInvalid)
	}
	for i, s := range c.PeerKeys {
		k, err := peerKey(s)
		if err != nil {
			return cfg, fmt.Errorf("peer_keys[%d]: %w", i, err)
		}
		cfg.Peers = append(cfg.Peers, k)
	}
	if c.Recipient != "" {
		k, err := peerKey(c.Recipient)
		if err != nil {
			return cfg, fmt.Errorf("recipient: %w", err)
		}
		cfg.Recipient = k
	}
	if slices.Contains(c.Names, "") {
		return cfg, fmt.Errorf("names: an empty name: %w", flow.ErrInvalid)
	}
	return cfg, nil
}

// newCarrier builds a carrier shim over two directories.
func newCarrier(p IPCPConfig, deps ipcpDeps, env ipcpEnv) (ipcpImpl, error) {
	var c carrierConfig
	if err := deps.decode(p.Carrier, &c); err != nil {
		return nil, fmt.Errorf("[ipcp.carrier] of %s: %w", p.Name, err)
	}
	cfg, err := c.config(p)
	if err != nil {
		return nil, fmt.Errorf("[ipcp.carrier] of %s: %w", p.Name, err)
	}
	cfg.Runner = env.pd
	s := env.signer(deps.nodeKey)
	if s == nil {
		return nil, fmt.Errorf("[ipcp.carrier] of %s: bundles are signed with the node's key, and the node has none: %w", p.Name, flow.ErrInvalid)
	}
	cfg.Signer, cfg.Agreer = s, s
	proc, err := carrier.New(cfg, env.up)
	if err != nil {
		return nil, err
	}
	return carrierManager{shimManager{proc}, proc}, nil
}

// carrierManager adds the bundle counters to the shim's stats.
type carrierManager struct {
	shimManager
	c *carrier.IPCP
}

// A sealed flow's peer (the node its bundles are sealed to) reaches the
// IRM through the embedded shimManager's AllocPeer.
var _ ipcp.PeerAllocator = carrierManager{}

// Mgmt implements ipcp.Manager.
func (m carrierManager) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if req.Cmd == "stats" {
		return ipcp.MgmtResp{Table: counterTable(struct {
			shim.Stats
			Bundles carrier.BundleStats `json:"bundles"`
		}{m.c.Stats(), m.c.Bundles()})}, nil
	}
	return m.shimManager.Mgmt(ctx, req)
}

// checkDiode reports what the diode shim itself would refuse.
func (k *checker) checkDiode(d diodeConfig, p IPCPConfig, path []any, where string) {
	cfg, err := d.config(p)
	if err != nil {
		k.add(path, where, "", "%v", err)
		return
	}
	if d.Parity == 0 {
		kk := cfg.K
		if kk == 0 {
			kk = 16
		}
		if _, err := diode.Parity(kk, d.Loss, diode.DefaultResidual); err != nil {
			k.add(append(slices.Clone(path), "loss"), where, "loss", "%v", err)
		}
	}
	if d.K < 0 || d.Parity < 0 || d.MTU < 0 || d.Window < 0 {
		k.add(path, where, "", "k, parity, mtu and window must not be negative")
	}
}

// checkCarrier reports what the carrier shim itself would refuse, but
// for the directories (they may be mounted later: the IPCP checks them).
func (k *checker) checkCarrier(c carrierConfig, p IPCPConfig, path []any, where string) {
	if _, err := c.config(p); err != nil {
		k.add(path, where, "", "%v", err)
	}
	if c.MaxBundle < 0 || c.MaxBytes < 0 || c.MaxFiles < 0 || c.MaxSeen < 0 || c.MaxFlows < 0 {
		k.add(path, where, "", "max_bundle, max_bytes, max_files, max_seen and max_flows must not be negative")
	}
}
