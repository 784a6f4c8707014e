package unicast

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/crypto/admission"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast/dir"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/enroll"
	"github.com/ouronet/ouro/layer/unicast/routing"
)

// Management commands of a unicast IPCP (ipcp.Manager).
const (
	CmdBootstrap = "bootstrap" // args: admission (required), hash, addr_width, routing, ca, dir, hello (ms), dead
	CmdEnroll    = "enroll"    // args: via=<member IPCP name>
	CmdConnect   = "connect"   // args: neighbour=<IPCP name>
	CmdMembers   = "members"
	CmdRoutes    = "routes"
	CmdPFF       = "pff"
	CmdDir       = "dir"
	CmdFlows     = "flows"
	CmdPorts     = "ports" // the N-1 data-transfer flows: what waits in their queues and rings
	CmdStats     = "stats"
	CmdCRL       = "crl"       // args: crl=<base64 of a signed revocation list>: adopt it and pass it on
	CmdCapture   = capture.Cmd // args: op=start|read|stop, ...: the packets on the N-1 data-transfer flows (layer/capture)
)

// ParseLayerConfig reads a bootstrap's layer configuration keys (the
// bootstrap command's arguments, the TOML table's): admission (a policy
// in crypto/admission's text form: "open", "allow key=HEX ...",
// "authority authority=HEX ...", each optionally with measurement=HEX),
// hash, addr_width, routing, ca, dir, hello (ms), dead. Unknown keys are
// an error; so is a missing admission: open must be chosen.
func ParseLayerConfig(args map[string]string) (enroll.Config, error) {
	var c enroll.Config
	for k, v := range args {
		var err error
		switch k {
		case "hash":
			c.Hash, err = layer.ParseHashAlgo(v)
		case "addr_width":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 8)
			c.AddrWidth = uint8(n)
		case "routing":
			c.Routing = v
		case "ca":
			c.CA = v
		case "dir":
			c.Dir = v
		case "hello":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			c.Hello = uint32(n)
		case "dead":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			c.Dead = uint32(n)
		case "admission":
			c.Admission, err = admission.Parse(v)
		case "names":
			c.Names = v
		default:
			err = fmt.Errorf("unknown key (want admission, names, hash, addr_width, routing, ca, dir, hello, dead)")
		}
		if err != nil {
			return c, fmt.Errorf("unicast: layer config %s=%q: %v: %w", k, v, err, flow.ErrInvalid)
		}
	}
	if c.Admission.Mode == admission.ModeNone {
		return c, fmt.Errorf("unicast: layer config: no admission policy (choose admission=open, allow or authority): %w", flow.ErrInvalid)
	}
	return c, nil
}

