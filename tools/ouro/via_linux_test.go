package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/ipcp/prom"
	"github.com/ouronet/ouro/tools/testnet"
)

// These tests run real node processes (the router image, hosted) and the
// ouro binary, as a user would: node a allocates sealed management flows
// to node b's "mgmt" app, which takes a's flows only.

// viaNet builds the router and the tool and starts a (bootstrap, with
// key aKey) and b (enrolled, its mgmt app's peers a's id) in a unicast
// layer "uni" over the UDP shim on 127.0.0.1.
func viaNet(t *testing.T) (n *testnet.Net, a, b *testnet.Node) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	dir := t.TempDir()
	root, err := testnet.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	router, ouro, err := testnet.Build(ctx, root, dir)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	n = testnet.New(dir, router, ouro)
	n.Log = logx.Test(t)
	t.Cleanup(n.Close)
	aKey, aID := keygen(t, newTestNet(), dir, "a.key")
	var free testnet.Ports
	ps, err := free.UDPs("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := ps[0], ps[1]
	cfg := func(name string, port int, rest string) string {
		return fmt.Sprintf(`
[node]
name = %q
%s
[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "a.uni" = "127.0.0.1:%d", "b.uni" = "127.0.0.1:%d" }
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
%s
`, name, map[bool]string{true: fmt.Sprintf("key = %q", aKey)}[name == "a"], port, pa, pb, name, rest)
	}
	if a, err = n.StartNode("a", cfg("a", pa, "bootstrap = true\nadmission = \"open\""), testnet.NodeOpts{}); err != nil {
		t.Fatal(err)
	}
	if b, err = n.StartNode("b", cfg("b", pb, fmt.Sprintf("enroll = \"a.uni\"\n[[app]]\nkind = \"mgmt\"\npeers = [%q]\n", aID.Name())), testnet.NodeOpts{}); err != nil {
		t.Fatal(err)
	}
	// b's management name reaches the directory once b enrolled.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := n.Ouro(ctx, a, "--via", "b.mgmt", "ipcps")
		cancel()
		if err == nil {
			return n, a, b
		}
		if time.Now().After(deadline) {
			t.Fatalf("b.mgmt never answered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// counterJSON reads "ouro --json stats" output.
func counterJSON(t *testing.T, out string) map[string]uint64 {
	t.Helper()
	var j mgmtJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("stats output %q: %v", out, err)
	}
	m := map[string]uint64{}
	for _, r := range j.Rows {
		if v, err := strconv.ParseUint(r["value"], 10, 64); err == nil {
			m[r["counter"]] = v
		}
	}
	if len(m) == 0 {
		t.Fatalf("no counters in %q", out)
	}
	return m
}

func TestVia(t *testing.T) {
	n, a, b := viaNet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ouro := func(nd *testnet.Node, args ...string) string {
		t.Helper()
		out, err := n.Ouro(ctx, nd, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// Stats over --via equal b's own (each counter between b's reading
	// before and after: the management flow itself moves them).
	t.Run("stats", func(t *testing.T) {
		lo := counterJSON(t, ouro(b, "--json", "stats", "b.uni"))
		mid := counterJSON(t, ouro(a, "--json", "--via", "b.mgmt", "stats", "b.uni"))
		hi := counterJSON(t, ouro(b, "--json", "stats", "b.uni"))
		if len(mid) != len(lo) {
			t.Fatalf("%d counters over the flow, %d at b", len(mid), len(lo))
		}
		for k, v := range mid {
			if k == "flows.active" { // the management flow is one of them while it answers
				if v != lo[k]+1 || hi[k] != lo[k] {
					t.Errorf("flows.active %d over the flow, b said %d before and %d after: want one more", v, lo[k], hi[k])
				}
				continue
			}
			if l, ok := lo[k]; !ok || v < l || v > hi[k] {
				t.Errorf("%s = %d over the flow; b said %d before, %d after", k, v, l, hi[k])
			}
		}
		if got, want := ouro(a, "--via", "b.mgmt", "ipcps"), ouro(b, "ipcps"); got != want {
			t.Errorf("ipcps over the flow:\n%s\nat b:\n%s", got, want)
		}
		var page struct {
			Node struct {
				Name string `json:"name"`
			} `json:"node"`
		}
		st := ouro(a, "--via", "b.mgmt", "status")
		if err := json.Unmarshal([]byte(st), &page); err != nil || page.Node.Name != "b" {
			t.Errorf("status over the flow: %v, node %q, want b:\n%s", err, page.Node.Name, st)
		}
	})

	// b's metrics over the flow, printed once and served (--listen):
	// each of b.uni's counters between b's own readings before and
	// after, and the kernel's view of b's components.
	t.Run("metrics", func(t *testing.T) {
		lo := counterJSON(t, ouro(b, "--json", "stats", "b.uni"))
		fams := parseMetrics(t, ouro(a, "--via", "b.mgmt", "metrics"))
		hi := counterJSON(t, ouro(b, "--json", "stats", "b.uni"))
		checkRemoteMetrics(t, fams, lo, hi)

		p, err := n.StartOuro(a, "--via", "b.mgmt", "metrics", "--listen", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop()
		if err := p.WaitFor("serving http://", 30*time.Second); err != nil {
			t.Fatalf("%v: %s", err, p.Output())
		}
		_, rest, _ := strings.Cut(p.Output(), "serving ")
		url, _, _ := strings.Cut(rest, "\n")
		for range 2 { // a management flow each scrape
			lo := counterJSON(t, ouro(b, "--json", "stats", "b.uni"))
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
			}
			hi := counterJSON(t, ouro(b, "--json", "stats", "b.uni"))
			checkRemoteMetrics(t, parseMetrics(t, string(body)), lo, hi)
		}
	})

	// Changes stay local: refused over the flow; flow commands refuse --via.
	t.Run("refused", func(t *testing.T) {
		out, err := n.Ouro(ctx, a, "--via", "b.mgmt", "reg", "planted")
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("reg over the flow: %v %s, want refused", err, out)
		}
		if names := ouro(b, "names"); strings.Contains(names, "planted") {
			t.Fatalf("a refused reg registered the name:\n%s", names)
		}
		if _, err := n.Ouro(ctx, a, "--via", "b.mgmt", "ping", "-c", "1", "x"); err == nil || !strings.Contains(err.Error(), "management commands only") {
			t.Fatalf("ping --via: %v, want a usage error", err)
		}
	})

	// A capture at b streamed to a pcapng file at a.
	t.Run("capture", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "b.pcapng")
		ouro(a, "--via", "b.mgmt", "capture", "b.uni", "-w", file, "-c", "6", "-t", "30s")
		st, err := os.Stat(file)
		if err != nil || st.Size() == 0 {
			t.Fatalf("capture file: %v", err)
		}
		tshark, err := exec.LookPath("tshark")
		if err != nil {
			t.Skip("tshark not installed: the pcapng is not decoded")
		}
		lua, err := filepath.Abs("../wireshark/ouro.lua")
		if err != nil {
			t.Fatal(err)
		}
		o, err := exec.CommandContext(ctx, tshark, "-r", file, "-X", "lua_script:"+lua, "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Protocol").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, o)
		}
		var frames int
		for _, l := range strings.Split(string(o), "\n") {
			if l != "" && l[0] >= '1' && l[0] <= '9' {
				frames++
			}
		}
		if frames != 6 || strings.Contains(strings.ToLower(string(o)), "malformed") {
			t.Fatalf("tshark read %d frames (want 6), output:\n%s", frames, o)
		}
	})

	// ouro top --layer under tmux: a section for a (its socket) and one
	// for b (over b.mgmt), each with its IPCPs.
	t.Run("top-tmux", func(t *testing.T) {
		tmux, err := exec.LookPath("tmux")
		if err != nil {
			t.Skip("tmux not installed: ouro top is not checked on a terminal")
		}
		server := fmt.Sprintf("ouro-test-%d", os.Getpid())
		run := func(args ...string) (string, error) {
			o, err := exec.CommandContext(ctx, tmux, append([]string{"-L", server}, args...)...).CombinedOutput()
			return string(o), err
		}
		cmdline := fmt.Sprintf("%s --socket %s top --layer uni -i 300ms", n.OuroBin, a.Socket)
		if o, err := run("new-session", "-d", "-s", "top", "-x", "160", "-y", "50", cmdline); err != nil {
			t.Fatalf("tmux: %v %s", err, o)
		}
		defer run("kill-server")
		var screen string
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
			screen, err = run("capture-pane", "-p", "-t", "top")
			if err != nil {
				t.Fatalf("capture-pane: %v %s", err, screen)
			}
			if topScreenOK(screen) {
				t.Logf("ouro top --layer uni on a terminal:\n%s", screen)
				return
			}
		}
		t.Fatalf("ouro top's screen never showed both members with their IPCPs and rates:\n%s", screen)
	})
}

