package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/prom"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testNode is a node with a local shim and a UDP shim, an echo app, a
// component that faults once, the socket gateway and the metrics server.
type testNode struct {
	n    *node.Node
	m    *Server
	sock string
}

func startNode(t *testing.T) testNode {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "node.sock")
	cfg, err := node.ParseConfig([]byte(`
[node]
name = "a"
metrics = "127.0.0.1:0"
[[ipcp]]
kind = "local"
bufs = 1024
[[ipcp]]
kind = "udp"
[ipcp.udp]
addr = "127.0.0.1:0"
[[ipcp]]
name = "a.bc"
kind = "broadcast"
layer = "bc"
[ipcp.broadcast]
lower = ["local"]
[[app]]
kind = "echo"
`))
	if err != nil {
		t.Fatal(err)
	}
	apps, err := node.Apps(cfg, node.AppEnv{Log: logx.Test(t)})
	if err != nil {
		t.Fatal(err)
	}
	var n *node.Node
	m := New(Config{Addr: cfg.Node.Metrics, Log: logx.Test(t)})
	var faulted atomic.Bool
	boom := node.Extra{Name: "boom", Program: func(pd *kernel.PD) error {
		if faulted.CompareAndSwap(false, true) {
			panic("boom: the first incarnation faults")
		}
		<-pd.Context().Done()
		return nil
	}}
	extras := append([]node.Extra{node.GatewayWith(sock, cfg.GatewayOptions(), logx.Test(t)), m.Extra(), boom}, apps...)
	if n, err = node.New(cfg, extras...); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return testNode{n: n, m: m, sock: sock}
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, m *Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + m.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: content type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include want, and whether there is exactly one such sample.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var got []float64
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Untyped != nil:
			got = append(got, m.Untyped.GetValue())
		case m.Gauge != nil:
			got = append(got, m.Gauge.GetValue())
		case m.Counter != nil:
			got = append(got, m.Counter.GetValue())
		case m.Histogram != nil:
			got = append(got, float64(m.Histogram.GetSampleCount()))
		}
	}
	if len(got) != 1 {
		return 0, false
	}
	return got[0], true
}

// ouroMgmt runs a management command over the node socket, as the ouro
// tool does ("ouro stats IPCP" is MgmtReq{Cmd: "stats", IPCP: IPCP};
// tools/ouro/main_test.go), with every page.
func ouroMgmt(t *testing.T, c *flow.SocketBroker, req ipcp.MgmtReq) ipcp.Table {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var all ipcp.Table
	for next := 0; ; {
		r := req
		r.Args = map[string]string{ipcp.ArgOffset: strconv.Itoa(next)}
		var resp ipcp.MgmtResp
		if err := c.Mgmt(ctx, r, &resp); err != nil {
			t.Fatalf("%s %s: %v", req.Cmd, req.IPCP, err)
		}
		all.Columns = resp.Table.Columns
		all.Rows = append(all.Rows, resp.Table.Rows...)
		if resp.Next == 0 {
			return all
		}
		next = resp.Next
	}
}

