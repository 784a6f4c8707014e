// Package prom exposes a node's management tables in the Prometheus text
// format: every numeric counter "ouro stats" shows per IPCP, the per-flow
// counters of the IPCPs' flow tables, the IRM's table sizes, the
// kernel's components (budgets, faults, restarts) and packet buffers, and
// the IP bridges' counters per route. It reads them at scrape time
// through the management protocol only (ipcp.MgmtReq), so the same
// metrics come from a hosted node's metrics server (over its own session
// with the IRM) and from any node, a board among them, that "ouro
// metrics --via" reaches over a management flow (docs/observability.md).
package prom

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ouronet/ouro/layer/ipcp"
)

// Mgmt sends one management request and returns one page of its answer
// (Collector fetches the others).
type Mgmt = ipcp.MgmtFunc

// Source opens what a scrape asks through: the call, and done to run
// once the scrape is over (closing a connection; may be nil).
type Source func(ctx context.Context) (m Mgmt, done func(), err error)

// Collector reads a node's counters each time it is scraped: "ipcps",
// then each IPCP's "stats" and "flows" (a broadcast IPCP's "ports"
// instead, a unicast IPCP's "ports" too),
// "names", "flows", "components", "kernel", "allocs" and "bridges". It describes nothing in
// advance (an unchecked collector): which counters exist depends on the
// IPCPs and their state. A command that fails becomes an invalid metric
// (the scrape says so); the others are still exported.
type Collector struct {
	src     Source
	timeout time.Duration
}

// New returns a Collector that asks through src, each scrape within
// timeout (0: 5 s).
func New(src Source, timeout time.Duration) *Collector {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Collector{src: src, timeout: timeout}
}

// Describe implements prometheus.Collector: nothing, so the registry
// takes whatever Collect sends (names and labels are kept consistent
// below).
func (*Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	m, done, err := c.src(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(ipcpInfo, fmt.Errorf("prom: %w", err))
		return
	}
	if done != nil {
		defer done()
	}
	collectIPCPs(ctx, m, ch)
	collectIRM(ctx, m, ch)
	collectComponents(ctx, m, ch)
	collectKernel(ctx, m, ch)
	collectAllocs(ctx, m, ch)
	collectBridges(ctx, m, ch)
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
// left out (peer_eid, cube, age). portCounters likewise for "ports"
// (ouro_port_<column>): a broadcast IPCP's ports, a unicast IPCP's N-1
// flows. A column a table lacks is not exported for it.
var (
	flowCounters = []string{"pkts_in", "bytes_in", "pkts_out", "bytes_out", "drops", "rate", "queued_out", "queued_in"}
	portCounters = []string{"pkts_in", "pkts_out", "queued", "queue_cap", "below", "backlog", "tx_errors"}
)

var (
	ipcpInfo = prometheus.NewDesc("ouro_ipcp_info", "The node's IPCPs (ouro ipcps): always 1, with the IPCP's kind and state.",
		[]string{"ipcp", "layer", "kind", "state"}, nil)
	irmNames = prometheus.NewDesc("ouro_irm_names", "Names the IRM knows (ouro names): bound by programs or registered in layers.", nil, nil)
	irmFlows = prometheus.NewDesc("ouro_irm_flows", "Flows the IRM brokered that are still open (ouro flows).", nil, nil)
)

// collectIRM exports the sizes of the IRM's tables.
func collectIRM(ctx context.Context, m Mgmt, ch chan<- prometheus.Metric) {
	for _, t := range []struct {
		cmd  string
		desc *prometheus.Desc
	}{{ipcp.CmdNames, irmNames}, {ipcp.CmdFlows, irmFlows}} {
		r, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: t.cmd})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(t.desc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(t.desc, prometheus.GaugeValue, float64(len(r.Table.Rows)))
	}
}

func collectIPCPs(ctx context.Context, m Mgmt, ch chan<- prometheus.Metric) {
	ipcps, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(ipcpInfo, err)
		return
	}
	for _, row := range ipcps.Table.RowMaps() {
		name, layer := row["name"], row["layer"]
		ch <- prometheus.MustNewConstMetric(ipcpInfo, prometheus.GaugeValue, 1, name, layer, row["kind"], row["state"])

		stats, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: "stats", IPCP: name})
		if err != nil {
			ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("ouro_ipcp_stats", "", nil, nil), err)
		} else {
			statMetrics(stats.Table, name, layer, ch)
		}

		type tab struct {
			cmd              string
			counters, labels []string
			prefix           string
		}
		tabs := []tab{{"flows", flowCounters, flowLabels, "ouro_flow_"}}
		switch row["kind"] {
		case "broadcast":
			tabs = []tab{{"ports", portCounters, portLabels, "ouro_port_"}}
		case "unicast":
			tabs = append(tabs, tab{"ports", portCounters, portLabels, "ouro_port_"})
		}
		for _, tb := range tabs {
			r, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: tb.cmd, IPCP: name})
			if err != nil {
				// A unicast IPCP that is not a member yet has no flow
				// table; an IPCP that is down answers nothing but "stats".
				continue
			}
			tableMetrics(r.Table, tb.prefix, tb.counters, tb.labels, map[string]string{"ipcp": name, "layer": layer}, ch)
		}
	}
}

// statMetrics exports the numeric rows of an IPCP's "stats" table, each
// as ouro_ipcp_<counter> (dots and other punctuation as '_'), labelled
// ipcp and layer. Rows that are not numbers (state, last fault) are left
// out: ouro_ipcp_info has the state; so is a unicast IPCP's address. The
// values are what "ouro stats" prints; the table does not say which are
// counters and which gauges, so they are untyped.
func statMetrics(t ipcp.Table, proc, layer string, ch chan<- prometheus.Metric) {
	seen := make(map[string]bool)
	for _, row := range t.Rows {
		if len(row) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(row[1], 64)
		if err != nil || row[0] == "addr" {
			continue // addr: an identifier (up to 64 bits: not exact as a float64)
		}
		name := "ouro_ipcp_" + MetricName(row[0])
		if seen[name] {
			continue
		}
		seen[name] = true
		// The help must be the same for every IPCP: rows of different
		// kinds may share a name ("flows.active", "flows_active").
		desc := prometheus.NewDesc(name, "A counter of \"ouro stats IPCP\", its name's punctuation as '_'.", ipcpLabels, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, v, proc, layer)
	}
}

// tableMetrics exports a per-flow table: for every row, each of the
// counters columns as <prefix><column>, labelled with labels (from fixed
// if there, else the row's column of that name, else "").
func tableMetrics(t ipcp.Table, prefix string, counters, labels []string, fixed map[string]string, ch chan<- prometheus.Metric) {
	descs := make(map[string]*prometheus.Desc)
	for _, col := range counters {
		if slices.Contains(t.Columns, col) {
			descs[col] = prometheus.NewDesc(prefix+col, fmt.Sprintf("The %q column of the IPCP's %s table, per flow.", col, strings.TrimSuffix(strings.TrimPrefix(prefix, "ouro_"), "_")+"s"), labels, nil)
		}
	}
	seen := make(map[string]bool)
	for _, row := range t.RowMaps() {
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

// MetricName turns a stats row's name ("drops.no_route") into the tail of
// its metric's name ("drops_no_route", exported as
// ouro_ipcp_drops_no_route).
func MetricName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
