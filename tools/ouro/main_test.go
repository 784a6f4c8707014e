package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp"
	"go.uber.org/goleak"
)

// TestMain fails the package if a server, flow or probe goroutine
// outlives the test that started it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNode is a node for the tool: a program on a fake in-memory IRM, and
// a management handler that records the requests.
type fakeNode struct {
	*flowtest.Broker
	mgmt *fakeMgmt
}

type fakeMgmt struct {
	mu     sync.Mutex
	reqs   []ipcp.MgmtReq
	answer func(ipcp.MgmtReq) (ipcp.MgmtResp, error)
}

func (n fakeNode) Mgmt(ctx context.Context, req, resp any) error {
	r := req.(ipcp.MgmtReq)
	n.mgmt.mu.Lock()
	n.mgmt.reqs = append(n.mgmt.reqs, r)
	answer := n.mgmt.answer
	n.mgmt.mu.Unlock()
	if answer == nil {
		return fmt.Errorf("irm: unknown command %q: %w", r.Cmd, flow.ErrInvalid)
	}
	out, err := answer(r)
	if err == nil {
		*resp.(*ipcp.MgmtResp) = out
	}
	return err
}

// testNet is one fake node that several runs of the tool talk to.
type testNet struct {
	root *flowtest.Broker
	mgmt *fakeMgmt
	mu   sync.Mutex
	n    int
}

func newTestNet() *testNet {
	return &testNet{root: flowtest.NewBroker(64), mgmt: &fakeMgmt{}}
}

func (tn *testNet) dial(path string) (node, error) {
	if path != "/test/node.sock" {
		return nil, fmt.Errorf("flow: dial node at %s: %w", path, flow.ErrNotFound)
	}
	tn.mu.Lock()
	tn.n++
	name := fmt.Sprintf("program%d", tn.n)
	tn.mu.Unlock()
	return fakeNode{Broker: tn.root.Program(name), mgmt: tn.mgmt}, nil
}

// ouro runs the tool once and returns its exit code and outputs.
func (tn *testNet) ouro(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb logx.Buffer
	code = tn.start(ctx, &out, &errb, args...)
	return code, out.String(), errb.String()
}

func (tn *testNet) start(ctx context.Context, out, errb *logx.Buffer, args ...string) int {
	a := &app{stdout: out, stderr: errb, socket: "/test/node.sock", dial: tn.dial}
	return a.run(ctx, args)
}

// background runs the tool in a goroutine; wait returns its exit code.
func (tn *testNet) background(t *testing.T, ctx context.Context, args ...string) (out *logx.Buffer, wait func() int) {
	t.Helper()
	out = &logx.Buffer{}
	errb := &logx.Buffer{}
	done := make(chan int, 1)
	go func() { done <- tn.start(ctx, out, errb, args...) }()
	return out, func() int {
		select {
		case c := <-done:
			if errb.String() != "" {
				t.Logf("ouro %s stderr: %s", strings.Join(args, " "), errb.String())
			}
			return c
		case <-time.After(20 * time.Second):
			t.Fatalf("ouro %s did not end; output:\n%s", strings.Join(args, " "), out.String())
			return -1
		}
	}
}

