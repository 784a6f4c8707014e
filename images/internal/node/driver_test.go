package node

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// wakeStream is a QEMU stream device that can be woken, as the boards'
// NICs can: a pump goroutine reads the stream, ReadFrame waits for its
// next frame or a Wake.
type wakeStream struct {
	eth.Device
	rx   chan []byte
	err  chan error
	wake chan struct{}
}

var _ netstack.Waker = (*wakeStream)(nil)

func newWakeStream(d eth.Device) *wakeStream {
	w := &wakeStream{Device: d, rx: make(chan []byte, 64), err: make(chan error, 1), wake: make(chan struct{}, 1)}
	go func() {
		for {
			b := make([]byte, 2048)
			n, err := d.ReadFrame(b)
			if err != nil {
				w.err <- err
				return
			}
			w.rx <- b[:n]
		}
	}()
	return w
}

func (w *wakeStream) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-w.rx:
		return copy(b, f), nil
	case err := <-w.err:
		w.err <- err
		return 0, err
	case <-w.wake:
		return 0, netstack.ErrWoken
	}
}

func (w *wakeStream) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// logBuf collects a node's log lines.
type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, strings.TrimRight(string(p), "\n"))
	l.mu.Unlock()
	return len(p), nil
}

func (l *logBuf) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// boardPair starts node "v" with an Ethernet shim on a board link (a
// test device standing for the board NIC, under its driver component)
// and an echo app, and node "h" with an Ethernet shim on the other end
// of a QEMU stream; it returns v, v's log, a management broker on each,
// and a flow from h to v's echo.
func boardPair(t *testing.T) (v *Node, vlog *logBuf, bv, bh *irm.Broker, p flow.Port) {
	t.Helper()
	vlog = &logBuf{}
	v, bv, bh = boardNode(t, "[node]\nname = \"v\"\n[[ipcp]]\nkind = \"eth\"\nlayer = \"eth\"\n[ipcp.eth]\nboard = true\n[[app]]\nkind = \"echo\"\n",
		func(v *Node) {
			v.log = slog.New(slog.NewTextHandler(vlog, &slog.HandlerOptions{Level: slog.LevelDebug}))
			// The stream cannot be re-initialised; what is tested is that a
			// restarted driver asks for it (driver.device_resets).
			v.resetLink = func(boardPort) func() error { return func() error { return nil } }
		})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		var err error
		p, _, err = bh.Alloc(ctx, "echo", flow.BestEffort())
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("alloc echo: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { p.Close() })
	return v, vlog, bv, bh, p
}

// echoOnce writes one SDU on p and waits up to d for its echo.
func echoOnce(t *testing.T, p flow.Port, msg string, d time.Duration) bool {
	t.Helper()
	dl := time.Now().Add(d)
	if err := p.Write([]byte(msg), dl); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := p.Read(buf, dl)
		if err != nil {
			return false
		}
		if string(buf[:n]) == msg {
			return true
		}
	}
}

// statsRows returns ipcp's "stats" on b as counter → value.
func statsRows(t *testing.T, b *irm.Broker, proc string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: proc})
	if err != nil {
		t.Fatalf("stats %s: %v", proc, err)
	}
	m := map[string]string{}
	for _, row := range r.Table.Rows {
		if len(row) == 2 {
			m[row[0]] = row[1]
		}
	}
	return m
}

// TestBoardDriverRestart: the board link's driver is a component of its
// own; restarting it (kill, then a new incarnation: its blocked read is
// woken) keeps the shim's port, so the flow over it carries on; the
// shim's stats show the driver's incarnations.
func TestBoardDriverRestart(t *testing.T) {
	v, _, bv, _, p := boardPair(t)
	if !echoOnce(t, p, "before", 5*time.Second) {
		t.Fatal("no echo before the restart")
	}
	if st, _, err := v.Kernel().State("driver.enet"); err != nil || st != "running" {
		t.Fatalf("driver.enet: %q, %v; want running", st, err)
	}
	// The driver holds exactly Read on its attach endpoint, the shim's
	// component Write with Grant on it (to attach the rings it makes):
	// frames cross by those rings.
	sys := v.System()
	var drv, shim []string
	for _, c := range sys.Components {
		for _, cp := range c.Caps {
			e := fmt.Sprintf("%s=%s/%v", cp.Name, cp.Object, cp.Rights)
			switch {
			case c.Name == "driver.enet":
				drv = append(drv, e)
			case c.Name == "ipcp.v.eth" && strings.HasPrefix(cp.Object, "driver.enet."):
				shim = append(shim, e)
			}
		}
	}
	sort.Strings(drv)
	sort.Strings(shim)
	wantDrv := fmt.Sprint([]string{fmt.Sprintf("attach=driver.enet.attach/%v", kernel.Read)})
	wantShim := fmt.Sprint([]string{fmt.Sprintf("board.enet=driver.enet.attach/%v", kernel.Write|kernel.Grant|kernel.GrantReply)})
	if fmt.Sprint(drv) != wantDrv || fmt.Sprint(shim) != wantShim {
		t.Errorf("caps: driver.enet %v, want %s; ipcp.v.eth on the driver's objects %v, want %s", drv, wantDrv, shim, wantShim)
	}
	start := time.Now()
	if err := v.Kernel().Restart("driver.enet"); err != nil {
		t.Fatalf("restart driver.enet: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("restarting the driver took %v: its read was not woken", d)
	}
	if !echoOnce(t, p, "after", 5*time.Second) {
		t.Fatal("no echo on the same flow after the driver's restart")
	}
	rows := statsRows(t, bv, "v.eth")
	if rows["driver.component"] != "driver.enet" || rows["driver.incarnations"] != "2" || rows["driver.faults"] != "0" || rows["driver.device_resets"] != "1" {
		t.Errorf("stats v.eth: driver rows %v, want driver.enet, 2 incarnations, 0 faults, 1 device reset (the restart's)", rows)
	}
	for _, c := range []string{"driver.rx_frames", "driver.tx_frames"} {
		if n, _ := fmt.Sscan(rows[c], new(uint64)); n != 1 || rows[c] == "0" {
			t.Errorf("stats v.eth: %s %q, want a positive count", c, rows[c])
		}
	}
	if rows["driver.tx_errors"] != "0" {
		t.Errorf("stats v.eth: driver.tx_errors %q, want 0", rows["driver.tx_errors"])
	}
}

// TestBoardLinkShimRestart: the shim on a board link is restarted (its
// component killed and started again) and opens its port again: the link
// comes back (before, the mux's reader ran on the shim's runner and died
// with it).
func TestBoardLinkShimRestart(t *testing.T) {
	v, _, _, bh, p := boardPair(t)
	if !echoOnce(t, p, "before", 5*time.Second) {
		t.Fatal("no echo before the restart")
	}
	if err := v.Kernel().Restart("ipcp.v.eth"); err != nil {
		t.Fatalf("restart ipcp.v.eth: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		q, _, err := bh.Alloc(ctx, "echo", flow.BestEffort())
		if err == nil {
			ok := echoOnce(t, q, "after", 2*time.Second)
			q.Close()
			if ok {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no echo over the board link 20s after the shim's restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