// Mgmt implements ipcp.Manager.
func (p *IPCP) Mgmt(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
	switch req.Cmd {
	case CmdBootstrap:
		lc, err := ParseLayerConfig(req.Args)
		if err != nil {
			return ipcp.MgmtResp{}, err
		}
		if err := p.bootstrap(lc); err != nil {
			return ipcp.MgmtResp{}, err
		}
		return ipcp.MgmtResp{Text: fmt.Sprintf("%s: bootstrapped layer %s, address %d", p.cfg.Name, p.cfg.Layer, p.Addr())}, nil
	case CmdEnroll:
		via := req.Args["via"]
		if via == "" {
			via = req.Name
		}
		if via == "" {
			return ipcp.MgmtResp{}, fmt.Errorf("unicast: enroll: no via=<member>: %w", flow.ErrInvalid)
		}
		if err := p.enrollVia(ctx, via); err != nil {
			return ipcp.MgmtResp{}, err
		}
		return ipcp.MgmtResp{Text: fmt.Sprintf("%s: enrolled in %s via %s, address %d", p.cfg.Name, p.cfg.Layer, via, p.Addr())}, nil
	case CmdConnect:
		n := req.Args["neighbour"]
		if n == "" {
			n = req.Name
		}
		if n == "" {
			return ipcp.MgmtResp{}, fmt.Errorf("unicast: connect: no neighbour=<name>: %w", flow.ErrInvalid)
		}
		if err := p.Connect(n); err != nil {
			return ipcp.MgmtResp{}, err
		}
		return ipcp.MgmtResp{Text: fmt.Sprintf("%s: connecting %s", p.cfg.Name, n)}, nil
	case CmdStats:
		return ipcp.MgmtResp{Table: p.statsTable()}, nil
	case CmdCapture:
		return p.c.capt.Mgmt(p.cfg.Name, capture.LayerUnicast, req.Args)
	}
	c := p.core.Load()
	if c == nil {
		switch req.Cmd {
		case CmdMembers, CmdRoutes, CmdPFF, CmdDir, CmdFlows, CmdPorts, CmdGraph, CmdCRL:
			return ipcp.MgmtResp{}, fmt.Errorf("unicast: %s: %s: not a member yet: %w", p.cfg.Name, req.Cmd, flow.ErrNotFound)
		}
		return ipcp.MgmtResp{}, fmt.Errorf("unicast: unknown command %q: %w", req.Cmd, flow.ErrInvalid)
	}
	switch req.Cmd {
	case CmdCRL:
		b, err := base64.StdEncoding.DecodeString(req.Args["crl"])
		if err != nil || len(b) == 0 {
			return ipcp.MgmtResp{}, fmt.Errorf("unicast: crl: want crl=<base64 of a revocation list>: %w", flow.ErrInvalid)
		}
		if err := c.adoptCRL(b); err != nil {
			return ipcp.MgmtResp{}, fmt.Errorf("unicast: %s: crl: %w", p.cfg.Name, err)
		}
		return ipcp.MgmtResp{Text: fmt.Sprintf("%s: revocation list adopted and passed to %d neighbours", p.cfg.Name, len(c.cm.Neighbours()))}, nil
	case CmdMembers:
		return ipcp.MgmtResp{Table: c.membersTable()}, nil
	case CmdRoutes:
		return ipcp.MgmtResp{Table: c.routesTable()}, nil
	case CmdPFF:
		return ipcp.MgmtResp{Table: c.pffTable()}, nil
	case CmdDir:
		return ipcp.MgmtResp{Table: c.dirTable()}, nil
	case CmdGraph:
		g, err := c.graph(req.Args["format"])
		if err != nil {
			return ipcp.MgmtResp{}, err
		}
		return ipcp.MgmtResp{Text: g}, nil
	case CmdFlows:
		return ipcp.MgmtResp{Table: c.flowsTable()}, nil
	case CmdPorts:
		return ipcp.MgmtResp{Table: c.portsTable()}, nil
	}
	return ipcp.MgmtResp{}, fmt.Errorf("unicast: unknown command %q (want bootstrap, enroll, connect, members, routes, pff, dir, flows, ports, graph, crl, capture or stats): %w", req.Cmd, flow.ErrInvalid)
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }

func addrs(as []layer.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = u64(uint64(a))
	}
	return strings.Join(s, ",")
}

func (c *core) membersTable() ipcp.Table {
	t := ipcp.Table{Columns: []string{"addr", "name", "neighbour", "links", "seq"}}
	nbrs := make(map[layer.Addr]bool)
	for _, n := range c.cm.Neighbours() {
		nbrs[n.Addr] = true
	}
	names := c.names()
	for _, l := range c.router.Database() {
		nb := ""
		switch {
		case l.Origin == c.self:
			nb = "self"
		case nbrs[l.Origin]:
			nb = "yes"
		}
		t.Rows = append(t.Rows, []string{u64(uint64(l.Origin)), names[l.Origin], nb, strconv.Itoa(len(l.Links)), u64(l.Seq)})
	}
	return t
}

// names returns the members' IPCP names by address: from their signed
// link-state updates, else as this IPCP learnt them (enrollment,
// adjacencies).
func (c *core) names() map[layer.Addr]string {
	c.p.mu.Lock()
	names := make(map[layer.Addr]string, len(c.p.peers))
	for a, n := range c.p.peers {
		names[a] = n
	}
	c.p.mu.Unlock()
	for _, l := range c.router.Database() {
		if l.Name != "" {
			names[l.Origin] = l.Name
		}
	}
	return names
}

// routesTable lists the routes, with the members' names beside their
// addresses.
func (c *core) routesTable() ipcp.Table {
	t := ipcp.Table{Columns: []string{"dst", "name", "metric", "next_hops", "via", "alternate"}}
	names := c.names()
	for _, r := range c.router.Routes() {
		alt := ""
		if r.Alternate != 0 {
			alt = u64(uint64(r.Alternate))
		}
		via := make([]string, len(r.NextHops))
		for i, h := range r.NextHops {
			via[i] = names[h]
		}
		t.Rows = append(t.Rows, []string{u64(uint64(r.Dst)), names[r.Dst], u64(r.Metric), addrs(r.NextHops), strings.Join(via, ","), alt})
	}
	return t
}

