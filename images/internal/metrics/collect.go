package metrics

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ouronet/ouro/flow/irm"
)

// collector reads the node's counters when it is scraped: "ipcps", then
// each IPCP's "stats" and "flows" (a broadcast IPCP's "ports"), the
// management commands "ouro stats" sends, and the kernel's Stats of
// every component. It describes nothing in advance (an unchecked
// collector): which counters exist depends on the IPCPs and their state.
type collector struct{ s *Server }

// Describe implements prometheus.Collector: nothing, so the registry
// takes whatever Collect sends (names and labels are kept consistent
// below).
func (collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	collectBuild(ch)
	if b := s.broker(); b != nil {
		collectIPCPs(ctx, b, ch)
		collectIRM(ctx, b, ch)
	} else {
		ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("ouro_ipcp_info", "", nil, nil),
			fmt.Errorf("metrics: no session with the IRM (yet)"))
	}
	if s.cfg.Kernel != nil {
		if k := s.cfg.Kernel(); k != nil {
			collectComponents(k, ch)
		}
	}
}

// Label names. Per IPCP: ipcp, layer; per flow, also the columns of the
// IPCP's flow table that say which flow it is.
var (
	ipcpLabels = []string{"ipcp", "layer"}
	flowLabels = []string{"ipcp", "layer", "eid", "peer", "name", "dir"}
	portLabels = []string{"ipcp", "layer", "kind", "name"}
)

// flowCounters are the flow-table columns exported as ouro_flow_<column>
// (shims' and unicast IPCPs' "flows"); the other columns are labels or
// left out (peer_eid, cube, age). portCounters likewise for broadcast
// "ports" (ouro_port_<column>).
var (
	flowCounters = []string{"pkts_in", "bytes_in", "pkts_out", "bytes_out", "drops", "rate"}
	portCounters = []string{"pkts_in", "pkts_out"}
)

var (
	irmNames = prometheus.NewDesc("ouro_irm_names", "Names the IRM knows (ouro names): bound by programs or registered in layers.", nil, nil)
	irmFlows = prometheus.NewDesc("ouro_irm_flows", "Flows the IRM brokered that are still open (ouro flows).", nil, nil)
	build    = prometheus.NewDesc("ouro_build_info", "The node's build: always 1, with the Go version, the module's version and the VCS revision it was built from (\"\" if unknown).",
		[]string{"go_version", "version", "revision"}, nil)
)

// collectIRM exports the sizes of the IRM's tables.
func collectIRM(ctx context.Context, b *irm.Broker, ch chan<- prometheus.Metric) {
	for _, t := range []struct {
		cmd  string
		desc *prometheus.Desc
	}{{irm.CmdNames, irmNames}, {irm.CmdFlows, irmFlows}} {
		r, err := mgmtAll(ctx, b, irm.MgmtReq{Cmd: t.cmd})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(t.desc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(t.desc, prometheus.GaugeValue, float64(len(r.Table.Rows)))
	}
}

// collectBuild exports ouro_build_info from the binary's build information.
func collectBuild(ch chan<- prometheus.Metric) {
	goVersion, version, revision := runtime.Version(), "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(build, prometheus.GaugeValue, 1, goVersion, version, revision)
}

func collectIPCPs(ctx context.Context, b *irm.Broker, ch chan<- prometheus.Metric) {
	ipcps, err := mgmtAll(ctx, b, irm.MgmtReq{Cmd: irm.CmdIPCPs})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("ouro_ipcp_info", "", nil, nil), err)
		return
	}
	info := prometheus.NewDesc("ouro_ipcp_info", "The node's IPCPs (ouro ipcps): always 1, with the IPCP's kind and state.",
		[]string{"ipcp", "layer", "kind", "state"}, nil)
	for _, row := range rowMaps(ipcps.Table) {
		name, layer := row["name"], row["layer"]
		ch <- prometheus.MustNewConstMetric(info, prometheus.GaugeValue, 1, name, layer, row["kind"], row["state"])

		stats, err := mgmtAll(ctx, b, irm.MgmtReq{Cmd: "stats", IPCP: name})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("ouro_ipcp_stats", "", nil, nil), err)
		} else {
			statMetrics(stats.Table, name, layer, ch)
		}

		kind := row["kind"]
		cmd, counters, labels, prefix := "flows", flowCounters, flowLabels, "ouro_flow_"
		if kind == "broadcast" {
			cmd, counters, labels, prefix = "ports", portCounters, portLabels, "ouro_port_"
		}
		flows, err := mgmtAll(ctx, b, irm.MgmtReq{Cmd: cmd, IPCP: name})
		if err != nil {
			// A unicast IPCP that is not a member yet has no flow table;
			// an IPCP that is down answers nothing but "stats".
			continue
		}
		tableMetrics(flows.Table, prefix, counters, labels, map[string]string{"ipcp": name, "layer": layer}, ch)
	}
}