// allocEcho allocates a flow to the node's echo app. The app binds its
// name after the node starts: the allocation waits until "ouro names"
// shows it bound and registered in the local layer (an allocation made before would fail and be counted in
// the allocation histogram, which TestScrapeMatchesStats checks).
func allocEcho(t *testing.T, ctx context.Context, c *flow.SocketBroker) (flow.Port, flow.Info) {
	t.Helper()
	for {
		names := ouroMgmt(t, c, ipcp.MgmtReq{Cmd: ipcp.CmdNames})
		bound := false
		for _, r := range names.Rows {
			bound = bound || r[0] == "echo" && r[1] != "0" && strings.Contains(r[2], "a.local") // bound and registered
		}
		if bound {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("echo not bound: %v", names.Rows)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, info, err := c.Alloc(ctx, "echo", flow.BestEffort())
	if err != nil {
		t.Fatalf("alloc echo: %v", err)
	}
	return p, info
}

// TestScrapeMatchesStats allocates a flow through the socket, pings over
// it, then, idle, checks every number "ouro stats" shows for every IPCP,
// and every per-flow counter of its flow table, against one scrape of
// /metrics taken between two "ouro stats" answers that agree.
func TestScrapeMatchesStats(t *testing.T) {
	tn := startNode(t)
	c, err := flow.Dial(tn.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// boom faulted at boot; wait for the IRM to restart it (back-off).
	for deadline := time.Now().Add(10 * time.Second); ; {
		s, err := tn.n.Kernel().Stats("boom")
		if err == nil && s.Incarnations == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("boom not restarted: %+v, %v", s, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	p, info := allocEcho(t, ctx, c)
	defer p.Close()
	buf := make([]byte, 1500)
	const pings = 7
	for i := range pings {
		msg := fmt.Appendf(nil, "ping %d", i)
		if err := p.Write(msg, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := p.Read(buf, time.Now().Add(5*time.Second))
		if err != nil || string(buf[:n]) != string(msg) {
			t.Fatalf("echo %d: %q, %v", i, buf[:n], err)
		}
	}
	if _, _, err := c.Alloc(ctx, "nobody", flow.BestEffort()); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("alloc of an unbound name: %v, want ErrNotFound", err)
	}

	ipcps := ouroMgmt(t, c, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if len(ipcps.Rows) != 3 {
		t.Fatalf("ouro ipcps: %v, want 3 IPCPs", ipcps.Rows)
	}
	// A member of the broadcast layer: a port in a.bc's "ports" table.
	bc, _, err := c.Join(ctx, "bc")
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	for i := range 3 {
		if err := bc.Write(fmt.Appendf(nil, "flood %d", i), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	type snapshot map[string]ipcp.Table // "stats IPCP", "flows IPCP"
	take := func() snapshot {
		s := snapshot{}
		for _, r := range ipcps.Rows {
			s["stats "+r[0]] = ouroMgmt(t, c, ipcp.MgmtReq{Cmd: "stats", IPCP: r[0]})
			if r[2] == "broadcast" { // members, not flows: its "ports"
				s["ports "+r[0]] = ouroMgmt(t, c, ipcp.MgmtReq{Cmd: "ports", IPCP: r[0]})
			} else {
				s["flows "+r[0]] = ouroMgmt(t, c, ipcp.MgmtReq{Cmd: "flows", IPCP: r[0]})
			}
		}
		return s
	}
	var before, after snapshot
	var fams map[string]*dto.MetricFamily
	for try := 0; ; try++ {
		before = take()
		fams = scrape(t, tn.m)
		after = take()
		if counters(before) == counters(after) {
			break
		}
		if try == 20 {
			t.Fatalf("the node never went idle: ouro stats moved across every scrape:\n%v\n%v", before, after)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Nothing was dropped: the HTTP handler continues past a collector's
	// error (and only logs it); Gather reports it.
	if _, err := tn.m.reg.Gather(); err != nil {
		t.Errorf("gather: %v", err)
	}
	checked, flowTables, ports := 0, 0, 0
	for _, r := range ipcps.Rows {
		proc, layer := r[0], r[1]
		labels := map[string]string{"ipcp": proc, "layer": layer}
		if _, ok := value(fams, "ouro_ipcp_info", map[string]string{"ipcp": proc, "layer": layer, "kind": r[2], "state": r[3]}); !ok {
			t.Errorf("no ouro_ipcp_info for %v", r)
		}
		for _, row := range after["stats "+proc].Rows {
			want, err := strconv.ParseFloat(row[1], 64)
			if err != nil || row[0] == "addr" {
				continue // state, last fault: in ouro_ipcp_info
			}
			name := "ouro_ipcp_" + prom.MetricName(row[0])
			got, ok := value(fams, name, labels)
			if !ok {
				t.Errorf("ouro stats %s shows %s = %s; /metrics has no %s%v", proc, row[0], row[1], name, labels)
				continue
			}
			if got != want {
				t.Errorf("%s%v = %v, ouro stats %s shows %s = %v", name, labels, got, proc, row[0], want)
			}
			checked++
		}
		for _, row := range after["ports "+proc].RowMaps() {
			pl := map[string]string{"ipcp": proc, "layer": layer, "kind": row["kind"], "name": row["name"]}
			for _, col := range []string{"pkts_in", "pkts_out"} { // ouro_port_<column>
				want, err := strconv.ParseFloat(row[col], 64)
				got, ok := value(fams, "ouro_port_"+col, pl)
				if err != nil || !ok || got != want {
					t.Errorf("ouro_port_%s%v = %v (present %v), ouro ipcp ports %s shows %q", col, pl, got, ok, proc, row[col])
				}
				checked++
				ports++
			}
		}
		flows := after["flows "+proc]
		if !slices.Contains(flows.Columns, "pkts_in") {
			continue // the IRM answered for the IPCP (see below)
		}
		flowTables++
		for _, row := range flows.RowMaps() {
			fl := map[string]string{"ipcp": proc, "layer": layer, "eid": row["eid"], "peer": row["peer"], "name": row["name"], "dir": row["dir"]}
			for _, col := range []string{"pkts_in", "bytes_in", "pkts_out", "bytes_out", "drops", "rate"} { // ouro_flow_<column>
				if _, has := row[col]; !has {
					continue
				}
				want, _ := strconv.ParseFloat(row[col], 64)
				got, ok := value(fams, "ouro_flow_"+col, fl)
				if !ok || got != want {
					t.Errorf("ouro_flow_%s%v = %v (present %v), ouro ipcp flows %s shows %v", col, fl, got, ok, proc, want)
				}
				checked++
			}
		}
	}
	// The test is not vacuous: the local shim carried the pings, both
	// ways, and its flow table lists the flow with its packets.
	local := map[string]string{"ipcp": "a.local", "layer": info.Layer}
	if info.Layer != "local" {
		t.Fatalf("the flow went through layer %q, want local", info.Layer)
	}
	if v, ok := value(fams, "ouro_port_pkts_in", map[string]string{"ipcp": "a.bc", "kind": "member"}); !ok || v != 3 {
		t.Errorf("ouro_port_pkts_in of a.bc's member port = %v (present %v), want the 3 SDUs written", v, ok)
	}
	if ports == 0 {
		t.Errorf("a.bc's ports table (%v) had no port to compare", after["ports a.bc"])
	}
	if checked < 20 {
		t.Errorf("only %d values compared; want at least 20", checked)
	}
	t.Run("per-flow", func(t *testing.T) {
		if flowTables == 0 {
			t.Fatalf("no IPCP's flow table was compared (a.local's: columns %v)", after["flows a.local"].Columns)
		}
		checkPerFlow(t, fams, pings)
	})

	if v, ok := value(fams, "ouro_ipcp_packets_in", local); !ok || v < pings {
		t.Errorf("ouro_ipcp_packets_in%v = %v (present %v), want at least the %d pings", local, v, ok, pings)
	}
	if v, ok := value(fams, "ouro_ipcp_supervisor_restarts", local); !ok || v != 0 {
		t.Errorf("ouro_ipcp_supervisor_restarts%v = %v (present %v), want 0", local, v, ok)
	}

	// Allocation latencies: the one that succeeded in layer local, the
	// one that found nobody.
	for _, w := range []map[string]string{{"layer": "local", "result": "ok"}, {"layer": "", "result": "not_found"}} {
		n, ok := value(fams, "ouro_flow_alloc_duration_seconds", w)
		if !ok || n != 1 {
			t.Errorf("ouro_flow_alloc_duration_seconds%v: %v allocations (present %v), want 1", w, n, ok)
		}
	}
	if f := fams["ouro_flow_alloc_duration_seconds"]; f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("ouro_flow_alloc_duration_seconds is a %v, want a histogram", f.GetType())
	} else {
		for _, m := range f.Metric {
			h := m.GetHistogram()
			if h.GetSampleSum() <= 0 || len(h.Bucket) < 10 {
				t.Errorf("allocation histogram %v: sum %v, %d buckets", m.Label, h.GetSampleSum(), len(h.Bucket))
			}
		}
	}

	// The kernel's budgets, faults and restarts.
	comp := func(name, c string) float64 {
		t.Helper()
		v, ok := value(fams, name, map[string]string{"component": c})
		if !ok {
			t.Errorf("no %s{component=%q}", name, c)
		}
		return v
	}
	if v := comp("ouro_component_budget_bufs_limit", "ipcp.a.local"); v != 1024 {
		t.Errorf("ouro_component_budget_bufs_limit of ipcp.a.local = %v, want the configured 1024", v)
	}
	if v := comp("ouro_component_up", "irm"); v != 1 {
		t.Errorf("ouro_component_up of irm = %v, want 1", v)
	}
	if f, r := comp("ouro_component_faults_total", "boom"), comp("ouro_component_restarts_total", "boom"); f != 1 || r != 1 {
		t.Errorf("boom: %v faults, %v restarts; want 1 and 1 (it panicked once and the IRM restarted it)", f, r)
	}
	if f := comp("ouro_component_faults_total", "irm"); f != 0 {
		t.Errorf("irm: %v faults, want 0", f)
	}
	// The open flow's rings hold nothing while idle; the IRM's budget is
	// in use by something (its own buffers) or nothing: both are numbers.
	comp("ouro_component_budget_bufs", "ipcp.a.local")
	comp("ouro_component_budget_objects", "irm")

	// Node-wide: the buffers of every budget against the pool, the IRM's
	// tables, the build.
	node := func(name string) float64 {
		t.Helper()
		v, ok := value(fams, name, nil)
		if !ok {
			t.Errorf("no %s", name)
		}
		return v
	}
	if g, m, u := node("ouro_kernel_bufs_granted"), node("ouro_kernel_bufs_made"), node("ouro_kernel_bufs_in_use"); g < 1024 || m < u || u < 0 {
		t.Errorf("kernel buffers: %v granted, %v made, %v in use; want granted at least a.local's 1024, made ≥ in use ≥ 0", g, m, u)
	}
	node("ouro_kernel_bufs_max")
	if n := node("ouro_irm_names"); n < 1 {
		t.Errorf("ouro_irm_names = %v, want the echo name at least", n)
	}
	node("ouro_irm_flows")
	if _, ok := value(fams, "ouro_build_info", map[string]string{"go_version": runtime.Version()}); !ok {
		t.Errorf("no ouro_build_info{go_version=%q}", runtime.Version())
	}
}

// counters is the numbers of a snapshot of "ouro stats" and the IPCPs'
// flow tables, without what moves while idle (a flow's age).
func counters(s map[string]ipcp.Table) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s)) {
		t := s[k]
		for _, row := range t.RowMaps() {
			delete(row, "age")
			fmt.Fprintln(&b, k, row)
		}
	}
	return b.String()
}

// checkPerFlow checks that a.local's flows carried the pings, by the
// per-flow metrics.
func checkPerFlow(t *testing.T, fams map[string]*dto.MetricFamily, pings int) {
	var pktsIn float64
	for _, m := range fams["ouro_flow_pkts_in"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "ipcp" && l.GetValue() == "a.local" {
				pktsIn += m.GetUntyped().GetValue()
			}
		}
	}
	if pktsIn < float64(pings) {
		t.Errorf("ouro_flow_pkts_in of a.local's flows sum to %v, want at least the %d pings", pktsIn, pings)
	}
}

// TestRestartKeepsListener restarts the metrics component (as its
// supervisor would after a fault): the next incarnation serves the same
// address, with a new session.
func TestRestartKeepsListener(t *testing.T) {
	tn := startNode(t)
	addr := tn.m.Addr().String()
	if _, ok := value(scrape(t, tn.m), "ouro_ipcp_info", map[string]string{"ipcp": "a.local"}); !ok {
		t.Fatal("no ouro_ipcp_info for a.local before the restart")
	}
	if err := tn.n.Kernel().Restart(Name); err != nil {
		t.Fatal(err)
	}
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; {
		fams = scrape(t, tn.m)
		if _, ok := value(fams, "ouro_ipcp_info", map[string]string{"ipcp": "a.local"}); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no ouro_ipcp_info for a.local after the restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := tn.m.Addr().String(); got != addr {
		t.Errorf("address after the restart: %s, want %s", got, addr)
	}
	if r, ok := value(fams, "ouro_component_restarts_total", map[string]string{"component": Name}); !ok || r != 1 {
		t.Errorf("ouro_component_restarts_total of %s: %v (present %v), want 1", Name, r, ok)
	}
}

// TestStatusPage: the metrics listener serves the node's status page at
// "/": HTML naming the node, its IPCPs and its flows, and the same as
// JSON, whose identity is the node's verified document; a wrong format,
// method or path is refused.
func TestStatusPage(t *testing.T) {
	tn := startNode(t)
	c, err := flow.Dial(tn.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, _ := allocEcho(t, ctx, c)
	defer p.Close()
	base := "http://" + tn.m.Addr().String()
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	code, ct, body := get("/")
	if code != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET /: %d %s", code, ct)
	}
	for _, want := range []string{"<h1>ouro node a</h1>", "<td>a.local</td>", "<td>a.bc</td>", "<td>echo</td>", "<h2>a.udp (layer"} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	code, ct, body = get("/?format=json")
	if code != http.StatusOK || ct != "application/json" {
		t.Fatalf("GET /?format=json: %d %s", code, ct)
	}
	var page status.Page
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	if page.Node.Name != "a" || page.Node.ID != identity.NameOf(tn.n.Identity().Public()) || len(page.Errors) != 0 {
		t.Fatalf("status node %+v, errors %v; want node a, id %s", page.Node, page.Errors, identity.NameOf(tn.n.Identity().Public()))
	}
	if len(page.IPCPs.Rows) != 3 || len(page.Counters) != 3 || len(page.Flows.Rows) == 0 {
		t.Fatalf("status: %d IPCPs, %d counter tables, %d flows; want 3, 3, at least 1", len(page.IPCPs.Rows), len(page.Counters), len(page.Flows.Rows))
	}
	for path, want := range map[string]int{"/?format=xml": http.StatusBadRequest, "/nothing": http.StatusNotFound} {
		if code, _, _ := get(path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", resp.StatusCode)
	}
}