func (c *core) pffTable() ipcp.Table {
	t := ipcp.Table{Columns: []string{"dst", "ports", "neighbours"}}
	ports := *c.ports.Load()
	for _, r := range c.router.Routes() {
		hops := c.pff.NextHops(r.Dst)
		ps, ns := make([]string, len(hops)), make([]string, len(hops))
		for i, h := range hops {
			ps[i] = u64(uint64(h))
			if np := ports[h]; np != nil {
				ns[i] = np.Name
			}
		}
		t.Rows = append(t.Rows, []string{u64(uint64(r.Dst)), strings.Join(ps, ","), strings.Join(ns, ",")})
	}
	return t
}

func (c *core) dirTable() ipcp.Table {
	t := ipcp.Table{Columns: []string{"hash", "name", "addrs", "local"}}
	l, ok := c.dir.(dir.Lister)
	if !ok {
		return t
	}
	for _, e := range l.Entries() {
		name, _ := c.Name(e.Hash)
		t.Rows = append(t.Rows, []string{e.Hash.String(), name, addrs(e.Addrs), strconv.FormatBool(e.Local)})
	}
	return t
}

// sealedWith is a flow's verified peer for the flows table: "-" when
// the flow is not sealed.
func sealedWith(p *flow.Peer) string {
	if p == nil {
		return "-"
	}
	return p.Name + " " + p.ID
}

func (c *core) flowsTable() ipcp.Table {
	t := ipcp.Table{Columns: []string{"eid", "peer", "peer_eid", "name", "dir", "cube", "pkts_in", "bytes_in", "pkts_out", "bytes_out", "drops", "rate", "queued_out", "queued_in", "age", "sealed_with"}}
	for _, f := range c.fa.Flows() {
		dir := "in"
		if f.Out {
			dir = "out"
		}
		out, in := c.flowQueued(f.EID)
		t.Rows = append(t.Rows, []string{
			u64(uint64(f.EID)), u64(uint64(f.Remote)), u64(uint64(f.RemoteEID)), f.Name, dir, f.Cube.String(),
			u64(f.PktsIn), u64(f.BytesIn), u64(f.PktsOut), u64(f.BytesOut), u64(f.Drops), u64(f.Rate),
			out, in, f.Age.Truncate(time.Millisecond).String(), sealedWith(f.Peer),
		})
	}
	return t
}

// flowQueued says what waits now at flow eid's two ends in this node:
// out, the SDUs its program (or bridge) wrote that the layer has not
// taken yet (the port's receive ring: where a flow paced by its
// congestion avoidance holds what it may not send yet); in, those the
// layer delivered that the program has not read (the flow's delivery
// queue and the port's transmit ring). "-" where the port does not say
// (a program's socket).
func (c *core) flowQueued(eid layer.EID) (out, in string) {
	f := c.fa.Lookup(eid)
	if f == nil {
		return "-", "-"
	}
	out, in = "-", "-"
	if bl, ok := f.Port.(dt.Backlogger); ok {
		out = strconv.Itoa(bl.Backlog())
	}
	n := 0
	if d, _ := f.Data.Load().(*delivery); d != nil {
		n = d.len()
	}
	if q, ok := f.Port.(dt.Queuer); ok {
		in = strconv.Itoa(n + q.Queued())
	} else if n > 0 {
		in = strconv.Itoa(n)
	}
	return out, in
}

// portsTable lists the N-1 data-transfer flows, one per neighbour: what
// waits in the port's queue for the flow (queued, of queue_cap per cube,
// room for forwarded bursts beyond it), in the flow's transmit ring to
// the layer below (below) and in its receive ring from it (backlog),
// and the packets each way: where a standing queue on the way to a
// neighbour is. "-" where the flow does not say.
func (c *core) portsTable() ipcp.Table {
	t := ipcp.Table{Columns: []string{"kind", "name", "addr", "port", "queued", "queue_cap", "below", "backlog", "pkts_in", "pkts_out", "tx_errors"}}
	ports := *c.ports.Load()
	ids := slices.Sorted(maps.Keys(ports))
	for _, id := range ids {
		np := ports[id]
		queued := 0
		for cube := range flow.NumCubes {
			queued += np.Sched.Len(flow.Cube(cube))
		}
		below, backlog := "-", "-"
		if q, ok := np.Flow.(dt.Queuer); ok {
			below = strconv.Itoa(q.Queued())
		}
		if bl, ok := np.Flow.(dt.Backlogger); ok {
			backlog = strconv.Itoa(bl.Backlog())
		}
		t.Rows = append(t.Rows, []string{
			"neighbour", np.Name, u64(uint64(np.Addr)), u64(uint64(np.ID)),
			strconv.Itoa(queued), strconv.Itoa(np.Sched.Cap()), below, backlog,
			u64(np.RxPkts.Load()), u64(np.TxPkts.Load()), u64(np.TxErrors.Load()),
		})
	}
	return t
}