// waitFor polls out until it contains s.
func waitFor(t *testing.T, out *logx.Buffer, s string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if o := out.String(); strings.Contains(o, s) {
			return o
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %q in output:\n%s", s, out.String())
	return ""
}

func TestUsageAndExitCodes(t *testing.T) {
	tn := newTestNet()
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no command", nil, 2, "", "usage: ouro"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "measurement commands", ""},
		{"--help", []string{"--help"}, 0, "management commands", ""},
		{"help ping", []string{"help", "ping"}, 0, "-c, --count N", ""},
		{"ping -h", []string{"ping", "-h"}, 0, "-i, --interval D", ""},
		{"help perf", []string{"help", "perf"}, 0, "--server", ""},
		{"help unknown", []string{"help", "nope"}, 2, "", "unknown command"},
		{"ping without name", []string{"ping"}, 2, "", "usage: ouro ping"},
		{"bad flag", []string{"ping", "--bogus", "x"}, 2, "", "flag provided but not defined"},
		{"bad interval", []string{"ping", "-i", "soon", "x"}, 2, "", "not a duration"},
		{"size too small", []string{"ping", "-s", "4", "x"}, 2, "", "size 4"},
		{"bad qos", []string{"ping", "--qos", "gold", "x"}, 2, "", "unknown QoS preset"},
		{"bad key=value", []string{"ipcp", "stats", "n1", "oops"}, 2, "", `"oops" is not key=value`},
		{"bad system format", []string{"system", "--format", "svg"}, 2, "", "want table, dot, mermaid or json"},
		{"reg without name", []string{"reg"}, 2, "", "wrong number of arguments"},
		{"no node", []string{"--socket", "/nowhere", "ipcps"}, 1, "", "is the node running?"},
		{"no such name", []string{"ping", "-c", "1", "nobody"}, 1, "", "name not found"},
		{"alloc no such name", []string{"alloc", "-c", "2", "-i", "0", "nobody"}, 1, "0 allocated, 2 failed", "no allocation succeeded"},
		{"alloc -c 0", []string{"alloc", "-c", "0", "pong"}, 2, "", "-c must be at least 1"},
		{"alloc bad qos", []string{"alloc", "--qos", "gold", "pong"}, 2, "", "unknown QoS preset"},
		{"echo --udp --count", []string{"echo", "--udp", "-c", "1", "127.0.0.1:0"}, 2, "", "does not apply to --udp"},
		{"echo --udp --allow", []string{"echo", "--udp", "--allow", "x", "127.0.0.1:0"}, 2, "", "does not apply to --udp"},
		{"echo --allow, a broker without peers", []string{"echo", "--allow", "x", "pong"}, 1, "", "cannot choose peers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := tn.ouro(context.Background(), tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errs)
			}
			if !strings.Contains(out, tt.inStdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.inStdout, out)
			}
			if !strings.Contains(errs, tt.inStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.inStderr, errs)
			}
		})
	}
}

func TestManagementRequests(t *testing.T) {
	tests := []struct {
		args []string
		want ipcp.MgmtReq
	}{
		{[]string{"ipcps"}, ipcp.MgmtReq{Cmd: "ipcps"}},
		{[]string{"components"}, ipcp.MgmtReq{Cmd: "components"}},
		{[]string{"bridges"}, ipcp.MgmtReq{Cmd: "bridges"}},
		{[]string{"names"}, ipcp.MgmtReq{Cmd: "names"}},
		{[]string{"flows"}, ipcp.MgmtReq{Cmd: "flows"}},
		{[]string{"reg", "srv"}, ipcp.MgmtReq{Cmd: "reg", Name: "srv"}},
		{[]string{"create", "udp", "b.udp2", "net", "--config", "addr = \"127.0.0.1:1\""}, ipcp.MgmtReq{Cmd: "create", Name: "b.udp2", Layer: "net", Args: map[string]string{"kind": "udp", "config": "addr = \"127.0.0.1:1\""}}},
		{[]string{"destroy", "b.udp2"}, ipcp.MgmtReq{Cmd: "destroy", Name: "b.udp2"}},
		{[]string{"reg", "srv", "--layer", "net"}, ipcp.MgmtReq{Cmd: "reg", Name: "srv", Layer: "net"}},
		{[]string{"unreg", "-l", "net", "srv"}, ipcp.MgmtReq{Cmd: "unreg", Name: "srv", Layer: "net"}},
		{[]string{"system"}, ipcp.MgmtReq{Cmd: "system", Args: map[string]string{"format": "table"}}},
		{[]string{"system", "--format", "mermaid"}, ipcp.MgmtReq{Cmd: "system", Args: map[string]string{"format": "mermaid"}}},
		{[]string{"ipcp", "routes", "n1.uni"}, ipcp.MgmtReq{Cmd: "routes", IPCP: "n1.uni"}},
		{[]string{"ipcp", "enroll", "n1.uni", "via=n2", "layer=net"},
			ipcp.MgmtReq{Cmd: "enroll", IPCP: "n1.uni", Layer: "net", Args: map[string]string{"via": "n2", "layer": "net"}}},
		{[]string{"stats", "n1.udp"}, ipcp.MgmtReq{Cmd: "stats", IPCP: "n1.udp"}},
		{[]string{"bootstrap", "n1.uni", "addr=1"}, ipcp.MgmtReq{Cmd: "bootstrap", IPCP: "n1.uni", Args: map[string]string{"addr": "1"}}},
		{[]string{"enroll", "n1.uni", "name=n2.uni"}, ipcp.MgmtReq{Cmd: "enroll", IPCP: "n1.uni", Name: "n2.uni", Args: map[string]string{"name": "n2.uni"}}},
		{[]string{"connect", "--timeout", "5s", "n1.uni", "peer=n2.uni"}, ipcp.MgmtReq{Cmd: "connect", IPCP: "n1.uni", Args: map[string]string{"peer": "n2.uni"}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			tn := newTestNet()
			tn.mgmt.answer = func(ipcp.MgmtReq) (ipcp.MgmtResp, error) { return ipcp.MgmtResp{Text: "ok"}, nil }
			code, out, errs := tn.ouro(context.Background(), tt.args...)
			if code != 0 || out != "ok\n" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0, \"ok\\n\"", code, out, errs)
			}
			if len(tn.mgmt.reqs) != 1 || !reflect.DeepEqual(tn.mgmt.reqs[0], tt.want) {
				t.Errorf("requests %+v, want [%+v]", tn.mgmt.reqs, tt.want)
			}
		})
	}
}

