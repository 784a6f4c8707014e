package irm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ouronet/ouro/layer/ipcp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/kernel"
)

const defaultCallTimeout = 5 * time.Second

// readOnly are the management commands anyone with a session may run:
// they change nothing. Every other command (reg, unreg, create, destroy,
// and IPCP commands such as bootstrap, enroll, connect) needs a
// management session.
var readOnly = map[string]bool{
	ipcp.CmdIPCPs: true, ipcp.CmdNames: true, ipcp.CmdFlows: true, ipcp.CmdSystem: true, ipcp.CmdID: true, ipcp.CmdComponents: true, ipcp.CmdKernel: true, ipcp.CmdAllocs: true, ipcp.CmdBridges: true,
	// IPCP tables and counters ("flows" is also the IPCP's own).
	"stats": true, "members": true, "routes": true, "pff": true, "dir": true, "ports": true,
	// Which of the names asked about a shim heard announced (unicast
	// IPCPs' neighbour discovery asks their lower shims).
	"heard": true,
}

// mgmtAllowed says whether session s may run req.
func (m *IRM) mgmtAllowed(s *session, req ipcp.MgmtReq) error {
	if s.mgmt || readOnly[req.Cmd] {
		return nil
	}
	// An IPCP registers its own name in the layers below it.
	if s.ipcp != nil && (req.Cmd == ipcp.CmdReg || req.Cmd == ipcp.CmdUnreg) && req.Name == s.ipcp.info.Name {
		return nil
	}
	return fmt.Errorf("irm: %s: changes the node: needs a management session (%s has none): %w", req.Cmd, s.principal, kernel.ErrRights)
}