// topScreenOK says whether a screen of "ouro top --layer uni" shows a's
// section (this node) and b's (via b.mgmt), each with its unicast IPCP
// and a rate (a second round), and redrew in place: one heading, on the
// screen's first line (output that scrolled instead of redrawing leaves
// an earlier round's tail above it).
func topScreenOK(screen string) bool {
	if strings.Count(screen, "ouro top --layer uni") != 1 || !strings.HasPrefix(screen, "ouro top --layer uni") {
		return false
	}
	ia, ib := strings.Index(screen, "== a.uni (this node) =="), strings.Index(screen, "== b.uni (via b.mgmt) ==")
	if ia < 0 || ib < ia {
		return false
	}
	rated := func(sec, ipcp string) bool {
		for _, l := range strings.Split(sec, "\n") {
			f := strings.Fields(l)
			if len(f) >= 8 && f[0] == ipcp && f[1] == "uni" && f[4] != "-" {
				return true
			}
		}
		return false
	}
	return rated(screen[ia:ib], "a.uni") && rated(screen[ib:], "b.uni")
}

// parseMetrics parses the Prometheus text format.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("metrics: %v\n%s", err, text)
	}
	return fams
}

// metricValue returns the value of the sample of family name whose labels
// include want.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// checkRemoteMetrics checks node b's metrics read over its management
// flow: b.uni's counters between b's readings lo and hi (flows.active one
// more: the management flow), and the kernel's view of b.
func checkRemoteMetrics(t *testing.T, fams map[string]*dto.MetricFamily, lo, hi map[string]uint64) {
	t.Helper()
	if _, ok := metricValue(fams, "ouro_ipcp_info", map[string]string{"ipcp": "b.uni", "layer": "uni", "kind": "unicast"}); !ok {
		t.Errorf("no ouro_ipcp_info for b.uni")
	}
	checked := 0
	for k, l := range lo {
		if k == "addr" {
			continue // an identifier, not exported (ouro_ipcp_info says which IPCP)
		}
		v, ok := metricValue(fams, "ouro_ipcp_"+prom.MetricName(k), map[string]string{"ipcp": "b.uni"})
		if !ok {
			t.Errorf("b.uni's %s has no metric", k)
			continue
		}
		if k == "flows.active" {
			l, hi[k] = l+1, hi[k]+1
		}
		if v < float64(l) || v > float64(hi[k]) {
			t.Errorf("%s = %v over the flow; b said %d before, %d after", k, v, l, hi[k])
		}
		checked++
	}
	if up, ok := metricValue(fams, "ouro_component_up", map[string]string{"component": "irm"}); !ok || up != 1 {
		t.Errorf("ouro_component_up{component=irm} = %v (%v), want 1", up, ok)
	}
	if g, ok := metricValue(fams, "ouro_kernel_bufs_granted", nil); !ok || g <= 0 {
		t.Errorf("ouro_kernel_bufs_granted = %v (%v), want > 0", g, ok)
	}
	// b's IRM allocated b.uni's N-1 flows: its histogram comes over
	// the flow too (a board serves no HTTP of its own).
	if n, ok := metricValue(fams, "ouro_flow_alloc_duration_seconds", map[string]string{"result": "ok"}); !ok || n < 1 {
		t.Errorf("ouro_flow_alloc_duration_seconds{result=ok} = %v allocations (%v), want at least 1", n, ok)
	}
	if checked == 0 {
		t.Error("no counter of b.uni checked")
	}
}