func TestManagementOutput(t *testing.T) {
	tn := newTestNet()
	tn.mgmt.answer = func(r ipcp.MgmtReq) (ipcp.MgmtResp, error) {
		switch r.Cmd {
		case "ipcps":
			return ipcp.MgmtResp{Table: ipcp.Table{
				Columns: []string{"name", "layer", "kind", "state"},
				Rows:    [][]string{{"n1.udp", "udp", "udp", "operational"}, {"n1.unicast", "backbone", "unicast", ""}},
			}}, nil
		case "enroll":
			return ipcp.MgmtResp{}, fmt.Errorf("unicast: enroll via n9: %w", flow.ErrNotFound)
		}
		return ipcp.MgmtResp{}, nil
	}
	code, out, _ := tn.ouro(context.Background(), "ipcps")
	want := "" +
		"NAME        LAYER     KIND     STATE\n" +
		"n1.udp      udp       udp      operational\n" +
		"n1.unicast  backbone  unicast  -\n"
	if code != 0 || out != want {
		t.Errorf("ipcps: exit %d, output\n%s\nwant\n%s", code, out, want)
	}

	code, out, _ = tn.ouro(context.Background(), "--json", "ipcps")
	var j mgmtJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != 0 {
		t.Fatalf("ipcps --json: exit %d, %v:\n%s", code, err, out)
	}
	if len(j.Rows) != 2 || j.Rows[1]["layer"] != "backbone" || j.Rows[1]["state"] != "" || j.Columns[3] != "state" {
		t.Errorf("ipcps --json = %+v", j)
	}

	// --json after the command works too; an empty answer is still the full shape.
	code, out, _ = tn.ouro(context.Background(), "names", "--json")
	if code != 0 || !strings.Contains(out, `"rows": []`) || !strings.Contains(out, `"columns": []`) {
		t.Errorf("names --json: exit %d:\n%s", code, out)
	}

	code, _, errs := tn.ouro(context.Background(), "enroll", "n1.unicast", "via=n9")
	if code != 1 || !strings.Contains(errs, "ouro: enroll n1.unicast: unicast: enroll via n9: name not found") {
		t.Errorf("failing enroll: exit %d, stderr %q", code, errs)
	}
}

var (
	replyLine = regexp.MustCompile(`^64 bytes from pong: seq=(\d+) time=\d+\.\d{3} ms$`)
	lossLine  = regexp.MustCompile(`^(\d+) SDUs transmitted, (\d+) received, 0% packet loss, time \d+ ms$`)
	rttLine   = regexp.MustCompile(`^rtt min/avg/max/mdev = \d+\.\d{3}/\d+\.\d{3}/\d+\.\d{3}/\d+\.\d{3} ms$`)
)

