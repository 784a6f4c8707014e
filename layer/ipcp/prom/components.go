package prom

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ouronet/ouro/layer/ipcp"
)

// The kernel's view of every component ("components": kernel.Stats):
// budgets in use and their limits, faults and restarts. IPCPs'
// supervision as the IRM sees it (state, restarts, last fault) is in
// ouro_ipcp_info and ouro_ipcp_supervisor_restarts.
var (
	compLabels    = []string{"component"}
	compUp        = prometheus.NewDesc("ouro_component_up", "1 if the component's current incarnation runs, else 0 (exited, faulted or killed).", compLabels, nil)
	compBufs      = prometheus.NewDesc("ouro_component_budget_bufs", "Packet buffers charged to the component's budget now (held, reserved, queued in rings it created).", compLabels, nil)
	compBufsLimit = prometheus.NewDesc("ouro_component_budget_bufs_limit", "The component's packet-buffer budget.", compLabels, nil)
	compObjs      = prometheus.NewDesc("ouro_component_budget_objects", "Run-time objects (endpoints, notifications, rings, children) the component has now.", compLabels, nil)
	compObjsLimit = prometheus.NewDesc("ouro_component_budget_objects_limit", "The component's run-time object budget.", compLabels, nil)
	compRestarts  = prometheus.NewDesc("ouro_component_restarts_total", "Incarnations the component had after its first (restarts by its supervisor, and the IRM's restarts of everything).", compLabels, nil)
	compFaults    = prometheus.NewDesc("ouro_component_faults_total", "Incarnations of the component that faulted (panicked or returned an error).", compLabels, nil)
	compByteRate  = prometheus.NewDesc("ouro_component_budget_byte_rate", "The component's byte rate limit (bytes/s pushed into rings; 0: none).", compLabels, nil)
)

// The kernel's node-wide packet buffers ("kernel": kernel.BufTotals), by
// the row of the table each comes from.
var kernelBufs = map[string]*prometheus.Desc{
	"bufs_granted": prometheus.NewDesc("ouro_kernel_bufs_granted", "Packet buffers the booted components' budgets and rings may hold together.", nil, nil),
	"bufs_max":     prometheus.NewDesc("ouro_kernel_bufs_max", "The node-wide bound on packet buffers ([kernel] max_bufs; 0: none).", nil, nil),
	"bufs_made":    prometheus.NewDesc("ouro_kernel_bufs_made", "Packet buffers the kernel's pool has made: its high-water mark (buffers are reused).", nil, nil),
	"bufs_in_use":  prometheus.NewDesc("ouro_kernel_bufs_in_use", "Packet buffers held, reserved or queued now, all components together.", nil, nil),
}

func collectComponents(ctx context.Context, m Mgmt, ch chan<- prometheus.Metric) {
	r, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdComponents})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(compUp, err)
		return
	}
	num := func(row map[string]string, col string) float64 {
		v, _ := strconv.ParseFloat(row[col], 64)
		return v
	}
	for _, row := range r.Table.RowMaps() {
		name := row["name"]
		up := 0.0
		if row["state"] == "running" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(compUp, prometheus.GaugeValue, up, name)
		for _, g := range []struct {
			desc *prometheus.Desc
			col  string
		}{{compBufs, "bufs"}, {compBufsLimit, "bufs_limit"}, {compObjs, "objects"}, {compObjsLimit, "objects_limit"}, {compByteRate, "byte_rate"}} {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, num(row, g.col), name)
		}
		ch <- prometheus.MustNewConstMetric(compRestarts, prometheus.CounterValue, max(num(row, "incarnations")-1, 0), name)
		ch <- prometheus.MustNewConstMetric(compFaults, prometheus.CounterValue, num(row, "faults"), name)
	}
}

func collectKernel(ctx context.Context, m Mgmt, ch chan<- prometheus.Metric) {
	r, err := ipcp.ReadAll(ctx, m, ipcp.MgmtReq{Cmd: ipcp.CmdKernel})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(kernelBufs["bufs_in_use"], err)
		return
	}
	for _, row := range r.Table.Rows {
		if len(row) < 2 || kernelBufs[row[0]] == nil {
			continue
		}
		if v, err := strconv.ParseFloat(row[1], 64); err == nil {
			ch <- prometheus.MustNewConstMetric(kernelBufs[row[0]], prometheus.GaugeValue, v)
		}
	}
}