// statMetrics exports the numeric rows of an IPCP's "stats" table, each
// as ouro_ipcp_<counter> (dots and other punctuation as '_'), labelled
// ipcp and layer. Rows that are not numbers (state, last fault) are left
// out: ouro_ipcp_info has the state; so is a unicast IPCP's address. The values are what "ouro stats"
// prints; the table does not say which are counters and which gauges,
// so they are untyped.
func statMetrics(t irm.Table, ipcp, layer string, ch chan<- prometheus.Metric) {
	seen := make(map[string]bool)
	for _, row := range t.Rows {
		if len(row) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(row[1], 64)
		if err != nil || row[0] == "addr" {
			continue // addr: an identifier (up to 64 bits: not exact as a float64)
		}
		name := "ouro_ipcp_" + metricName(row[0])
		if seen[name] {
			continue
		}
		seen[name] = true
		// The help must be the same for every IPCP: rows of different
		// kinds may share a name ("flows.active", "flows_active").
		desc := prometheus.NewDesc(name, "A counter of \"ouro stats IPCP\", its name's punctuation as '_'.", ipcpLabels, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, v, ipcp, layer)
	}
}

// tableMetrics exports a per-flow table: for every row, each of the
// counters columns as <prefix><column>, labelled with labels (from fixed
// if there, else the row's column of that name, else "").
func tableMetrics(t irm.Table, prefix string, counters, labels []string, fixed map[string]string, ch chan<- prometheus.Metric) {
	descs := make(map[string]*prometheus.Desc)
	for _, col := range counters {
		if slices.Contains(t.Columns, col) {
			descs[col] = prometheus.NewDesc(prefix+col, fmt.Sprintf("The %q column of the IPCP's %s table, per flow.", col, strings.TrimSuffix(strings.TrimPrefix(prefix, "ouro_"), "_")+"s"), labels, nil)
		}
	}
	seen := make(map[string]bool)
	for _, row := range rowMaps(t) {
		values := make([]string, len(labels))
		for i, l := range labels {
			if v, ok := fixed[l]; ok {
				values[i] = v
			} else {
				values[i] = row[l]
			}
		}
		key := strings.Join(values, "\x00")
		if seen[key] { // two rows that the labels do not tell apart
			continue
		}
		seen[key] = true
		for _, col := range slices.Sorted(maps.Keys(descs)) {
			v, err := strconv.ParseFloat(row[col], 64)
			if err != nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descs[col], prometheus.UntypedValue, v, values...)
		}
	}
}

// metricName turns a stats row's name ("drops.no_route") into the tail of
// a metric name ("drops_no_route").
func metricName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// rowMaps returns t's rows keyed by column.
func rowMaps(t irm.Table) []map[string]string {
	rows := make([]map[string]string, 0, len(t.Rows))
	for _, r := range t.Rows {
		m := make(map[string]string, len(t.Columns))
		for i, c := range t.Columns {
			if i < len(r) {
				m[c] = r[i]
			}
		}
		rows = append(rows, m)
	}
	return rows
}

// maxPages bounds the pages of one listing (a node paging in circles).
const maxPages = 1 << 12

// mgmtAll sends req and fetches every page of its answer, as "ouro"
// does (tools/ouro/mgmt.go).
func mgmtAll(ctx context.Context, b *irm.Broker, req irm.MgmtReq) (irm.MgmtResp, error) {
	what := req.Cmd
	if req.IPCP != "" {
		what += " " + req.IPCP
	}
	all, err := b.Mgmt(ctx, req)
	if err != nil {
		return irm.MgmtResp{}, fmt.Errorf("metrics: %s: %w", what, err)
	}
	for next, pages := all.Next, 1; next > 0; pages++ {
		if pages > maxPages {
			return irm.MgmtResp{}, fmt.Errorf("metrics: %s: more than %d pages", what, maxPages)
		}
		r := req
		r.Args = maps.Clone(req.Args)
		if r.Args == nil {
			r.Args = map[string]string{}
		}
		r.Args[irm.ArgOffset] = strconv.Itoa(next)
		page, err := b.Mgmt(ctx, r)
		if err != nil {
			return irm.MgmtResp{}, fmt.Errorf("metrics: %s (from %d): %w", what, next, err)
		}
		if !slices.Equal(page.Table.Columns, all.Table.Columns) || page.Next != 0 && page.Next <= next {
			return irm.MgmtResp{}, fmt.Errorf("metrics: %s: page from %d does not follow the first", what, next)
		}
		all.Table.Rows = append(all.Table.Rows, page.Table.Rows...)
		next = page.Next
	}
	all.Next = 0
	return all, nil
}