func TestEchoAndPing(t *testing.T) {
	tn := newTestNet()
	ctx := context.Background()
	echoOut, echoWait := tn.background(t, ctx, "echo", "pong", "--count", "2")
	waitFor(t, echoOut, "ouro echo ready: name pong")

	code, out, errs := tn.ouro(ctx, "ping", "pong", "-c", "3", "-i", "0.01")
	if code != 0 {
		t.Fatalf("ping: exit %d, stderr %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 {
		t.Fatalf("ping printed %d lines, want 8:\n%s", len(lines), out)
	}
	if !strings.HasPrefix(lines[0], "PING pong (flow ") || !strings.HasSuffix(lines[0], "qos best_effort, allocated in "+lines[0][strings.LastIndex(lines[0], " in ")+4:]) {
		t.Errorf("header %q", lines[0])
	}
	for i, l := range lines[1:4] {
		if m := replyLine.FindStringSubmatch(l); m == nil || m[1] != fmt.Sprint(i) {
			t.Errorf("reply line %q, want seq=%d", l, i)
		}
	}
	if lines[5] != "--- pong ping statistics ---" {
		t.Errorf("summary heading %q", lines[5])
	}
	if m := lossLine.FindStringSubmatch(lines[6]); m == nil || m[1] != "3" || m[2] != "3" {
		t.Errorf("summary line %q", lines[6])
	}
	if !rttLine.MatchString(lines[7]) {
		t.Errorf("rtt line %q", lines[7])
	}

	// The second flow: quiet, JSON, a QoS that needs FRCT.
	code, out, errs = tn.ouro(ctx, "--json", "ping", "-q", "-c", "4", "-i", "1ms", "-s", "100", "--qos", "data", "pong")
	if code != 0 {
		t.Fatalf("ping --json: exit %d, stderr %s", code, errs)
	}
	var j pingJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("ping --json: %v:\n%s", err, out)
	}
	if j.Name != "pong" || j.Transmitted != 4 || j.Received != 4 || j.Size != 100 || j.QoS != "data" || j.Layer != flowtest.Layer || j.RTTMaxMS <= 0 {
		t.Errorf("ping --json = %+v", j)
	}

	if code := echoWait(); code != 0 {
		t.Errorf("echo --count 2: exit %d", code)
	}
	eo := echoOut.String()
	if n := strings.Count(eo, "opened: from program"); n != 2 {
		t.Errorf("echo reported %d flows opened, want 2:\n%s", n, eo)
	}
	if !strings.Contains(eo, "closed: 3 SDUs, 192 B") || !strings.Contains(eo, "closed: 4 SDUs, 400 B") {
		t.Errorf("echo close lines wrong:\n%s", eo)
	}
}

func TestEchoInterrupted(t *testing.T) {
	tn := newTestNet()
	ctx, cancel := context.WithCancel(context.Background())
	out, wait := tn.background(t, ctx, "--json", "echo", "srv")
	waitFor(t, out, `"event":"ready"`)
	// A flow stays open while the server is interrupted.
	b, _ := tn.dial("/test/node.sock")
	p, _, err := b.Alloc(context.Background(), "srv", flow.BestEffort())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, out, `"event":"opened"`)
	cancel()
	if code := wait(); code != 0 {
		t.Errorf("interrupted echo: exit %d", code)
	}
	var last flowEvent
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event != "closed" || last.Server != "echo" {
		t.Errorf("last event %q (%v), want a closed event", lines[len(lines)-1], err)
	}
}

