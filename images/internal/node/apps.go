package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/probe"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/mgmtflow"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/logx"
)

// AppConfig declares an in-node application ([[app]] in the configuration):
// a component of the node that uses the flow API through the IRM, as a
// program on the hosted socket would. Bare-metal images have no socket, so
// this is how they serve names.
type AppConfig struct {
	// Kind selects the application:
	//   - "echo" binds Name and writes every SDU of every flow back, like
	//     "ouro echo": what "ouro ping" measures round trips against;
	//   - "perf" binds Name and serves "ouro perf" clients like "ouro perf
	//     --server": it counts their data SDUs, answers their report
	//     requests and echoes pings (flow/probe);
	//   - "halt" binds Name and, on the first SDU of the first flow
	//     ("halt CODE"), calls AppEnv.Halt with CODE: the test bench's way
	//     to end a VM with an exit code. Configure it only on test nodes.
	//   - "mgmt" binds Name (default "NODE.mgmt") for sealed flows from
	//     the node ids in Peers only and answers the node's read-only
	//     management commands over them (images/mgmtflow): what "ouro
	//     --via NAME" asks.
	Kind string `toml:"kind"`
	// Name is the name bound (default: the kind; "mgmt": NODE.mgmt).
	Name string `toml:"name"`
	// Peers are the node ids ("ouro id") a "mgmt" app takes flows from;
	// it must have at least one.
	Peers []string `toml:"peers"`
	// Bufs is the component's packet-buffer budget (default 4096).
	Bufs int `toml:"bufs"`
}

// AppEnv is what in-node applications get from the image.
type AppEnv struct {
	// Log reports flows opening and closing (nil: silent); each app
	// logs with component "app.NAME".
	Log *slog.Logger
	// Halt ends the node with an exit code ("halt" apps); nil disables
	// them.
	Halt func(code int)
}

// Apps returns the in-node applications cfg declares, as Extras for New.
func Apps(cfg *Config, env AppEnv) ([]Extra, error) {
	base := logx.Or(env.Log)
	var xs []Extra
	seen := make(map[string]bool)
	for i, a := range cfg.Apps {
		if a.Name == "" {
			a.Name = a.Kind
			if a.Kind == "mgmt" && cfg.Node.Name != "" {
				a.Name = cfg.Node.Name + ".mgmt"
			}
		}
		if !validName(a.Name) {
			return nil, fmt.Errorf("config: app #%d: bad name %q: %w", i+1, a.Name, flow.ErrInvalid)
		}
		if a.Kind != "mgmt" && len(a.Peers) > 0 {
			return nil, fmt.Errorf("config: app %q: peers apply to kind \"mgmt\" only: %w", a.Name, flow.ErrInvalid)
		}
		comp := "app." + a.Name
		if seen[comp] {
			return nil, fmt.Errorf("config: app %q declared twice: %w", a.Name, flow.ErrInvalid)
		}
		seen[comp] = true
		log := base.With("component", comp)
		var (
			serve  func(ctx context.Context, p flow.Port, info flow.Info)
			serveB func(ctx context.Context, b *irm.Broker, p flow.Port, info flow.Info) // serve with the app's session
			peers  []string                                                              // bind for these peers only
			isMgmt bool
		)
		switch a.Kind {
		case "echo":
			serve = func(ctx context.Context, p flow.Port, info flow.Info) {
				start := time.Now()
				log.Info("flow opened", "flow", info.ID, "from", orDash(info.Remote), "layer", info.Layer)
				sdus, bytes, err := echoFlow(ctx, p, info.SDULimit())
				log.Info("flow closed", "flow", info.ID, "sdus", sdus, "bytes", bytes,
					"took", time.Since(start).Round(time.Millisecond), logx.Err(err))
			}
		case "perf":
			serve = func(ctx context.Context, p flow.Port, info flow.Info) {
				log.Info("flow opened", "flow", info.ID, "from", orDash(info.Remote), "layer", info.Layer)
				r, err := probe.ServePerf(p, ctx.Done())
				pps, bps := probe.Rate(r.SDUs, r.Bytes, time.Duration(r.SpanNS))
				log.Info("flow closed", "flow", info.ID, "sdus", r.SDUs, "bytes", r.Bytes,
					"sdu_per_s", math.Round(pps), "mbit_per_s", math.Round(bps/1e5)/10, logx.Err(err))
			}
		case "halt":
			if env.Halt == nil {
				return nil, fmt.Errorf("config: app %q: this image cannot halt: %w", a.Name, flow.ErrInvalid)
			}
			var once atomic.Bool
			serve = func(ctx context.Context, p flow.Port, info flow.Info) {
				defer p.Close()
				buf := make([]byte, flow.MaxSDU)
				n, err := p.Read(buf, time.Now().Add(10*time.Second))
				if err != nil {
					return
				}
				word, arg, _ := strings.Cut(string(buf[:n]), " ")
				code, err := strconv.Atoi(strings.TrimSpace(arg))
				if word != "halt" || err != nil || code < 0 || code > 255 {
					p.Write([]byte("want: halt CODE"), time.Now().Add(time.Second))
					return
				}
				if !once.CompareAndSwap(false, true) {
					return
				}
				log.Warn("halt requested", "code", code, "by", orDash(info.Remote))
				p.Write([]byte("ok"), time.Now().Add(time.Second))
				env.Halt(code)
			}
		case "mgmt":
			// Management authority, for capture (which the IRM counts as
			// a change); mgmtflow.Handle answers read-only commands only.
			if len(a.Peers) == 0 {
				return nil, fmt.Errorf("config: app %q: kind \"mgmt\" needs peers, the node ids (ouro id) it takes flows from: without them it would refuse every flow: %w", a.Name, flow.ErrInvalid)
			}
			if err := irm.CheckPeers(a.Peers); err != nil {
				return nil, fmt.Errorf("config: app %q: %w", a.Name, err)
			}
			peers, isMgmt = slices.Clone(a.Peers), true
			serveB = func(ctx context.Context, b *irm.Broker, p flow.Port, info flow.Info) {
				if err := mgmtflow.Admit(info, peers); err != nil {
					log.Warn("flow refused", "err", err)
					return
				}
				log.Info("flow opened", "flow", info.ID, "from", info.Peer)
				err := mgmtflow.Serve(ctx, p, info, b)
				log.Info("flow closed", "flow", info.ID, logx.Err(err))
			}
		default:
			return nil, fmt.Errorf("config: app %q: unknown kind %q (want echo, perf, halt or mgmt): %w", a.Name, a.Kind, flow.ErrInvalid)
		}
		if serveB == nil {
			serveB = func(ctx context.Context, _ *irm.Broker, p flow.Port, info flow.Info) { serve(ctx, p, info) }
		}
		xs = append(xs, Extra{Name: comp, Bufs: a.Bufs, Mgmt: isMgmt, Program: appProgram(a.Name, peers, log, serveB)})
	}
	return xs, nil
}

