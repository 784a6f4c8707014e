package metrics

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/prom"
)

// collector adds the node's build to what package prom reads through the
// management commands at scrape time (the same metrics "ouro metrics
// --via" gives for a node reached over a management flow).
type collector struct{ tables *prom.Collector }

func newCollector(s *Server) collector {
	return collector{tables: prom.New(s.source, s.cfg.Timeout)}
}

// source is the running incarnation's session with the IRM.
func (s *Server) source(context.Context) (prom.Mgmt, func(), error) {
	b := s.broker()
	if b == nil {
		return nil, nil, fmt.Errorf("metrics: no session with the IRM (yet)")
	}
	return func(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) { return b.Mgmt(ctx, req) }, nil, nil
}

// Describe implements prometheus.Collector: nothing, so the registry
// takes whatever Collect sends (package prom keeps names and labels
// consistent).
func (collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	collectBuild(ch)
	ch <- prometheus.MustNewConstMetric(procs, prometheus.GaugeValue, float64(runtime.GOMAXPROCS(0)))
	c.tables.Collect(ch)
}

var procs = prometheus.NewDesc("ouro_node_procs", "The processors the node's Go scheduler uses now (GOMAXPROCS): by default one while the node is quiet, all it may use once it is busy ([node] procs).", nil, nil)

var build = prometheus.NewDesc("ouro_build_info", "The node's build: always 1, with the Go version, the module's version and the VCS revision it was built from (\"\" if unknown).",
	[]string{"go_version", "version", "revision"}, nil)

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
