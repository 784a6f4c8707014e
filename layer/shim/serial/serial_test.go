package serial

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/ipcp/ipcptest"
	"github.com/ouronet/ouro/layer/layertest"
	"github.com/ouronet/ouro/layer/shim/serial/serialtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type node struct {
	ipcp *IPCP
	up   *ipcptest.Upcalls
}

// fast are timings for tests: a dead link is found within 300 ms.
func fast(cfg Config) Config {
	if cfg.Keepalive == 0 {
		cfg.Keepalive = 50 * time.Millisecond
	}
	if cfg.DeadTime == 0 {
		cfg.DeadTime = 300 * time.Millisecond
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = 20 * time.Millisecond
	}
	cfg.RetryBase = 10 * time.Millisecond
	cfg.QueryTimeout = 300 * time.Millisecond
	return cfg
}

func start(t testing.TB, name string, dev Device, cfg Config) *node {
	t.Helper()
	up := ipcptest.NewUpcalls(256)
	cfg.Layer, cfg.Name, cfg.Device, cfg.Runner = "serial.test", name, dev, layertest.Runner{}
	p, err := New(fast(cfg), up)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &node{p, up}
}

// pairOn starts shims a and b on the two ends of a link; b serves "srv".
// It waits for the handshake.
func pairOn(t testing.TB, da, db Device, cfg Config) (a, b *node) {
	t.Helper()
	a, b = start(t, "a", da, cfg), start(t, "b", db, cfg)
	if err := b.ipcp.Register(context.Background(), "srv"); err != nil {
		t.Fatal(err)
	}
	waitUp(t, a, b)
	return a, b
}

func waitUp(t testing.TB, nodes ...*node) {
	t.Helper()
	waitFor(t, 5*time.Second, func() bool {
		for _, n := range nodes {
			if n.ipcp.Link().State != "up" {
				return false
			}
		}
		return true
	})
}

func dial(t testing.TB, a, b *node, name string) (client, server flow.Port) {
	t.Helper()
	app, ipcpEnd := flowtest.Pipe(256)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.ipcp.Alloc(ctx, ipcp.AllocReq{ID: 1, Dst: name, QoS: flow.BestEffort()}, ipcpEnd); err != nil {
		t.Fatalf("alloc %q: %v", name, err)
	}
	select {
	case acc := <-b.up.Accepted:
		t.Cleanup(func() { acc.Port.Close() })
		t.Cleanup(func() { app.Close() })
		return app, acc.Port
	case <-ctx.Done():
		t.Fatal("no flow accepted")
	}
	return nil, nil
}

func roundTrip(t testing.TB, from, to flow.Port, msg []byte) {
	t.Helper()
	if err := from.Write(msg, time.Now().Add(5*time.Second)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, flow.MaxSDU)
	n, err := to.Read(buf, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(buf[:n], msg) {
		t.Fatalf("got %d bytes %.16x, want %d bytes %.16x", n, buf[:n], len(msg), msg)
	}
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached")
}

func readClosed(t testing.TB, p flow.Port, within time.Duration) {
	t.Helper()
	buf := make([]byte, flow.MaxSDU)
	deadline := time.Now().Add(within)
	for {
		_, err := p.Read(buf, deadline)
		if errors.Is(err, flow.ErrClosed) {
			return
		}
		if err != nil {
			t.Fatalf("read: got %v, want ErrClosed", err)
		}
	}
}

// exchange allocates, moves SDUs of several sizes (all byte values, zero
// runs) both ways and checks that closing one end deallocates the other.
func exchange(t *testing.T, a, b *node) {
	t.Helper()
	if err := a.ipcp.Query(context.Background(), "srv"); err != nil {
		t.Fatalf("query srv: %v", err)
	}
	if err := a.ipcp.Query(context.Background(), "nobody"); !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("query nobody: got %v, want ErrNotFound", err)
	}
	client, server := dial(t, a, b, "srv")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, msg := range [][]byte{{0}, {1}, make([]byte, 300), all, bytes.Repeat([]byte{0xff}, 600), bytes.Repeat(all, 6)[:flow.MaxSDU]} {
		roundTrip(t, client, server, msg)
		roundTrip(t, server, client, msg)
	}
	client.Close()
	readClosed(t, server, 3*time.Second)
	waitFor(t, 3*time.Second, func() bool { return len(a.ipcp.Flows()) == 0 && len(b.ipcp.Flows()) == 0 })
}