// Stats is a snapshot of the IPCP's counters.
type Stats struct {
	State     string
	Addr      layer.Addr
	Members   int
	Neighbour int
	// Data path.
	Sent, Delivered, Forwarded uint64
	Drops                      map[string]uint64 // by reason
	CtlIn, CtlOut, BufAllocs   uint64
	// Keepalives on idle N-1 data-transfer flows, sent and received.
	KeepalivesOut, KeepalivesIn uint64
	// Packets marked congested (ECN, package ca): leaving an N-1 port's
	// queue (MarkedQueue), read from an N-1 port whose ring from the
	// layer below is backlogged (MarkedRx), delivered into, or refused
	// by, a flow's filling ring to its program (MarkedDeliver); and the
	// marks of an N-1 port's queue told to this node's own flows at once
	// instead of written into their packets (MarkedLocal).
	MarkedQueue, MarkedRx, MarkedDeliver, MarkedLocal uint64
	// Parts.
	FlowsActive                    int
	AllocOK, AllocFailed, Accepted uint64
	PeerGone, Deallocs             uint64
	Ups, Downs, DeadTimeouts       uint64
	HeardByData                    uint64 // hello silences bridged by dt traffic
	LSUsSent, LSUsReceived         uint64
	Computations                   uint64
	Enrolled                       uint64
	Discovered                     uint64 // neighbours connected to by discovery (Config.Discover)
	Forgotten                      uint64 // discovered neighbours given up once no longer heard
	Dials                          uint64 // adjacency dials made
	// Refused are the enrollments this IPCP refused, by reason
	// (unknown_key, bad_signature, expired, measurement, ...).
	Refused map[string]uint64
	// Checks are the other refusals of the layer's trust checks: link-
	// state updates (routing.*), adjacencies (adjacencies.auth_refused)
	// and the directory's records (dir.*).
	Checks map[string]uint64
}

// Stats returns the IPCP's counters.
func (p *IPCP) Stats() Stats {
	s := Stats{State: stateNames[p.state.Load()], Drops: map[string]uint64{}, Refused: map[string]uint64{}, Checks: map[string]uint64{}}
	p.refused.snapshot(s.Refused)
	k := &p.c
	s.Sent, s.Delivered, s.CtlIn, s.CtlOut, s.BufAllocs = k.sent.Load(), k.delivered.Load(), k.ctlIn.Load(), k.ctlOut.Load(), k.bufAllocs.Load()
	s.KeepalivesOut, s.KeepalivesIn = k.keepalivesOut.Load(), k.keepalivesIn.Load()
	s.MarkedQueue, s.MarkedRx, s.MarkedDeliver = k.markedQueue.Load(), k.markedRx.Load(), k.markedDeliver.Load()
	s.MarkedLocal = k.markedLocal.Load()
	for name, v := range map[string]*atomic.Uint64{
		"no_port": &k.noPort, "no_route_local": &k.noRoute, "unknown_eid": &k.unknownEID, "rx_full": &k.rxFull,
		"too_big": &k.tooBig, "ctl_full": &k.ctlFull, "truncated": &k.truncated, "tx_error": &k.txErrors,
		"malformed_ctl": &k.malformedCtl, "unknown_ctl": &k.unknownCtl, "no_buf": &k.noBuf,
	} {
		s.Drops[name] = v.Load()
	}
	c := p.core.Load()
	if c == nil {
		return s
	}
	s.Addr = c.self
	fc := c.fwd.Counters()
	s.Forwarded = fc.Forwarded.Load()
	for r := dt.Reason(1); r < dt.NumReasons; r++ {
		s.Drops[r.String()] += fc.Drops[r].Load()
	}
	for _, np := range *c.ports.Load() {
		sc := np.Sched.Counters()
		for cube := range sc.Drops {
			s.Drops[dt.QueueFull.String()] += sc.Drops[cube].Load()
		}
	}
	fs := c.fa.Stats()
	s.FlowsActive, s.AllocOK, s.AllocFailed, s.Accepted, s.PeerGone, s.Deallocs = fs.Active, fs.AllocOK, fs.AllocFailed, fs.Accepted, fs.PeerGone, fs.Deallocs
	cs := c.cm.Stats()
	s.Ups, s.Downs, s.DeadTimeouts, s.HeardByData = cs.Ups, cs.Downs, cs.DeadTimeouts, cs.HeardByData
	rs := c.router.Stats()
	s.LSUsSent, s.LSUsReceived, s.Computations, s.Members = rs.LSUsSent, rs.LSUsReceived, rs.Computations, rs.Entries
	s.Neighbour = len(c.cm.Neighbours())
	s.Checks["routing.bad_sig"], s.Checks["routing.unbound"], s.Checks["routing.key_mismatch"] = rs.BadSig, rs.Unbound, rs.KeyMismatch
	s.Checks["routing.too_many_origins"], s.Checks["routing.sign_failures"] = rs.TooMany, rs.SignFailures
	s.Checks["routing.penalised"] = rs.Penalised // LSUs of a neighbour that sent a bad signature, dropped unchecked
	s.Checks["adjacencies.auth_refused"] = cs.AuthRefused
	sealStats := c.fa.Stats()
	s.Checks["seal.flows"], s.Checks["seal.kex_failed"] = sealStats.Sealed, sealStats.KexFailed
	s.Checks["seal.resumed"], s.Checks["seal.no_ticket"] = sealStats.Resumed, sealStats.NoTicket
	s.Checks["seal.tampered"], s.Checks["seal.replayed"] = c.p.c.tampered.Load(), c.p.c.replayed.Load()
	var rekeys uint64 // of the flows open now
	for _, f := range c.fa.Flows() {
		rekeys += f.Rekeys
	}
	s.Checks["seal.rekeys"] = rekeys
	if dc, ok := c.dir.(dir.Counters); ok {
		for k, v := range dc.Counters() {
			s.Checks["dir."+k] = v
		}
	}
	s.Enrolled = c.enrolled.Load()
	s.Discovered, s.Forgotten, s.Dials = c.discovered.Load(), c.forgotten.Load(), cs.Dials
	return s
}

