package irm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/rpc"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
)

// Management targets.
//
// A component that is neither an IPCP nor the IRM may keep counters
// worth a management command: an IP bridge ([[ipnet]]) its per-route
// packets and drops. Components are isolated, so the IRM does not read
// them through a pointer the node captured when it built the component.
// The component serves them on an endpoint of its own and moves a cap to
// it (Write and GrantReply: the IRM can call it and nothing more) to the
// IRM over its session (OpTarget, Broker.ServeTarget), naming what it
// is (TargetArgs). The IRM calls it (OpTargetMgmt, a MgmtReq) when a
// command that lists such targets comes (ipcp.CmdBridges), each call
// bounded by targetTimeout and all of them at once, so a target that is
// stuck or restarting costs the command that long, shows as a row with
// its error, and blocks nothing else. The cap goes with the session
// (the component stopped or faulted), or when the same component offers
// the same target again; an incarnation that restarts offers it anew.
//
// This is the IPCPs' arrangement (the IRM calls their endpoints for
// "stats") without their fixed slots: a target's endpoint is made at run
// time and reaches the IRM only through the session of the component
// that made it.

// Target kinds.
const (
	// TargetIPNet is an IP bridge: it answers ipcp.CmdBridges with a
	// table of BridgeColumns.
	TargetIPNet = "ipnet"
)

// BridgeColumns are the columns of an IP bridge's answer to
// ipcp.CmdBridges: the IRM's table has "bridge" before them and "error"
// after.
var BridgeColumns = []string{"prefix", "peer", "packets", "bytes", "drops", "too_big", "aqm_drops", "aqm_marks", "supers", "flows", "flow_errors"}

// OpTargetMgmt is the operation on a target's endpoint: MgmtReq →
// MgmtResp (one page; ServeTarget pages it).
const OpTargetMgmt rpc.Op = opIPCPBase + 32

// TargetArgs names a management target (OpTarget): its kind (TargetIPNet)
// and its name among the targets of that kind (a bridge's bound name).
type TargetArgs struct {
	_    struct{} `cbor:",toarray"`
	Kind string
	Name string
}

// maxTargetName bounds a target's name.
const maxTargetName = 64

// Check checks a: a known kind, a name of 1 to 64 printable bytes
// without spaces.
func (a TargetArgs) Check() error {
	if a.Kind != TargetIPNet {
		return fmt.Errorf("irm: target kind %q (want %q): %w", a.Kind, TargetIPNet, flow.ErrInvalid)
	}
	if a.Name == "" || len(a.Name) > maxTargetName || strings.IndexFunc(a.Name, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		return fmt.Errorf("irm: target name %q: 1 to %d printable characters: %w", a.Name, maxTargetName, flow.ErrInvalid)
	}
	return nil
}

// Bounds on the targets the IRM keeps.
const (
	maxTargetsPerSession = 4
	maxTargets           = 256
)

// targetTimeout bounds one target's answer to a command that lists
// targets (a bridge answers from counters it holds: at once, unless it
// is stuck).
const targetTimeout = 2 * time.Second

// target is a management endpoint a component offered.
type target struct {
	TargetArgs
	sess *session
	c    kernel.Cap // in the IRM's CSpace
	cl   *rpc.Client
}

// offerTarget is OpTarget: it keeps the endpoint cap that came with r
// as session s's target, or deletes it.
func (m *IRM) offerTarget(r *rpc.Request) (rpc.Response, error) {
	pd := m.pd
	keep := false
	defer func() {
		if !keep {
			deleteCaps(pd, r.Caps)
		}
	}()
	if role := RoleOf(r.Badge); role != RoleSession && role != RoleMgmtSession {
		return rpc.Response{}, errRights("offer target", r.Badge, "needs a session cap")
	}
	s, err := m.sessionOf(r.Badge)
	if err != nil {
		return rpc.Response{}, err
	}
	if role := RoleOf(s.opener); role != RoleApp && role != RoleManager {
		return rpc.Response{}, errRights("offer target", r.Badge, "only an in-node component's session offers targets")
	}
	var a TargetArgs
	if err := r.Decode(&a); err != nil {
		return rpc.Response{}, err
	}
	if err := a.Check(); err != nil {
		return rpc.Response{}, err
	}
	if len(r.Caps) != 1 {
		return rpc.Response{}, fmt.Errorf("irm: offer target %s %s: %d caps, want an endpoint's (was the session cap minted without Grant?): %w", a.Kind, a.Name, len(r.Caps), flow.ErrInvalid)
	}
	ci, err := pd.Inspect(r.Caps[0])
	if err != nil || ci.Kind != kernel.KindEndpoint || ci.Rights&(kernel.Write|kernel.GrantReply) != kernel.Write|kernel.GrantReply {
		return rpc.Response{}, fmt.Errorf("irm: offer target %s %s: want a cap to an endpoint with Write and GrantReply (%+v, %v): %w", a.Kind, a.Name, ci, err, flow.ErrInvalid)
	}
	t := &target{TargetArgs: a, sess: s, c: r.Caps[0], cl: rpc.NewClient(pd, r.Caps[0])}
	m.mu.Lock()
	if s.ended {
		m.mu.Unlock()
		return rpc.Response{}, fmt.Errorf("irm: offer target: session ended: %w", flow.ErrClosed)
	}
	n, i := 0, -1
	for j, o := range m.targets {
		if o.sess == s {
			n++
		}
		if o.TargetArgs == a {
			i = j
		}
	}
	var old *target
	switch {
	case i >= 0 && m.targets[i].sess.opener != s.opener:
		m.mu.Unlock()
		return rpc.Response{}, fmt.Errorf("irm: offer target %s %s: another component's: %w", a.Kind, a.Name, flow.ErrExists)
	case i >= 0:
		old, m.targets[i] = m.targets[i], t
	case n >= maxTargetsPerSession || len(m.targets) >= maxTargets:
		m.mu.Unlock()
		return rpc.Response{}, fmt.Errorf("irm: offer target %s %s: too many targets: %w", a.Kind, a.Name, flow.ErrBusy)
	default:
		m.targets = append(m.targets, t)
	}
	keep = true
	m.mu.Unlock()
	if old != nil {
		pd.Delete(old.c)
	}
	m.cfg.Log.Debug("management target offered", "kind", a.Kind, "name", a.Name, "principal", s.principal)
	return rpc.Response{}, nil
}