func (m *IRM) mgmt(ctx context.Context, s *session, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if err := m.mgmtAllowed(s, req); err != nil {
		return ipcp.MgmtResp{}, err
	}
	pg, err := newPager(req)
	if err != nil {
		return ipcp.MgmtResp{}, err
	}
	switch req.Cmd {
	case ipcp.CmdIPCPs:
		return pg.page(ipcp.MgmtResp{Table: m.ipcpTable()})
	case ipcp.CmdNames:
		return m.namePage(pg)
	case ipcp.CmdFlows:
		if req.IPCP == "" {
			return m.flowPage(pg)
		}
	case ipcp.CmdReg, ipcp.CmdUnreg:
		return m.regCmd(ctx, req)
	case ipcp.CmdCreate:
		return m.create(ctx, req)
	case ipcp.CmdDestroy:
		return m.destroy(req)
	case ipcp.CmdID:
		if m.cfg.Document == nil {
			return ipcp.MgmtResp{}, fmt.Errorf("irm: identity document: %w", flow.ErrNotFound)
		}
		doc, err := m.cfg.Document(ctx)
		if err != nil {
			return ipcp.MgmtResp{}, fmt.Errorf("irm: identity document: %w", err)
		}
		return ipcp.MgmtResp{Text: base64.StdEncoding.EncodeToString(doc)}, nil
	case ipcp.CmdComponents:
		t, err := m.componentTable()
		if err != nil {
			return ipcp.MgmtResp{}, err
		}
		return pg.page(ipcp.MgmtResp{Table: t})
	case ipcp.CmdKernel:
		if m.cfg.BufTotals == nil {
			return ipcp.MgmtResp{}, fmt.Errorf("irm: kernel figures: %w", flow.ErrNotFound)
		}
		bt := m.cfg.BufTotals()
		return pg.page(ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"counter", "value"}, Rows: [][]string{
			{"bufs_granted", strconv.FormatInt(bt.Granted, 10)}, {"bufs_max", strconv.Itoa(bt.Max)},
			{"bufs_made", strconv.Itoa(bt.Made)}, {"bufs_in_use", strconv.Itoa(bt.Made - bt.Free)},
		}}})
	case ipcp.CmdAllocs:
		return pg.page(ipcp.MgmtResp{Table: m.allocs.table()})
	case ipcp.CmdBridges:
		return pg.page(ipcp.MgmtResp{Table: m.bridgeTable(ctx)}) // target.go
	case ipcp.CmdSystem:
		if m.cfg.Describe == nil {
			return ipcp.MgmtResp{}, fmt.Errorf("irm: system description: %w", flow.ErrNotFound)
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
				return ipcp.MgmtResp{}, fmt.Errorf("irm: system description: %w", err)
			}
			text = string(b)
		default:
			return ipcp.MgmtResp{}, fmt.Errorf("irm: system format %q (want table, dot, mermaid or json): %w", req.Args["format"], flow.ErrInvalid)
		}
		return pg.page(ipcp.MgmtResp{Text: text})
	}
	if req.IPCP == "" {
		return ipcp.MgmtResp{}, fmt.Errorf("irm: unknown command %q: %w", req.Cmd, flow.ErrInvalid)
	}
	e := m.ipcpByName(req.IPCP)
	if e == nil {
		return ipcp.MgmtResp{}, fmt.Errorf("irm: %s %s: no such IPCP: %w", req.Cmd, req.IPCP, flow.ErrNotFound)
	}
	if err := m.ready(e); err != nil {
		if req.Cmd == "stats" {
			// The supervisor's view is all there is while it is down.
			return pg.page(ipcp.MgmtResp{Table: ipcp.Table{Columns: []string{"counter", "value"}, Rows: m.supervisionRows(e)}})
		}
		return ipcp.MgmtResp{}, fmt.Errorf("irm: %s %s: %w", req.Cmd, req.IPCP, err)
	}
	cctx, cancel := m.callCtx(ctx, e)
	defer cancel()
	// The IPCP's component pages its own answers (ServeIPCP).
	resp, err := e.ipcp.Mgmt(cctx, req)
	if err == nil && req.Cmd == "stats" && pg.off == 0 && resp.Next == 0 {
		// Its supervision counters lead a one-page answer, if they fit
		// (they are in "ipcps" too).
		with := resp
		with.Table.Rows = append(m.supervisionRows(e), resp.Table.Rows...)
		if with.Total != 0 {
			with.Total += len(with.Table.Rows) - len(resp.Table.Rows)
		}
		if n, err := pg.size(with); err == nil && n <= pg.budget {
			resp = with
		}
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

func (m *IRM) ipcpTable() ipcp.Table {
	m.mu.Lock()
	entries := append([]*ipcpEntry(nil), m.ipcps...)
	m.mu.Unlock()
	t := ipcp.Table{Columns: []string{"name", "layer", "kind", "state", "restarts", "last_fault"}}
	for _, e := range entries {
		info := e.info
		if err := m.ready(e); err == nil {
			ctx, cancel := m.ipcpCtx(context.Background(), e, time.Second)
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

// namePage lists names, their bindings and the layers they are
// registered in, a page at a time.
func (m *IRM) namePage(pg pager) (ipcp.MgmtResp, error) {
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
func (m *IRM) flowPage(pg pager) (ipcp.MgmtResp, error) {
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
	return pg.rows([]string{"id", "local", "remote", "layer", "cube", "max_sdu", "age", "sealed_with"}, len(ids), func(i int) []string {
		f := m.flows[ids[i]]
		peer := "-"
		if p := f.info.Peer; p != nil {
			peer = p.Name + " " + p.ID
			if p.AEAD != "" {
				peer += " " + p.AEAD
			}
		}
		return []string{
			strconv.FormatUint(ids[i], 10), f.info.Local, f.info.Remote, f.info.Layer,
			f.info.QoS.Cube().String(), strconv.Itoa(f.info.SDULimit()), now.Sub(f.started).Truncate(time.Millisecond).String(), peer,
		}
	})
}

func (m *IRM) regCmd(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	if req.Name == "" {
		return ipcp.MgmtResp{}, fmt.Errorf("irm: %s: no name: %w", req.Cmd, flow.ErrInvalid)
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
		return ipcp.MgmtResp{}, fmt.Errorf("irm: %s %q in %q: %w", req.Cmd, req.Name, req.Layer, flow.ErrNoLayer)
	}
	var done []string
	for _, e := range targets {
		var err error
		layer := e.info.Layer
		if req.Cmd == ipcp.CmdReg {
			err = m.register(ctx, req.Name, e)
			switch {
			case errors.Is(err, flow.ErrExists):
				err = nil
			case errors.Is(err, errPending):
				// Recorded: made when the IPCP is back.
				err, layer = nil, layer+" (when "+e.info.Name+" is back)"
			}
		} else {
			if m.ready(e) == nil {
				cctx, cancel := m.callCtx(ctx, e)
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
			return ipcp.MgmtResp{}, fmt.Errorf("irm: %s %q in %s: %w", req.Cmd, req.Name, e.info.Layer, err)
		}
		done = append(done, layer)
	}
	return ipcp.MgmtResp{Text: fmt.Sprintf("%s %s: %s", req.Cmd, req.Name, strings.Join(done, ", "))}, nil
}

// componentTable is the "components" table: every component of the
// system description, its kernel counters and, for the components the
// IRM supervises, its supervision state.
func (m *IRM) componentTable() (ipcp.Table, error) {
	if m.cfg.Describe == nil || m.cfg.ComponentStats == nil {
		return ipcp.Table{}, fmt.Errorf("irm: components: %w", flow.ErrNotFound)
	}
	t := ipcp.Table{Columns: []string{"name", "state", "incarnations", "faults", "bufs", "bufs_limit", "objects", "objects_limit", "byte_rate", "supervised", "last_fault"}}
	// By the name of the component each supervision record's cap names
	// (an IPCP's component is not called as the IPCP is).
	sup := make(map[string]supervised)
	m.mu.Lock()
	pd := m.pd
	all := make([]supervised, 0, len(m.ipcps)+len(m.children))
	for _, e := range m.ipcps {
		all = append(all, e.sup)
	}
	for _, c := range m.children {
		all = append(all, *c)
	}
	m.mu.Unlock()
	for _, x := range all {
		name := x.name
		if x.comp != 0 && pd != nil {
			if ci, err := pd.Inspect(x.comp); err == nil {
				name = ci.Object
			}
		}
		sup[name] = x
	}
	itoa := strconv.Itoa
	for _, c := range m.cfg.Describe().Components {
		s, err := m.cfg.ComponentStats(c.Name)
		if err != nil {
			continue // destroyed since Describe
		}
		supState, last := "-", "-"
		if x, ok := sup[c.Name]; ok {
			supState = x.state
			if x.lastFault != "" {
				last = fmt.Sprintf("%s (%v ago)", x.lastFault, time.Since(x.lastFaultAt).Round(time.Millisecond))
			}
		}
		t.Rows = append(t.Rows, []string{c.Name, s.State, itoa(s.Incarnations), itoa(s.Faults),
			itoa(s.Budget.Bufs), itoa(s.Budget.Limit.Bufs), itoa(s.Budget.Objects), itoa(s.Budget.Limit.Objects),
			strconv.FormatInt(int64(s.Budget.Limit.ByteRate), 10), supState, last})
	}
	return t, nil
}