func TestCable(t *testing.T) {
	_, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
	a, b := pairOn(t, ea, eb, Config{})
	exchange(t, a, b)
	_, port := flowtest.Pipe(1)
	b.up.Refuse(flow.ErrRefused)
	if err := a.ipcp.Alloc(context.Background(), ipcp.AllocReq{Dst: "srv"}, port); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("alloc refused: got %v, want ErrRefused", err)
	}
	waitFor(t, 3*time.Second, func() bool {
		st := a.ipcp.Stats()
		return st.FlowsOut == 1 && st.AllocFailed == 1 && st.PacketsOut == 6 && st.PacketsIn == 6
	})
	if l := a.ipcp.Link(); l.Ups != 1 || l.BadCRC != 0 || l.FramesIn == 0 {
		t.Errorf("link stats %+v", l)
	}
	if got := a.ipcp.Info(); got.Kind != "serial" || got.State != "operational" {
		t.Errorf("info %+v", got)
	}
}

func TestConfig(t *testing.T) {
	_, ea, _ := serialtest.NewCable(serialtest.CableConfig{})
	up := ipcptest.NewUpcalls(1)
	run := layertest.Runner{}
	for _, cfg := range []Config{
		{Name: "x", Device: ea, Runner: run},
		{Layer: "l", Name: "x", Runner: run},
		{Layer: "l", Name: "x", Device: ea},
		{Layer: "l", Name: "x", Device: ea, Window: 100, Runner: run},
		{Layer: "l", Name: "x", Device: ea, Keepalive: time.Second, DeadTime: time.Second, Runner: run},
	} {
		if _, err := New(cfg, up); !errors.Is(err, flow.ErrInvalid) {
			t.Errorf("New(%+v): got %v, want ErrInvalid", cfg, err)
		}
	}
	if _, err := New(Config{Layer: "l", Name: "x", Device: ea, Runner: layertest.Runner{}}, nil); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("nil upcalls: got %v", err)
	}
	p, err := New(Config{Layer: "l", Name: "x", Device: ea, Runner: layertest.Runner{}}, up)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Query(context.Background(), "srv"); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("query before start: got %v", err)
	}
	p.Stop()
	p.Stop()
	if err := p.Start(); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("start after stop: got %v", err)
	}
}

// TestNoise runs the link over a line that drops, corrupts and injects
// bytes: the handshake and allocation get through, SDUs that arrive are
// intact, and the damage is counted.
func TestNoise(t *testing.T) {
	_, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
	noise := serialtest.NoiseConfig{Drop: 0.0005, Corrupt: 0.0005, Garbage: 0.2}
	noise.Seed = 1
	na := serialtest.NewNoisy(ea, noise)
	noise.Seed = 2
	nb := serialtest.NewNoisy(eb, noise)
	a, b := pairOn(t, na, nb, Config{DeadTime: 2 * time.Second})
	client, server := dial(t, a, b, "srv")
	const n = 300
	go func() {
		msg := make([]byte, 400)
		for i := range n {
			binary.BigEndian.PutUint32(msg, uint32(i))
			for j := 4; j < len(msg); j++ {
				msg[j] = byte(i * j)
			}
			if client.Write(msg, time.Now().Add(5*time.Second)) != nil {
				return
			}
		}
	}()
	buf := make([]byte, flow.MaxSDU)
	got := 0
	last := -1
	for {
		k, err := server.Read(buf, time.Now().Add(time.Second))
		if err != nil {
			break
		}
		i := int(binary.BigEndian.Uint32(buf))
		if k != 400 || i <= last || i >= n {
			t.Fatalf("SDU %d after %d, %d bytes", i, last, k)
		}
		for j := 4; j < k; j++ {
			if buf[j] != byte(i*j) {
				t.Fatalf("SDU %d corrupted at byte %d", i, j)
			}
		}
		last = i
		got++
		if i == n-1 {
			break
		}
	}
	la, lb := a.ipcp.Link(), b.ipcp.Link()
	t.Logf("delivered %d of %d; noise a %d/%d/%d b %d/%d/%d; link a %+v; link b %+v", got, n,
		na.Dropped.Load(), na.Corrupted.Load(), na.Injected.Load(),
		nb.Dropped.Load(), nb.Corrupted.Load(), nb.Injected.Load(), la, lb)
	if got < n/2 {
		t.Errorf("delivered %d of %d SDUs", got, n)
	}
	if b.ipcp.Stats().Drops.Malformed == 0 {
		t.Error("no malformed frames counted on a noisy line")
	}
	if la.Ups != 1 || lb.Ups != 1 {
		t.Errorf("sessions: a %d, b %d ups; want 1 (noise must not kill the link)", la.Ups, lb.Ups)
	}
}

