package irm

import (
	"context"
	"fmt"
	"github.com/ouronet/ouro/layer/ipcp"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

// Creator makes IPCP components at run time; the node provides it (it
// is the same factory the node uses for the IPCPs it boots with).
type Creator interface {
	// NewIPCP checks the IPCP that req declares and returns its
	// description, the program of its component and the budget it needs.
	// The program reports on started once the IPCP runs (nil) or failed.
	NewIPCP(req ipcp.MgmtReq) (info ipcp.Info, prog kernel.Program, bufs int, started <-chan error, err error)
}

// Provisioner is a Creator whose IPCPs need more than their endpoint and
// the IRM's cap: caps the IRM holds, each named by its slot in the IRM's
// CSpace (CapSpec.Object; equal or fewer rights), and objects of their
// own to make (carved from the IRM's budget). The node's factory gives
// an IPCP on a board link the link driver's attach cap this way.
type Provisioner interface {
	Provision(req ipcp.MgmtReq) (caps []kernel.CapSpec, objects int, err error)
}

// startTimeout bounds how long a created IPCP may take to start.
const startTimeout = 10 * time.Second

// create spawns the IPCP component req declares, as a child of the IRM's
// component: its own endpoint (Read), a badged cap to the IRM's and what
// a Provisioner adds.
func (m *IRM) create(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if req.Name == "" {
		req.Name = req.IPCP
	}
	if m.cfg.Creator == nil {
		return ipcp.MgmtResp{}, fmt.Errorf("irm: create: this node cannot create IPCPs: %w", flow.ErrInvalid)
	}
	info, prog, bufs, started, err := m.cfg.Creator.NewIPCP(req)
	if err != nil {
		return ipcp.MgmtResp{}, fmt.Errorf("irm: create: %w", err)
	}
	var extra []kernel.CapSpec
	objects := 0
	if p, ok := m.cfg.Creator.(Provisioner); ok {
		if extra, objects, err = p.Provision(req); err != nil {
			return ipcp.MgmtResp{}, fmt.Errorf("irm: create: %w", err)
		}
	}
	m.mu.Lock()
	pd, self, fault := m.pd, m.self, m.fault
	badge := MakeBadge(RoleIPCP, 0)
	for _, e := range m.ipcps {
		if e.info.Name == info.Name {
			m.mu.Unlock()
			return ipcp.MgmtResp{}, fmt.Errorf("irm: create %s: %w", info.Name, flow.ErrExists)
		}
		if e.sup.badge > badge {
			badge = e.sup.badge
		}
	}
	badge++
	if n := m.names[info.Name]; n != nil && len(n.sessions) > 0 {
		m.mu.Unlock()
		return ipcp.MgmtResp{}, fmt.Errorf("irm: create %s: a program has bound that name: %w", info.Name, flow.ErrExists)
	}
	m.mu.Unlock()

	ep, err := pd.NewEndpoint()
	if err != nil {
		return ipcp.MgmtResp{}, fmt.Errorf("irm: create %s: %w: %w", info.Name, flow.ErrBusy, err)
	}
	// It is one of the IRM's IPCPs (and may say hello) as soon as it runs.
	e := &ipcpEntry{info: info, ipcp: NewRemote(pd, ep), ep: ep, sup: supervised{
		name: info.Name, kind: "ipcp", badge: badge, state: StateInit, backoff: NewBackoff(m.cfg.Restart, time.Now()),
	}}
	e.newLife()
	m.mu.Lock()
	m.ipcps = append(m.ipcps, e)
	m.mu.Unlock()
	// Its faults come to the IRM's fault endpoint with its badge: it is
	// supervised (restarted) like the IPCPs of the configuration.
	child, err := pd.Spawn(kernel.ComponentSpec{
		Name:       "ipcp." + info.Name,
		Budget:     kernel.Budget{Bufs: bufs, Objects: objects},
		FaultCap:   fault,
		FaultBadge: badge,
		Caps: append([]kernel.CapSpec{
			{Name: "ep", Src: ep, Rights: kernel.Read},
			{Name: "irm", Src: self, Rights: kernel.Write | kernel.Grant | kernel.GrantReply, Badge: badge},
		}, extra...),
	}, prog)
	if err != nil {
		m.forget(e)
		pd.Delete(ep)
		return ipcp.MgmtResp{}, fmt.Errorf("irm: create %s: %w", info.Name, err)
	}
	m.mu.Lock()
	e.child, e.sup.comp = child, child
	m.mu.Unlock()
	select {
	case err = <-started:
	case <-time.After(startTimeout):
		err = fmt.Errorf("did not start in %v: %w", startTimeout, flow.ErrTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		m.forget(e)
		pd.Kill(child)
		pd.Delete(child)
		pd.Delete(ep)
		return ipcp.MgmtResp{}, fmt.Errorf("irm: create %s: %w", info.Name, err)
	}
	m.cfg.Log.Info("IPCP created", "ipcp", info.Name, "kind", info.Kind, "layer", info.Layer)
	return ipcp.MgmtResp{Text: fmt.Sprintf("created %s (%s) in layer %s", info.Name, info.Kind, info.Layer)}, nil
}

// destroy stops an IPCP created at run time and forgets it. IPCPs of the
// node's configuration are part of its system description and stay.
func (m *IRM) destroy(req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	name := req.Name
	if name == "" {
		name = req.IPCP
	}
	m.mu.Lock()
	var e *ipcpEntry
	for _, x := range m.ipcps {
		if x.info.Name == name {
			if x.child == 0 {
				m.mu.Unlock()
				return ipcp.MgmtResp{}, fmt.Errorf("irm: destroy %s: configured IPCPs are part of the system description: %w", name, flow.ErrInvalid)
			}
			e = x
			break
		}
	}
	pd := m.pd
	m.mu.Unlock()
	if e == nil {
		return ipcp.MgmtResp{}, fmt.Errorf("irm: destroy %s: no such IPCP: %w", name, flow.ErrNotFound)
	}
	m.forget(e) // no restart from now on
	pd.Kill(e.child)
	m.closeFlows(func(f *flowEntry) bool { return f.via == name })
	m.endSessionsOf(e.sup.badge)
	pd.Delete(e.child)
	pd.Delete(e.ep)
	return ipcp.MgmtResp{Text: "destroyed " + name}, nil
}

// forget removes e from the IRM's IPCPs and from every name's
// registrations.
func (m *IRM) forget(e *ipcpEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.ipcps {
		if x == e {
			m.ipcps = append(m.ipcps[:i:i], m.ipcps[i+1:]...)
			break
		}
	}
	for _, n := range m.names {
		delete(n.layers, e.info.Name)
	}
}
