package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/prom"
)

func metricsCommand() *command {
	return &command{name: "metrics", group: "management", summary: "print a node's metrics in the Prometheus text format, or serve them (--listen)", run: runMetrics,
		help: "Reads the node's counters through management commands (every IPCP's\n" +
			"stats and flow table, the IRM's tables, the kernel's components and\n" +
			"packet buffers) and prints them in the Prometheus text format. With\n" +
			"--via NAME they come over a management flow from a node that serves\n" +
			"no HTTP, a board among them; with --listen ADDR the command serves\n" +
			"them at http://ADDR/metrics instead, reading the node at each scrape\n" +
			"(over a new management flow each time with --via, so a rebooted node\n" +
			"is scraped again), until interrupted. A hosted node's own [node]\n" +
			"metrics server gives the same, and its allocation latencies besides.\n" +
			"A command the node does not answer leaves its metrics out and is\n" +
			"reported; the others are printed."}
}

func runMetrics(a *app, ctx context.Context, cmd *command, args []string) error {
	fs := a.newFlags(cmd)
	var (
		timeout time.Duration
		listen  string
	)
	timeoutFlag(fs, &timeout)
	fs.stringVar(&listen, "", "serve the metrics at http://`ADDR`/metrics (host:port) until interrupted, instead of printing them once", "listen")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.New(a.promSource, timeout))
	if listen == "" {
		fams, err := reg.Gather() // what it could read, and what it could not
		enc := expfmt.NewEncoder(a.stdout, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			if eerr := enc.Encode(f); eerr != nil {
				return fmt.Errorf("metrics: %w", eerr)
			}
		}
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		return nil
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, // a layer that does not answer leaves the others' metrics
		ErrorLog:      errLog{a},
		Timeout:       timeout + time.Second,
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(a.stdout, "ouro metrics: serving http://%s/metrics\n", l.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		srv.Close()
		err = <-done
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("metrics: %w", err)
}

// promSource opens a session with the node (or a management flow to
// --via) for one scrape.
func (a *app) promSource(context.Context) (prom.Mgmt, func(), error) {
	n, err := a.connect()
	if err != nil {
		return nil, nil, err
	}
	return nodeMgmt(n), func() { n.Close() }, nil
}

// nodeMgmt asks one page of a management command of n.
func nodeMgmt(n node) ipcp.MgmtFunc {
	return func(ctx context.Context, req ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		var out ipcp.MgmtResp
		err := n.Mgmt(ctx, req, &out)
		return out, err
	}
}

// errLog reports a scrape's failures on standard error.
type errLog struct{ a *app }

func (l errLog) Println(v ...any) { fmt.Fprintln(l.a.stderr, append([]any{"ouro metrics:"}, v...)...) }
