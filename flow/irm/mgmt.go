package irm

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ouronet/ouro/flow"
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
	CmdSystem = "system" // the kernel's system description; Args["format"]: table, dot, mermaid or json
)

func (m *IRM) mgmt(ctx context.Context, req MgmtReq) (MgmtResp, error) {
	pg, err := newPager(req)
	if err != nil {
		return MgmtResp{}, err
	}
	switch req.Cmd {
	case CmdIPCPs:
		return pg.page(MgmtResp{Table: m.ipcpTable()})
	case CmdNames:
		return m.namePage(pg)
	case CmdFlows:
		return m.flowPage(pg)
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
		var text string
		switch req.Args["format"] {
		case "", "table":
			text = sys.Table()
		case "dot":
			text = sys.Dot()
		case "mermaid":
			text = sys.Mermaid()
		case "json":
			b, err := json.Marshal(sys)
			if err != nil {
				return MgmtResp{}, fmt.Errorf("irm: system description: %w", err)
			}
			text = string(b)
		default:
			return MgmtResp{}, fmt.Errorf("irm: system format %q (want table, dot, mermaid or json): %w", req.Args["format"], flow.ErrInvalid)
		}
		return pg.page(MgmtResp{Text: text})
	}
	if req.IPCP == "" {
		return MgmtResp{}, fmt.Errorf("irm: unknown command %q: %w", req.Cmd, flow.ErrInvalid)
	}
	e := m.ipcpByName(req.IPCP)
	if e == nil {
		return MgmtResp{}, fmt.Errorf("irm: %s %s: no such IPCP: %w", req.Cmd, req.IPCP, flow.ErrNotFound)
	}
	// The IPCP's component pages its own answers (ServeIPCP).
	return e.ipcp.Mgmt(ctx, req)
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
	t := Table{Columns: []string{"name", "layer", "kind", "state"}}
	for _, e := range entries {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := e.ipcp.Info(ctx)
		cancel()
		if err != nil {
			info = e.info
			info.State = "unreachable"
		}
		t.Rows = append(t.Rows, []string{info.Name, info.Layer, info.Kind, info.State})
	}
	return t
}

// namePage lists names, their bindings and the layers they are
// registered in, a page at a time.
func (m *IRM) namePage(pg pager) (MgmtResp, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.names))
	for n := range m.names {
		names = append(names, n)
	}
	sort.Strings(names)
	return pg.rows([]string{"name", "bound", "layers"}, len(names), func(i int) []string {
		e := m.names[names[i]]
		layers := make([]string, 0, len(e.layers))
		for l := range e.layers {
			layers = append(layers, l)
		}
		sort.Strings(layers)
		return []string{names[i], strconv.Itoa(len(e.sessions)), strings.Join(layers, ",")}
	})
}

// flowPage lists the flows the IRM brokered that are still open, a page
// at a time; the first page first forgets the flows both ends closed.
func (m *IRM) flowPage(pg pager) (MgmtResp, error) {
	if pg.off == 0 {
		m.collect()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]uint64, 0, len(m.flows))
	for id := range m.flows {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	now := time.Now()
	return pg.rows([]string{"id", "local", "remote", "layer", "cube", "age"}, len(ids), func(i int) []string {
		f := m.flows[ids[i]]
		return []string{
			strconv.FormatUint(ids[i], 10), f.info.Local, f.info.Remote, f.info.Layer,
			f.info.QoS.Cube().String(), now.Sub(f.started).Truncate(time.Millisecond).String(),
		}
	})
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
		if req.Cmd == CmdReg {
			err = m.register(ctx, req.Name, e)
		} else {
			err = e.ipcp.Unregister(ctx, req.Name)
			if err == nil {
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
		done = append(done, e.info.Layer)
	}
	return MgmtResp{Text: fmt.Sprintf("%s %s: %s", req.Cmd, req.Name, strings.Join(done, ", "))}, nil
}
