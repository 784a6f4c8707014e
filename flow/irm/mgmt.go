package irm

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

const defaultCallTimeout = 5 * time.Second

// The IRM's own management commands; anything else is passed to the IPCP
// named in the request.
const (
	CmdIPCPs  = "ipcps"  // the node's IPCPs
	CmdNames  = "names"  // names, their bindings and registrations
	CmdFlows  = "flows"  // flows brokered and still open
	CmdReg    = "reg"    // register Name in Layer (or every layer if empty)
	CmdUnreg  = "unreg"  // unregister Name from Layer (or every layer)
	CmdSystem = "system" // the kernel's system description; Args["format"]: table, dot, mermaid
)

// readOnly are the management commands anyone with a session may run:
// they change nothing. Every other command (reg, unreg, create, destroy,
// and IPCP commands such as bootstrap, enroll, connect) needs a
// management session.
var readOnly = map[string]bool{
	CmdIPCPs: true, CmdNames: true, CmdFlows: true, CmdSystem: true,
	// IPCP tables and counters ("flows" is also the IPCP's own).
	"stats": true, "members": true, "routes": true, "pff": true, "dir": true, "ports": true,
}

// mgmtAllowed says whether session s may run req.
func (m *IRM) mgmtAllowed(s *session, req MgmtReq) error {
	if s.mgmt || readOnly[req.Cmd] {
		return nil
	}
	// An IPCP registers its own name in the layers below it.
	if s.ipcp != nil && (req.Cmd == CmdReg || req.Cmd == CmdUnreg) && req.Name == s.ipcp.info.Name {
		return nil
	}
	return fmt.Errorf("irm: %s: changes the node: needs a management session (%s has none): %w", req.Cmd, s.principal, kernel.ErrRights)
}

func (m *IRM) mgmt(ctx context.Context, s *session, req MgmtReq) (MgmtResp, error) {
	if err := m.mgmtAllowed(s, req); err != nil {
		return MgmtResp{}, err
	}
	switch req.Cmd {
	case CmdIPCPs:
		return MgmtResp{Table: m.ipcpTable()}, nil
	case CmdNames:
		return MgmtResp{Table: m.nameTable()}, nil
	case CmdFlows:
		return MgmtResp{Table: m.flowTable()}, nil
	case CmdReg, CmdUnreg:
		return m.regCmd(ctx, req)
	case CmdCreate:
		return m.create(ctx, req)
	case CmdDestroy:
		return m.destroy(req)
	case CmdSystem:
		if m.cfg.Describe == nil {
			return MgmtResp{}, fmt.Errorf("irm: system description: %w", flow.ErrNotFound)
		}
		sys := m.cfg.Describe()
		switch req.Args["format"] {
		case "", "table":
			return MgmtResp{Text: sys.Table()}, nil
		case "dot":
			return MgmtResp{Text: sys.Dot()}, nil
		case "mermaid":
			return MgmtResp{Text: sys.Mermaid()}, nil
		}
		return MgmtResp{}, fmt.Errorf("irm: system format %q (want table, dot or mermaid): %w", req.Args["format"], flow.ErrInvalid)
	}
	if req.IPCP == "" {
		return MgmtResp{}, fmt.Errorf("irm: unknown command %q: %w", req.Cmd, flow.ErrInvalid)
	}
	e := m.ipcpByName(req.IPCP)
	if e == nil {
		return MgmtResp{}, fmt.Errorf("irm: %s %s: no such IPCP: %w", req.Cmd, req.IPCP, flow.ErrNotFound)
	}
	if err := m.ready(e); err != nil {
		if req.Cmd == "stats" {
			// The supervisor's view is all there is while it is down.
			return MgmtResp{Table: Table{Columns: []string{"counter", "value"}, Rows: m.supervisionRows(e)}}, nil
		}
		return MgmtResp{}, fmt.Errorf("irm: %s %s: %w", req.Cmd, req.IPCP, err)
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	resp, err := e.ipcp.Mgmt(cctx, req)
	if err == nil && req.Cmd == "stats" {
		resp.Table.Rows = append(m.supervisionRows(e), resp.Table.Rows...)
	}
	return resp, err
}

func (m *IRM) ipcpByName(name string) *ipcpEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.ipcps {
		if e.info.Name == name || (name == e.info.Layer) {
			return e
		}
	}
	return nil
}