// appProgram binds name (for flows from peers only, if any) and runs serve
// on every flow allocated to it, each in its own goroutine of the
// component, until the component stops.
func appProgram(name string, peers []string, log *slog.Logger, serve func(context.Context, *irm.Broker, flow.Port, flow.Info)) kernel.Program {
	return func(pd *kernel.PD) error {
		ep, err := pd.Slot(slotIRM)
		if err != nil {
			return err
		}
		ctx := pd.Context()
		// The IRM starts alongside: retry until it opens a session and
		// takes the name.
		var b *irm.Broker
		defer func() {
			if b != nil {
				b.Close()
			}
		}()
		for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
			if b == nil {
				b, err = irm.OpenSession(ctx, pd, ep, irm.SessionReq{})
			}
			if b != nil {
				if len(peers) > 0 {
					err = b.BindPeers(ctx, name, peers)
				} else {
					err = b.Bind(ctx, name)
				}
				if err == nil {
					break
				}
			}
			if ctx.Err() != nil {
				return nil
			}
			log.Debug("bind failed, retrying", "err", err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
		}
		for {
			p, info, err := b.Accept(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("app %s: accept: %w", name, err)
			}
			pd.Go(func() {
				stop := context.AfterFunc(ctx, func() { p.Close() })
				defer stop()
				defer p.Close()
				serve(ctx, b, p, info)
			})
		}
	}
}

// echoFlow writes every SDU read from p (at most sdu bytes each) back
// until the flow or ctx ends.
func echoFlow(ctx context.Context, p flow.Port, sdu int) (sdus, bytes uint64, err error) {
	buf := make([]byte, max(sdu, flow.MaxSDU))
	for {
		n, err := p.Read(buf, time.Time{})
		if err != nil {
			if errors.Is(err, flow.ErrClosed) || ctx.Err() != nil {
				err = nil
			}
			return sdus, bytes, err
		}
		if err := p.Write(buf[:n], time.Time{}); err != nil {
			if errors.Is(err, flow.ErrClosed) || ctx.Err() != nil {
				err = nil
			}
			return sdus, bytes, err
		}
		sdus++
		bytes += uint64(n)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}