func (p *IPCP) statsTable() ipcp.Table {
	s := p.Stats()
	t := ipcp.Table{Columns: []string{"counter", "value"}}
	add := func(k string, v uint64) { t.Rows = append(t.Rows, []string{k, u64(v)}) }
	t.Rows = append(t.Rows, []string{"state", s.State})
	add("addr", uint64(s.Addr))
	add("members", uint64(s.Members))
	add("neighbours", uint64(s.Neighbour))
	add("sent", s.Sent)
	add("delivered", s.Delivered)
	add("forwarded", s.Forwarded)
	keys := make([]string, 0, len(s.Drops))
	for k := range s.Drops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		add("drops."+k, s.Drops[k])
	}
	add("ctl_in", s.CtlIn)
	add("ctl_out", s.CtlOut)
	add("buf_allocs", s.BufAllocs)
	add("keepalives_out", s.KeepalivesOut)
	add("keepalives_in", s.KeepalivesIn)
	add("marked.queue", s.MarkedQueue)
	add("marked.rx", s.MarkedRx)
	add("marked.deliver", s.MarkedDeliver)
	add("marked.local", s.MarkedLocal)
	add("flows.active", uint64(s.FlowsActive))
	add("flows.alloc_ok", s.AllocOK)
	add("flows.alloc_failed", s.AllocFailed)
	add("flows.accepted", s.Accepted)
	add("flows.peer_gone", s.PeerGone)
	add("flows.deallocs", s.Deallocs)
	add("adjacencies.ups", s.Ups)
	add("adjacencies.downs", s.Downs)
	add("adjacencies.dead_timeouts", s.DeadTimeouts)
	add("adjacencies.heard_by_data", s.HeardByData)
	add("adjacencies.discovered", s.Discovered)
	add("adjacencies.forgotten", s.Forgotten)
	add("adjacencies.dials", s.Dials)
	add("routing.lsus_sent", s.LSUsSent)
	add("routing.lsus_received", s.LSUsReceived)
	add("routing.computations", s.Computations)
	add("members_enrolled", s.Enrolled) // by this IPCP; its own enrollment is "state"
	keys = keys[:0]
	for k := range s.Refused {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		add("refused."+k, s.Refused[k])
	}
	keys = keys[:0]
	for k := range s.Checks {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		add("checks."+k, s.Checks[k])
	}
	return t
}

// NextHops returns the forwarding table's next hops to dst as neighbour
// names, in order of preference (tests and tools).
func (p *IPCP) NextHops(dst layer.Addr) []string {
	c := p.core.Load()
	if c == nil {
		return nil
	}
	ports := *c.ports.Load()
	var out []string
	for _, h := range c.pff.NextHops(dst) {
		if np := ports[h]; np != nil {
			out = append(out, np.Name)
		}
	}
	return out
}

// Routes returns the last computed routes (nil before membership).
func (p *IPCP) Routes() []routing.Route {
	c := p.core.Load()
	if c == nil {
		return nil
	}
	return c.router.Routes()
}