func (m *IRM) ipcpTable() Table {
	m.mu.Lock()
	entries := append([]*ipcpEntry(nil), m.ipcps...)
	m.mu.Unlock()
	t := Table{Columns: []string{"name", "layer", "kind", "state", "restarts", "last_fault"}}
	for _, e := range entries {
		info := e.info
		if err := m.ready(e); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			var err error
			info, err = e.ipcp.Info(ctx)
			cancel()
			if err != nil {
				info = e.info
				info.State = "unreachable"
			}
		}
		m.mu.Lock()
		if e.sup.state != StateOperational {
			info.State = e.sup.state
		}
		restarts, last := strconv.Itoa(e.sup.restarts), "-"
		if e.sup.lastFault != "" {
			last = e.sup.lastFault
		}
		m.mu.Unlock()
		t.Rows = append(t.Rows, []string{info.Name, info.Layer, info.Kind, info.State, restarts, last})
	}
	return t
}

func (m *IRM) nameTable() Table {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.names))
	for n := range m.names {
		names = append(names, n)
	}
	sort.Strings(names)
	t := Table{Columns: []string{"name", "bound", "layers"}}
	for _, n := range names {
		e := m.names[n]
		layers := make([]string, 0, len(e.layers))
		for l := range e.layers {
			layers = append(layers, l)
		}
		sort.Strings(layers)
		t.Rows = append(t.Rows, []string{n, fmt.Sprint(len(e.sessions)), strings.Join(layers, ",")})
	}
	return t
}

func (m *IRM) regCmd(ctx context.Context, req MgmtReq) (MgmtResp, error) {
	if req.Name == "" {
		return MgmtResp{}, fmt.Errorf("irm: %s: no name: %w", req.Cmd, flow.ErrInvalid)
	}
	m.mu.Lock()
	var targets []*ipcpEntry
	for _, e := range m.ipcps {
		if req.Layer == "" || e.info.Layer == req.Layer || e.info.Name == req.Layer {
			targets = append(targets, e)
		}
	}
	m.mu.Unlock()
	if len(targets) == 0 {
		return MgmtResp{}, fmt.Errorf("irm: %s %q in %q: %w", req.Cmd, req.Name, req.Layer, flow.ErrNoLayer)
	}
	var done []string
	for _, e := range targets {
		var err error
		layer := e.info.Layer
		if req.Cmd == CmdReg {
			err = m.register(ctx, req.Name, e)
			switch {
			case errors.Is(err, flow.ErrExists):
				err = nil
			case m.ready(e) != nil:
				// Recorded: made when the IPCP is back.
				err, layer = nil, layer+" (when "+e.info.Name+" is back)"
			}
		} else {
			if m.ready(e) == nil {
				cctx, cancel := m.callCtx(ctx)
				err = e.ipcp.Unregister(cctx, req.Name)
				cancel()
			}
			if err == nil {
				// Not to be registered there again on its restart.
				m.mu.Lock()
				if n := m.names[req.Name]; n != nil {
					delete(n.layers, e.info.Name)
					if len(n.layers) == 0 && len(n.sessions) == 0 {
						delete(m.names, req.Name)
					}
				}
				m.mu.Unlock()
			}
		}
		if err != nil {
			return MgmtResp{}, fmt.Errorf("irm: %s %q in %s: %w", req.Cmd, req.Name, e.info.Layer, err)
		}
		done = append(done, layer)
	}
	return MgmtResp{Text: fmt.Sprintf("%s %s: %s", req.Cmd, req.Name, strings.Join(done, ", "))}, nil
}
