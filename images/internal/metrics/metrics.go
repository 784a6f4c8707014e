// Package metrics serves a hosted node's counters in the Prometheus text
// format over HTTP ([node] metrics, docs/observability.md). It is a
// component of the node that reads, at scrape time, what "ouro stats"
// and "ouro ipcps" show (through the same management commands, over its
// own session with the IRM) and the kernel's component stats; it adds
// nothing to the data path. It is not the bare-metal images' metrics:
// they have no HTTP server.
package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/node"
	"github.com/ouronet/ouro/images/internal/status"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
)

// Name is the metrics component's name in the node's system description.
const Name = "metrics"

// Config configures the metrics server.
type Config struct {
	// Addr is the host:port to listen on ([node] metrics); port 0 picks
	// one (Server.Addr tells which).
	Addr string
	// Timeout bounds one scrape's management calls (default 5s).
	Timeout time.Duration
	// Log reports scrapes that failed in part (Warn, component
	// "metrics"); nil discards.
	Log *slog.Logger
}

// Server is the metrics server across the incarnations of its component:
// its listener outlives a restart.
type Server struct {
	cfg Config
	reg *prometheus.Registry

	mu  sync.Mutex   // guards below
	l   net.Listener // from Prepare to Cleanup
	b   *irm.Broker  // the running incarnation's session with the IRM
	inc uint64       // the running incarnation's number
}

// New returns a metrics server; Extra makes it a component of the node.
func New(cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	cfg.Log = logx.Or(cfg.Log).With("component", "metrics")
	s := &Server{cfg: cfg, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(newCollector(s))
	return s
}

// Addr returns the address the server listens on, once the node started
// (nil before).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l == nil {
		return nil
	}
	return s.l.Addr()
}

// Extra returns the metrics server as a component of the node: the
// listener opens before the node boots (a busy port fails Start), the
// component serves it with a session of its own with the IRM (an
// application's: the read-only management commands), and the listener
// closes when the node stops.
func (s *Server) Extra() node.Extra {
	return node.Extra{
		Name:    Name,
		Bufs:    64, // it moves no packets
		Program: s.run,
		Prepare: func() error {
			l, err := net.Listen("tcp", s.cfg.Addr)
			if err != nil {
				return fmt.Errorf("metrics: %w", err)
			}
			s.mu.Lock()
			s.l = l
			s.mu.Unlock()
			return nil
		},
		Cleanup: func() {
			s.mu.Lock()
			l := s.l
			s.l = nil
			s.mu.Unlock()
			if l != nil {
				l.Close()
			}
		},
	}
}

// run is one incarnation of the metrics component: it opens a session
// with the IRM and serves HTTP on the listener until the incarnation
// ends. The listener stays open for the next incarnation.
func (s *Server) run(pd *kernel.PD) error {
	ctx := pd.Context()
	irmEP, err := pd.Slot("irm")
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	b, err := irm.OpenSession(octx, pd, irmEP, irm.SessionReq{Principal: Name})
	cancel()
	if err != nil {
		return fmt.Errorf("metrics: session: %w", err)
	}
	defer b.Close()
	s.mu.Lock()
	l := s.l
	s.inc++
	inc := s.inc
	s.b = b
	s.mu.Unlock()
	if l == nil {
		return fmt.Errorf("metrics: not prepared: %w", flow.ErrInvalid)
	}
	tl, ok := l.(*net.TCPListener)
	if !ok {
		return fmt.Errorf("metrics: listener %T: %w", l, flow.ErrInvalid)
	}
	tl.SetDeadline(time.Time{}) // a previous incarnation set it to wake its Accept
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, // a layer that does not answer leaves the others' metrics
		ErrorLog:      logger{s.cfg.Log},
		Timeout:       s.cfg.Timeout + time.Second,
	}))
	mux.Handle("/", http.HandlerFunc(s.status))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	pd.Go(func() {
		<-ctx.Done()
		srv.Close() // closes the connections; incListener.Close wakes the Accept
	})
	err = srv.Serve(&incListener{TCPListener: tl, s: s, inc: inc, ctx: ctx})
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	s.mu.Lock()
	gone := s.l == nil
	s.mu.Unlock()
	if gone {
		return nil // the node stopped
	}
	return fmt.Errorf("metrics: serve: %w", err)
}

// status serves the node's status page (package status) at "/": HTML,
// or JSON with ?format=json.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b := s.broker()
	if b == nil {
		http.Error(w, "status: no session with the node yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	format := r.URL.Query().Get("format")
	var buf bytes.Buffer
	if err := status.Render(&buf, format, status.Read(ctx, b)); err != nil {
		code := http.StatusInternalServerError
		if status.IsFormatError(err) {
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", status.ContentType(format))
	w.Write(buf.Bytes())
}

// broker returns the running incarnation's session with the IRM.
func (s *Server) broker() *irm.Broker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

// incListener is the shared listener as one incarnation serves it: its
// Close ends that incarnation's Accepts (by a deadline) and leaves the
// listener open for the next.
type incListener struct {
	*net.TCPListener
	s   *Server
	inc uint64
	ctx context.Context
}

func (l *incListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if l.ctx.Err() != nil {
		if c != nil {
			c.Close()
		}
		return nil, net.ErrClosed
	}
	return c, err
}

func (l *incListener) Close() error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.inc == l.inc && l.s.l != nil {
		l.TCPListener.SetDeadline(time.Now())
	}
	return nil
}

// logger adapts Log to promhttp.Logger.
type logger struct{ log *slog.Logger }

func (l logger) Println(v ...any) { l.log.Warn("scrape failed", "err", fmt.Sprint(v...)) }
