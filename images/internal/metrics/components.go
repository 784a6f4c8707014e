package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ouronet/ouro/kernel"
)

// The kernel's view of every component (Kernel.Stats): budgets in use and
// their limits, faults and restarts. IPCPs' supervision as the IRM sees
// it (state, restarts, last fault) is in ouro_ipcp_info and
// ouro_ipcp_supervisor_restarts.
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

var (
	bufsGranted = prometheus.NewDesc("ouro_kernel_bufs_granted", "Packet buffers the booted components' budgets and rings may hold together.", nil, nil)
	bufsMax     = prometheus.NewDesc("ouro_kernel_bufs_max", "The node-wide bound on packet buffers ([kernel] max_bufs; 0: none).", nil, nil)
	bufsMade    = prometheus.NewDesc("ouro_kernel_bufs_made", "Packet buffers the kernel's pool has made: its high-water mark (buffers are reused).", nil, nil)
	bufsInUse   = prometheus.NewDesc("ouro_kernel_bufs_in_use", "Packet buffers held, reserved or queued now, all components together.", nil, nil)
)

func collectComponents(k *kernel.Kernel, ch chan<- prometheus.Metric) {
	t := k.BufTotals()
	ch <- prometheus.MustNewConstMetric(bufsGranted, prometheus.GaugeValue, float64(t.Granted))
	ch <- prometheus.MustNewConstMetric(bufsMax, prometheus.GaugeValue, float64(t.Max))
	ch <- prometheus.MustNewConstMetric(bufsMade, prometheus.GaugeValue, float64(t.Made))
	ch <- prometheus.MustNewConstMetric(bufsInUse, prometheus.GaugeValue, float64(t.Made-t.Free))
	for _, c := range k.Describe().Components {
		s, err := k.Stats(c.Name)
		if err != nil {
			continue // destroyed since Describe
		}
		up := 0.0
		if s.State == "running" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(compUp, prometheus.GaugeValue, up, c.Name)
		ch <- prometheus.MustNewConstMetric(compBufs, prometheus.GaugeValue, float64(s.Budget.Bufs), c.Name)
		ch <- prometheus.MustNewConstMetric(compBufsLimit, prometheus.GaugeValue, float64(s.Budget.Limit.Bufs), c.Name)
		ch <- prometheus.MustNewConstMetric(compObjs, prometheus.GaugeValue, float64(s.Budget.Objects), c.Name)
		ch <- prometheus.MustNewConstMetric(compObjsLimit, prometheus.GaugeValue, float64(s.Budget.Limit.Objects), c.Name)
		ch <- prometheus.MustNewConstMetric(compByteRate, prometheus.GaugeValue, float64(s.Budget.Limit.ByteRate), c.Name)
		ch <- prometheus.MustNewConstMetric(compRestarts, prometheus.CounterValue, float64(max(s.Incarnations-1, 0)), c.Name)
		ch <- prometheus.MustNewConstMetric(compFaults, prometheus.CounterValue, float64(s.Faults), c.Name)
	}
}
