package broadcast_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/broadcast"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/layertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// registrar records registrations.
type registrar struct {
	mu   sync.Mutex
	regs []string
}

func (r *registrar) Reg(_ context.Context, name, layer string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.regs = append(r.regs, name+"@"+layer)
	return nil
}

// layerUnderTest is n broadcast IPCPs on one fake broker, each with
// programs joined to it.
type layerUnderTest struct {
	base  *flowtest.Broker
	ipcps []*broadcast.IPCP
	apps  [][]flow.Port // apps[i]: the programs joined at member i
	reg   *registrar
}

// build starts n members connected by edges (i lists j for each [i, j])
// and joins perMember programs at each; it returns once every flow is up.
func build(t *testing.T, n, perMember int, edges [][2]int) *layerUnderTest {
	t.Helper()
	base := flowtest.NewBroker(512)
	l := &layerUnderTest{base: base, reg: &registrar{}}
	degree := make([]int, n)
	nbrs := make([][]string, n)
	for _, e := range edges {
		nbrs[e[0]] = append(nbrs[e[0]], fmt.Sprintf("m%d.bc", e[1]))
		degree[e[0]]++
		degree[e[1]]++
	}
	for i := range n {
		name := fmt.Sprintf("m%d.bc", i)
		p, err := broadcast.New(broadcast.Config{
			Layer: "bc", Name: name, Neighbours: nbrs[i], Lower: []string{"udp"},
			Retry: 10 * time.Millisecond, WriteTimeout: time.Second, Runner: layertest.Runner{},
		}, base.Program(name), l.reg)
		if err != nil {
			t.Fatal(err)
		}
		l.ipcps = append(l.ipcps, p)
	}
	for _, p := range l.ipcps { // bind every name before anyone allocates
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
	}
	for i, p := range l.ipcps {
		var apps []flow.Port
		for range perMember {
			app, ipcpEnd := flowtest.Pipe(512)
			if err := p.Join(context.Background(), ipcpEnd); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { app.Close() })
			apps = append(apps, app)
		}
		l.apps = append(l.apps, apps)
		waitFor(t, fmt.Sprintf("member %d's %d flows", i, degree[i]), func() bool {
			s := p.Stats()
			return s.Neighbors == degree[i] && s.Members == perMember
		})
	}
	return l
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// exactlyOnce has every program write sdus SDUs and checks that every
// other program reads each exactly once, and nothing else.
func (l *layerUnderTest) exactlyOnce(t *testing.T, sdus int) {
	t.Helper()
	var all []flow.Port
	for _, apps := range l.apps {
		all = append(all, apps...)
	}
	want := (len(all) - 1) * sdus
	got := make([]map[string]int, len(all))
	var wg sync.WaitGroup
	for r, app := range all {
		got[r] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, flow.MaxSDU)
			for n := 0; ; n++ {
				deadline := time.Now().Add(10 * time.Second)
				if n >= want {
					deadline = time.Now().Add(100 * time.Millisecond) // anything extra?
				}
				k, err := app.Read(buf, deadline)
				if err != nil {
					return
				}
				got[r][string(buf[:k])]++
			}
		}()
	}
	for w, app := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range sdus {
				if err := app.Write([]byte(fmt.Sprintf("from %d #%d", w, s)), time.Now().Add(5*time.Second)); err != nil {
					t.Errorf("program %d write: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for r := range all {
		n := 0
		for msg, c := range got[r] {
			n += c
			if c != 1 {
				t.Errorf("program %d got %q %d times, want once", r, msg, c)
			}
			if strings.HasPrefix(msg, fmt.Sprintf("from %d #", r)) {
				t.Errorf("program %d got its own %q", r, msg)
			}
		}
		if n != want {
			t.Errorf("program %d got %d SDUs, want %d", r, n, want)
		}
	}
}

func (l *layerUnderTest) totals() broadcast.Stats {
	var s broadcast.Stats
	for _, p := range l.ipcps {
		x := p.Stats()
		s.ToNeighbors += x.ToNeighbors
		s.Duplicates += x.Duplicates
		s.Dropped += x.Dropped
		s.Own += x.Own
	}
	return s
}

func TestRing(t *testing.T) {
	var edges [][2]int
	for i := range 10 {
		edges = append(edges, [2]int{i, (i + 1) % 10})
	}
	l := build(t, 10, 1, edges)
	l.exactlyOnce(t, 50)
	s := l.totals()
	t.Logf("ring of 10, 50 SDUs each: %d packets between members, %d duplicates suppressed, %d dropped", s.ToNeighbors, s.Duplicates, s.Dropped)
	if s.Dropped != 0 {
		t.Errorf("got %d drops, want 0", s.Dropped)
	}
	if got := len(l.reg.regs); got != 10 || !slices.Contains(l.reg.regs, "m3.bc@udp") {
		t.Errorf("got registrations %v, want each name in udp", l.reg.regs)
	}
}

func TestMesh(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	var edges [][2]int
	for i := 1; i < 10; i++ { // a random spanning tree, then extra edges
		edges = append(edges, [2]int{i, r.IntN(i)})
	}
	for len(edges) < 20 {
		a, b := r.IntN(10), r.IntN(10)
		if a != b && !slices.ContainsFunc(edges, func(e [2]int) bool { return e == [2]int{a, b} || e == [2]int{b, a} }) {
			edges = append(edges, [2]int{a, b})
		}
	}
	l := build(t, 10, 2, edges) // two programs per member: local delivery too
	l.exactlyOnce(t, 30)
	s := l.totals()
	t.Logf("mesh of 10 (20 edges), 2 programs each, 30 SDUs each: %d packets between members, %d duplicates suppressed", s.ToNeighbors, s.Duplicates)
	if s.Duplicates == 0 {
		t.Error("a mesh with cycles suppressed no duplicates")
	}
}

// TestReconnect: when a neighbour restarts, the member that lists it
// allocates a new flow to it, and floods reach the new incarnation (a new
// origin id: its sequence numbers start again).
func TestReconnect(t *testing.T) {
	l := build(t, 2, 1, [][2]int{{0, 1}})
	l.exactlyOnce(t, 5)
	l.ipcps[1].Stop()
	waitFor(t, "member 0 to see the flow close", func() bool { return l.ipcps[0].Stats().Neighbors == 0 })
	p, err := broadcast.New(broadcast.Config{Layer: "bc", Name: "m1.bc", Retry: 10 * time.Millisecond, Runner: layertest.Runner{}}, l.base.Program("m1.bc"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	app, end := flowtest.Pipe(64)
	t.Cleanup(func() { app.Close() })
	if err := p.Join(context.Background(), end); err != nil {
		t.Fatal(err)
	}
	l.ipcps[1], l.apps[1][0] = p, app
	waitFor(t, "the flow to the new incarnation", func() bool { return p.Stats().Neighbors == 1 })
	l.exactlyOnce(t, 5)
}

func TestContract(t *testing.T) {
	br := flowtest.NewBroker(4)
	if _, err := broadcast.New(broadcast.Config{Layer: "bc"}, br, nil); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("no name: got %v, want ErrInvalid", err)
	}
	if _, err := broadcast.New(broadcast.Config{Layer: "bc", Name: "a", Lower: []string{"x"}, Runner: layertest.Runner{}}, br, nil); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("lower layers without a registrar: got %v, want ErrInvalid", err)
	}
	if _, err := broadcast.New(broadcast.Config{Layer: "bc", Name: "a"}, br, nil); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("no runner: got %v, want ErrInvalid", err)
	}
	p, err := broadcast.New(broadcast.Config{Layer: "bc", Name: "a", Runner: layertest.Runner{}}, br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, port := flowtest.Pipe(1)
	defer port.Close()
	if err := p.Join(context.Background(), port); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("join before start: got %v, want ErrInvalid", err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Alloc(ctx, ipcp.AllocReq{Dst: "x"}, port); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("alloc: got %v, want ErrInvalid", err)
	}
	if err := p.Register(ctx, "x"); !errors.Is(err, flow.ErrInvalid) {
		t.Errorf("register: got %v, want ErrInvalid", err)
	}
	if err := p.Query(ctx, "bc"); err != nil {
		t.Errorf("query the layer: got %v, want nil", err)
	}
	if err := p.Query(ctx, "x"); !errors.Is(err, flow.ErrNotFound) {
		t.Errorf("query x: got %v, want ErrNotFound", err)
	}
	if got := p.Info(); got.Kind != "broadcast" || got.State != "operational" {
		t.Errorf("got info %+v", got)
	}
	if _, err := p.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats"}); err != nil {
		t.Error(err)
	}
	app, end := flowtest.Pipe(1)
	defer app.Close()
	if err := p.Join(ctx, end); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	p.Stop()
	if err := p.Join(ctx, port); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("join after stop: got %v, want ErrClosed", err)
	}
	buf := make([]byte, 4)
	if _, err := app.Read(buf, time.Now().Add(time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("a program's port after stop: got %v, want ErrClosed", err)
	}
}