// TestDeadLink cuts the cable: both ends find the link dead, close their
// flows and refuse new ones; mended, the link comes back.
func TestDeadLink(t *testing.T) {
	cable, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
	a, b := pairOn(t, ea, eb, Config{})
	client, server := dial(t, a, b, "srv")
	roundTrip(t, client, server, []byte("before"))
	cable.Cut(true)
	readClosed(t, client, 2*time.Second)
	readClosed(t, server, 2*time.Second)
	if l := a.ipcp.Link(); l.State != "down" || l.Dead != 1 {
		t.Fatalf("link a after the cut: %+v", l)
	}
	_, port := flowtest.Pipe(1)
	if err := a.ipcp.Alloc(context.Background(), ipcp.AllocReq{Dst: "srv"}, port); !errors.Is(err, flow.ErrPeerGone) || !errors.Is(err, flow.ErrNotFound) {
		t.Fatalf("alloc on a dead link: got %v, want ErrNotFound and ErrPeerGone", err)
	}
	cable.Cut(false)
	waitUp(t, a, b)
	client, server = dial(t, a, b, "srv")
	roundTrip(t, client, server, []byte("after"))
	if st := a.ipcp.Stats(); st.FlowsOut != 2 || st.FlowsActive != 1 {
		t.Errorf("stats across sessions: %+v", st)
	}
}

// nopClose keeps a cable end open across a shim's Stop, to restart a peer
// on the same end (the read deadline ends the old receive goroutine).
type nopClose struct{ *serialtest.End }

func (nopClose) Close() error { return nil }

// TestPeerRestart stops b, which says bye: a closes the flows at once;
// a new b on the same line brings the link up again.
func TestPeerRestart(t *testing.T) {
	_, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
	a := start(t, "a", ea, Config{DeadTime: 10 * time.Second, Keepalive: time.Second})
	b := start(t, "b", nopClose{eb}, Config{DeadTime: 10 * time.Second, Keepalive: time.Second})
	b.ipcp.Register(context.Background(), "srv")
	waitUp(t, a, b)
	client, _ := dial(t, a, b, "srv")
	b.ipcp.Stop()
	readClosed(t, client, time.Second) // long before the 10 s dead time
	if l := a.ipcp.Link(); l.Byes != 1 || l.State != "down" {
		t.Fatalf("link a after bye: %+v", l)
	}
	b2 := start(t, "b2", eb, Config{DeadTime: 10 * time.Second, Keepalive: time.Second})
	b2.ipcp.Register(context.Background(), "srv")
	waitUp(t, a, b2)
	client, server := dial(t, a, b2, "srv")
	roundTrip(t, client, server, []byte("again"))
	roundTrip(t, server, client, []byte("back"))
}

// TestFlowControl sends faster than a slow receiver reads through a small
// FIFO that overruns (drops) like a UART's: with a window that fits the
// FIFO nothing overruns and every SDU arrives; with a window far beyond
// it the FIFO overruns.
func TestFlowControl(t *testing.T) {
	run := func(t *testing.T, window int) (overruns uint64, got int) {
		_, ea, eb := serialtest.NewCable(serialtest.CableConfig{FIFO: 4096, ReadChunk: 256, ReadDelay: 2 * time.Millisecond})
		a, b := pairOn(t, ea, eb, Config{Window: window, Keepalive: time.Second, DeadTime: 5 * time.Second})
		client, server := dial(t, a, b, "srv")
		const n = 60
		done := make(chan struct{})
		go func() {
			defer close(done)
			msg := make([]byte, flow.MaxSDU)
			for i := range n {
				msg[0] = byte(i)
				if client.Write(msg, time.Now().Add(5*time.Second)) != nil {
					return
				}
			}
		}()
		buf := make([]byte, flow.MaxSDU)
		for got < n {
			if _, err := server.Read(buf, time.Now().Add(time.Second)); err != nil {
				break
			}
			if buf[0] != byte(got) && window < 1<<16 {
				t.Fatalf("SDU %d arrived as %d", buf[0], got)
			}
			got++
		}
		<-done
		return eb.Overruns(), got
	}
	t.Run("window fits", func(t *testing.T) {
		over, got := run(t, 3000)
		if over != 0 || got != 60 {
			t.Fatalf("got %d of 60 SDUs, %d bytes overrun; want all, 0", got, over)
		}
	})
	t.Run("window too big", func(t *testing.T) {
		over, got := run(t, 1<<20)
		t.Logf("without fitting credit: %d of 60 SDUs, %d bytes overrun", got, over)
		if over == 0 {
			t.Fatal("the FIFO never overran: the test does not exercise flow control")
		}
	})
}