func TestPerfOverFlow(t *testing.T) {
	tn := newTestNet()
	ctx := context.Background()
	srvOut, srvWait := tn.background(t, ctx, "perf", "--server", "sink", "-c", "4")
	waitFor(t, srvOut, "ouro perf ready: name sink")

	var errb logx.Buffer
	var out logx.Buffer
	a := &app{stdout: &out, stderr: &errb, socket: "/test/node.sock", dial: tn.dial}
	code := a.run(ctx, []string{"perf", "sink", "-t", "1.2", "-s", "500", "--rate", "2000", "-v"})
	if code != 0 {
		t.Fatalf("perf: exit %d, stderr %s", code, errb.String())
	}
	o := out.String()
	for _, want := range []string{"PERF sink (flow ", "qos raw", "500-byte SDUs for 1.2s, 2000 SDU/s", "--- sink perf results ---", "(client)", "(server)", "loss 0%, 0 reordered, 0 send errors"} {
		if !strings.Contains(o, want) {
			t.Errorf("perf output lacks %q:\n%s", want, o)
		}
	}
	if !regexp.MustCompile(`\[ +1\.\d s\] sent \d+ SDUs: `).MatchString(errb.String()) {
		t.Errorf("no progress line with -v:\n%s", errb.String())
	}

	code, jout, errs := tn.ouro(ctx, "perf", "--json", "-t", "300ms", "-s", "1400", "sink")
	if code != 0 {
		t.Fatalf("perf --json: exit %d, %s", code, errs)
	}
	var j perfJSON
	if err := json.Unmarshal([]byte(jout), &j); err != nil {
		t.Fatalf("perf --json: %v:\n%s", err, jout)
	}
	if !j.HaveServer || j.Sent == 0 || j.Server.SDUs != j.Sent || j.Server.Bytes != 1400*j.Sent || j.Loss != 0 || j.SendBPS <= 0 {
		t.Errorf("perf --json = %+v", j)
	}

	// A reliable flow (FRCT): its header leaves less room for the SDU.
	code, _, errs = tn.ouro(ctx, "perf", "-t", "100ms", "-s", "1400", "--qos", "data", "sink")
	if code != 1 || !strings.Contains(errs, "the flow carries at most") {
		t.Errorf("perf -s 1400 --qos data: exit %d, stderr %s", code, errs)
	}
	code, jout, errs = tn.ouro(ctx, "perf", "--json", "-t", "300ms", "-s", "1000", "--qos", "data", "sink")
	j = perfJSON{}
	if err := json.Unmarshal([]byte(jout), &j); code != 0 || err != nil || j.QoS != "data" || j.Server.SDUs != j.Sent || j.Sent == 0 {
		t.Errorf("perf --qos data: exit %d, %v, stderr %s:\n%s", code, err, errs, jout)
	}

	if code := srvWait(); code != 0 {
		t.Errorf("perf server: exit %d", code)
	}
	if n := strings.Count(srvOut.String(), " reordered"); n != 4 {
		t.Errorf("perf server printed %d closing lines, want 4 (one from the refused size):\n%s", n, srvOut.String())
	}
}

func TestUDPBaselineCommands(t *testing.T) {
	tn := newTestNet()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrRE := regexp.MustCompile(`ready: udp (\S+)`)
	echoOut, echoWait := tn.background(t, ctx, "echo", "--udp", "127.0.0.1:0")
	perfOut, perfWait := tn.background(t, ctx, "perf", "--server", "--udp", "127.0.0.1:0")
	echoAddr := addrRE.FindStringSubmatch(waitFor(t, echoOut, "ready: udp"))[1]
	perfAddr := addrRE.FindStringSubmatch(waitFor(t, perfOut, "ready: udp"))[1]

	code, out, errs := tn.ouro(ctx, "ping", "--udp", echoAddr, "-c", "3", "-i", "0.005")
	if code != 0 || !strings.Contains(out, "PING "+echoAddr+" (udp): 64-byte SDUs") ||
		!strings.Contains(out, "3 SDUs transmitted, 3 received, 0% packet loss") {
		t.Errorf("ping --udp: exit %d, stderr %s:\n%s", code, errs, out)
	}
	code, out, errs = tn.ouro(ctx, "perf", "--json", "--udp", perfAddr, "-t", "200ms", "--rate", "1000")
	var j perfJSON
	if err := json.Unmarshal([]byte(out), &j); code != 0 || err != nil || !j.UDP || !j.HaveServer || j.Server.SDUs == 0 {
		t.Errorf("perf --udp: exit %d, %v, stderr %s:\n%s", code, err, errs, out)
	}
	cancel()
	if c1, c2 := echoWait(), perfWait(); c1 != 0 || c2 != 0 {
		t.Errorf("UDP servers: exit codes %d, %d", c1, c2)
	}
	if !strings.Contains(echoOut.String(), "closed: 3 SDUs, 192 B") {
		t.Errorf("udp echo output:\n%s", echoOut.String())
	}
	if !strings.Contains(perfOut.String(), " reordered") {
		t.Errorf("udp perf server output:\n%s", perfOut.String())
	}
}