// dropTargets forgets session s's targets and deletes their caps.
func (m *IRM) dropTargets(s *session) {
	m.mu.Lock()
	var gone []kernel.Cap
	m.targets = slices.DeleteFunc(m.targets, func(t *target) bool {
		if t.sess == s {
			gone = append(gone, t.c)
			return true
		}
		return false
	})
	pd := m.pd
	m.mu.Unlock()
	for _, c := range gone {
		pd.Delete(c)
	}
}

// bridgeTable is the "bridges" table: every IP bridge's answer, asked
// of all at once, each within targetTimeout; a bridge that does not
// answer, or answers something else than BridgeColumns, has one row
// with the error.
func (m *IRM) bridgeTable(ctx context.Context) ipcp.Table {
	m.mu.Lock()
	var ts []*target
	for _, t := range m.targets {
		if t.Kind == TargetIPNet {
			ts = append(ts, t)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(ts, func(a, b *target) int { return strings.Compare(a.Name, b.Name) })
	cols := append(append([]string{"bridge"}, BridgeColumns...), "error")
	rows := make([][][]string, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		m.pd.Go(func() {
			defer wg.Done()
			rows[i] = m.askBridge(ctx, t)
		})
	}
	wg.Wait()
	tab := ipcp.Table{Columns: cols}
	for _, r := range rows {
		tab.Rows = append(tab.Rows, r...)
	}
	return tab
}

// askBridge returns bridge t's rows of the "bridges" table.
func (m *IRM) askBridge(ctx context.Context, t *target) [][]string {
	ctx, cancel := context.WithTimeout(ctx, min(targetTimeout, m.cfg.CallTimeout))
	defer cancel()
	call := func(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		var resp ipcp.MgmtResp
		_, err := t.cl.Call(ctx, OpTargetMgmt, req, nil, &resp)
		return resp, err
	}
	resp, err := ipcp.ReadPages(ctx, call, ipcp.MgmtReq{Cmd: ipcp.CmdBridges}, 64)
	if err == nil && !slices.Equal(resp.Table.Columns, BridgeColumns) {
		err = fmt.Errorf("columns %v, want %v: %w", resp.Table.Columns, BridgeColumns, flow.ErrInvalid)
	}
	var rows [][]string
	for _, r := range resp.Table.Rows {
		if err == nil && len(r) != len(BridgeColumns) {
			err = fmt.Errorf("a row of %d columns, want %d: %w", len(r), len(BridgeColumns), flow.ErrInvalid)
		}
		if err != nil {
			break
		}
		rows = append(rows, append(append([]string{t.Name}, r...), "-"))
	}
	if err != nil {
		row := []string{t.Name}
		for range BridgeColumns {
			row = append(row, "-")
		}
		return [][]string{append(row, err.Error())}
	}
	return rows
}

// ServeTarget offers the component's management answers as a target of
// the IRM (OpTarget): it makes an endpoint (one object of the
// component's budget), moves a cap to it to the IRM over the session,
// and serves h on it until the component stops; answers are paged as
// an IPCP's. The target goes when the session ends.
func (b *Broker) ServeTarget(ctx context.Context, a TargetArgs, h ipcp.Manager) error {
	if err := a.Check(); err != nil {
		return err
	}
	pd := b.c.PD()
	ep, err := pd.NewEndpoint()
	if err != nil {
		return fmt.Errorf("irm: target %s %s: %w", a.Kind, a.Name, err)
	}
	give, err := pd.Mint(ep, kernel.Write|kernel.GrantReply, 0)
	if err != nil {
		pd.Delete(ep)
		return fmt.Errorf("irm: target %s %s: %w", a.Kind, a.Name, err)
	}
	if caps, err := b.c.Call(ctx, OpTarget, a, []kernel.Cap{give}, nil); err != nil {
		deleteCaps(pd, caps)
		pd.Delete(give) // if the call did not move it
		pd.Delete(ep)
		return err
	}
	pd.Go(func() {
		defer pd.Delete(ep)
		rpc.Serve(pd, ep, func(ctx context.Context, r *rpc.Request) (rpc.Response, error) {
			deleteCaps(pd, r.Caps)
			if r.Op != OpTargetMgmt {
				return rpc.Response{}, fmt.Errorf("irm: target operation %d: %w", r.Op, flow.ErrInvalid)
			}
			var req ipcp.MgmtReq
			if err := r.Decode(&req); err != nil {
				return rpc.Response{}, err
			}
			resp, err := h.Mgmt(ctx, req)
			if err == nil {
				resp, err = pageAnswer(resp, req)
			}
			return rpc.Response{Body: resp}, err
		})
	})
	return nil
}