// TestCreditRecovery loses frames (a cut shorter than the dead time) while
// a sender is out of credit: probes restore it.
func TestCreditRecovery(t *testing.T) {
	cable, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
	a, b := pairOn(t, ea, eb, Config{Window: MaxEncoded, DeadTime: 2 * time.Second})
	client, server := dial(t, a, b, "srv")
	cable.Cut(true)
	msg := make([]byte, flow.MaxSDU)
	for range 3 { // the first is lost on the cut, then credit runs out
		client.Write(msg, time.Now().Add(time.Second))
	}
	time.Sleep(100 * time.Millisecond)
	cable.Cut(false)
	buf := make([]byte, flow.MaxSDU)
	n := 0
	for {
		if _, err := server.Read(buf, time.Now().Add(time.Second)); err != nil {
			break
		}
		n++
	}
	if n == 0 {
		t.Fatal("nothing arrived after the cut: credit was not restored")
	}
	roundTrip(t, client, server, []byte("still flowing"))
	if l := a.ipcp.Link(); l.Probes == 0 || l.Ups != 1 {
		t.Errorf("link a %+v: want probes and one session", l)
	}
}

// TestEchoAllocs proves the data path allocates nothing per SDU, end to
// end: port → transmit goroutine → frame → cable → decoder → port.
func TestEchoAllocs(t *testing.T) {
	_, ea, eb := serialtest.NewCable(serialtest.CableConfig{})
	a, b := pairOn(t, ea, eb, Config{Keepalive: time.Hour, DeadTime: 2 * time.Hour})
	client, server := dial(t, a, b, "srv")
	msg := bytes.Repeat([]byte{0, 1, 2}, 400)
	buf := make([]byte, flow.MaxSDU)
	for range 50 { // warm up buffers
		roundTrip(t, client, server, msg)
	}
	n := testing.AllocsPerRun(200, func() {
		client.Write(msg, time.Time{})
		server.Read(buf, time.Time{})
	})
	if n > 0.1 {
		t.Errorf("got %v allocs per SDU, want 0", n)
	}
}

// FuzzInput runs arbitrary bytes through a running shim's receive path
// (decoder, header checks, session and engine dispatch).
func FuzzInput(f *testing.F) {
	f.Add(AppendFrame(nil, make([]byte, DataLen+4)))
	h := Header(make([]byte, HelloLen))
	h.SetHeader(TypeHello, 0, 1, 2)
	h.SetHello(3, 4)
	f.Add(AppendFrame(nil, h))
	f.Add([]byte{0, 0, 0xff, 1})
	_, ea, _ := serialtest.NewCable(serialtest.CableConfig{})
	p, err := New(Config{Layer: "l", Name: "x", Device: ea, Runner: layertest.Runner{}}, ipcptest.NewUpcalls(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(p.Stop)
	f.Fuzz(func(t *testing.T, b []byte) {
		p.feed(b)
	})
}

// openPTY returns both ends of a new pty pair, or skips the test.
func openPTY(t testing.TB) (master, slave *os.File) {
	t.Helper()
	m, path, err := OpenPTY()
	if err != nil {
		t.Skipf("no pty: %v (needs /dev/ptmx and devpts)", err)
	}
	s, err := OpenTTY(path, 115200) // a pty ignores the speed; this checks the termios path
	if err != nil {
		m.Close()
		t.Skipf("cannot open the pty slave %s: %v", path, err)
	}
	return m, s
}