func TestPingNoReply(t *testing.T) {
	tn := newTestNet()
	// A server that accepts and never answers.
	srv, _ := tn.dial("/test/node.sock")
	if err := srv.Bind(context.Background(), "void"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			p, _, err := srv.Accept(context.Background())
			if err != nil {
				return
			}
			defer p.Close()
		}
	}()
	defer srv.Close()
	code, out, errs := tn.ouro(context.Background(), "ping", "-c", "2", "-i", "0.01", "-W", "50ms", "void")
	if code != 1 || !strings.Contains(out, "2 SDUs transmitted, 0 received, 100% packet loss") || !strings.Contains(errs, "no reply") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
	if strings.Contains(out, "rtt") {
		t.Errorf("rtt line without replies:\n%s", out)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{siUnit(0, "B"), "0 B"},
		{siUnit(320, "B"), "320 B"},
		{siUnit(1400, "B"), "1.40 kB"},
		{siUnit(449_770_000, "bit/s"), "449.77 Mbit/s"},
		{siUnit(2.5e12, "bit/s"), "2.50 Tbit/s"},
		{percent(0), "0%"},
		{percent(100), "100%"},
		{percent(44.3612), "44.36%"},
		{ms(0.1124), "0.112"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if _, err := keyValues([]string{"=x"}); err == nil {
		t.Error(`keyValues("=x") succeeded`)
	}
	var ue *usageError
	if _, err := keyValues([]string{"x"}); !errors.As(err, &ue) {
		t.Errorf(`keyValues("x") = %v, want a usage error`, err)
	}
}

// TestAlloc: ouro alloc allocates and closes -c flows over one session,
// a line each, and sums up the ones after the first.
func TestAlloc(t *testing.T) {
	tn := newTestNet()
	ctx, cancel := context.WithCancel(context.Background())
	echoOut, echoWait := tn.background(t, ctx, "echo", "pong")
	defer func() { cancel(); echoWait() }()
	waitFor(t, echoOut, "ouro echo ready: name pong")

	code, out, errs := tn.ouro(ctx, "alloc", "-c", "3", "-i", "1ms", "pong")
	if code != 0 {
		t.Fatalf("alloc: exit %d, stderr %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^ALLOC pong \(qos best_effort\), 3 on one session$`),
		regexp.MustCompile(`^1: \d+\.\d{3} ms \(flow \d+, layer \S+, with the session's start\)$`),
		regexp.MustCompile(`^2: \d+\.\d{3} ms \(flow \d+, layer \S+\)$`),
		regexp.MustCompile(`^3: \d+\.\d{3} ms \(flow \d+, layer \S+\)$`),
		regexp.MustCompile(`^--- pong allocation statistics ---$`),
		regexp.MustCompile(`^3 allocated, 0 failed; the first \d+\.\d{3} ms; the other 2 min/median/avg/p90/max = (\d+\.\d{3}/){4}\d+\.\d{3} ms$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("alloc printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d %q, want %s", i+1, lines[i], re)
		}
	}

	code, out, errs = tn.ouro(ctx, "--json", "alloc", "-q", "-c", "4", "-i", "0", "--qos", "data", "pong")
	if code != 0 {
		t.Fatalf("alloc --json: exit %d, stderr %s", code, errs)
	}
	var j allocJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("alloc --json: %v:\n%s", err, out)
	}
	if j.Name != "pong" || j.QoS != "data" || j.Allocated != 4 || j.Failed != 0 || len(j.AllocMS) != 4 || j.FirstMS != j.AllocMS[0] {
		t.Fatalf("alloc --json: %+v", j)
	}
	lo, med, _, p90, hi := allocStats(j.AllocMS[1:])
	if j.MinMS != lo || j.MedianMS != med || j.P90MS != p90 || j.MaxMS != hi || !(lo > 0 && lo <= med && med <= p90 && p90 <= hi) {
		t.Errorf("alloc --json statistics %+v, want those of %v", j, j.AllocMS[1:])
	}
}

func TestAllocStats(t *testing.T) {
	for _, tc := range []struct {
		in                    []float64
		lo, med, avg, p90, hi float64
	}{
		{nil, 0, 0, 0, 0, 0},
		{[]float64{2}, 2, 2, 2, 2, 2},
		{[]float64{4, 1, 3, 2}, 1, 2, 2.5, 4, 4},
		{[]float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 1, 5, 5.5, 9, 10},
	} {
		lo, med, avg, p90, hi := allocStats(tc.in)
		if lo != tc.lo || med != tc.med || avg != tc.avg || p90 != tc.p90 || hi != tc.hi {
			t.Errorf("allocStats(%v) = %v %v %v %v %v, want %v %v %v %v %v", tc.in, lo, med, avg, p90, hi, tc.lo, tc.med, tc.avg, tc.p90, tc.hi)
		}
	}
}
