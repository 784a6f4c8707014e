package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ouronet/ouro/tools/testnet"
)

// TestMetricsScrape runs two node processes, a unicast layer over UDP
// between them, and node a with [node] metrics: after a ping from a to
// b's echo app, a scrape of a's /metrics, parsed with the Prometheus text
// parser, has every number "ouro --json stats" shows for a's IPCPs (taken
// just before and after the scrape, and equal), and the allocation of the
// ping's flow in its latency histogram. With OURO_METRICS_EXAMPLE=FILE it
// writes the scrape there (docs/observability.md quotes it).
func TestMetricsScrape(t *testing.T) {
	n := newNet(t)
	pa, pb := freeUDP(t, "udp4", "127.0.0.1"), freeUDP(t, "udp4", "127.0.0.1")
	a, err := n.StartNode("a", fmt.Sprintf(`[node]
name = "a"
metrics = "127.0.0.1:0"
[[ipcp]]
kind = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "b.uni" = "127.0.0.1:%d" }
[[ipcp]]
kind = "unicast"
name = "a.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
bootstrap = true
admission = "open"
`, pa, pb), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.StartNode("b", fmt.Sprintf(`[node]
name = "b"
metrics = "127.0.0.1:0"
[[ipcp]]
kind = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { "a.uni" = "127.0.0.1:%d" }
[[ipcp]]
kind = "unicast"
name = "b.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
enroll = "a.uni"
[[app]]
kind = "echo"
`, pb, pa), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`metrics (http://\S+/metrics)`).FindStringSubmatch(a.Output())
	if m == nil {
		t.Fatalf("a's ready line names no metrics address:\n%s", a.Output())
	}
	url := m[1]

	// b enrolls in the background; ping until its echo answers.
	var s pingSummary
	for deadline := time.Now().Add(20 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := n.Ouro(ctx, a, "--json", "ping", "-c", "5", "-i", "10ms", "-W", "2s", "echo")
		cancel()
		if err == nil && json.Unmarshal([]byte(out), &s) == nil && s.Received == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping echo: %v, %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	ipcps := []string{"a.udp", "a.uni"}
	stats := func() map[string][][]string {
		got := map[string][][]string{}
		for _, ipcp := range ipcps {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := n.Ouro(ctx, a, "--json", "stats", ipcp)
			cancel()
			if err != nil {
				t.Fatalf("ouro stats %s: %v", ipcp, err)
			}
			var tab struct {
				Rows []map[string]string `json:"rows"`
			}
			if err := json.Unmarshal([]byte(out), &tab); err != nil {
				t.Fatalf("ouro stats %s: %q: %v", ipcp, out, err)
			}
			for _, r := range tab.Rows {
				got[ipcp] = append(got[ipcp], []string{r["counter"], r["value"]})
			}
		}
		return got
	}
	// Counters move between two listings (keepalives, under load several
	// a second): each scraped value must lie between the listing before
	// the scrape and the one after it.
	before := stats()
	text := get(t, url)
	after := stats()
	prior := map[string]string{}
	for ipcp, rows := range before {
		for _, row := range rows {
			prior[ipcp+" "+row[0]] = row[1]
		}
	}
	if f := os.Getenv("OURO_METRICS_EXAMPLE"); f != "" {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, text)
	}
	sample := func(name string, labels map[string]string) (*dto.Metric, bool) {
		var found *dto.Metric
		n := 0
	next:
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.Label {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			found = m
			n++
		}
		return found, n == 1
	}
	checked := 0
	layers := map[string]string{"a.udp": "udp", "a.uni": "uni"}
	for _, ipcp := range ipcps {
		for _, row := range after[ipcp] {
			want, err := strconv.ParseFloat(row[1], 64)
			if err != nil || row[0] == "addr" {
				continue
			}
			name := "ouro_ipcp_" + strings.Map(func(r rune) rune {
				if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
					return r
				}
				return '_'
			}, row[0])
			m, ok := sample(name, map[string]string{"ipcp": ipcp, "layer": layers[ipcp]})
			if !ok {
				t.Errorf("ouro stats %s: %s = %s; /metrics has no %s for it", ipcp, row[0], row[1], name)
				continue
			}
			lo, hi := want, want
			if b, err := strconv.ParseFloat(prior[ipcp+" "+row[0]], 64); err == nil {
				lo, hi = min(lo, b), max(hi, b)
			}
			if got := m.GetUntyped().GetValue(); got < lo || got > hi {
				t.Errorf("%s{ipcp=%q} = %v; ouro stats shows %s = %v before the scrape, %v after", name, ipcp, got, row[0], prior[ipcp+" "+row[0]], want)
			}
			checked++
		}
	}
	if checked < 40 {
		t.Errorf("compared %d values with ouro stats, want at least 40", checked)
	}
	if m, ok := sample("ouro_ipcp_sent", map[string]string{"ipcp": "a.uni"}); !ok || m.GetUntyped().GetValue() < 5 {
		t.Errorf("ouro_ipcp_sent{ipcp=a.uni} = %v, want at least the 5 pings", m)
	}
	m2, ok := sample("ouro_flow_alloc_duration_seconds", map[string]string{"layer": "uni", "result": "ok"})
	if !ok || m2.GetHistogram().GetSampleCount() < 1 || m2.GetHistogram().GetSampleSum() <= 0 {
		t.Errorf("allocation histogram for layer uni: %v, want the ping's allocation", m2)
	}
	// b's unicast IPCP allocated its N-1 flows to a.uni over the UDP
	// shim when it enrolled: its IPCP's allocations are observed too.
	mb := regexp.MustCompile(`metrics (http://\S+/metrics)`).FindStringSubmatch(b.Output())
	if mb == nil {
		t.Fatalf("b's ready line names no metrics address:\n%s", b.Output())
	}
	bp := expfmt.NewTextParser(model.LegacyValidation)
	bf, err := bp.TextToMetricFamilies(strings.NewReader(get(t, mb[1])))
	if err != nil {
		t.Fatal(err)
	}
	var n1 uint64
	for _, m := range bf["ouro_flow_alloc_duration_seconds"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["layer"] == "udp" && labels["result"] == "ok" {
			n1 += m.GetHistogram().GetSampleCount()
		}
	}
	if n1 == 0 {
		t.Errorf("b's allocation histogram has no allocation in layer udp (b.uni's N-1 flows): %v", bf["ouro_flow_alloc_duration_seconds"])
	}
	for _, c := range []string{"irm", "gateway", "metrics", "ipcp.a.uni", "procs"} {
		if m, ok := sample("ouro_component_up", map[string]string{"component": c}); !ok || m.GetGauge().GetValue() != 1 {
			t.Errorf("ouro_component_up{component=%q} = %v, want 1", c, m)
		}
	}
	// A quiet node runs its scheduler on one processor (the procs
	// component; all of them while it is busy, which it may still be a
	// moment after the pings: it comes back within a second).
	if os.Getenv("GOMAXPROCS") != "" || runtime.NumCPU() < 2 {
		return
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		pp := expfmt.NewTextParser(model.LegacyValidation)
		pf, err := pp.TextToMetricFamilies(strings.NewReader(get(t, url)))
		if err != nil {
			t.Fatal(err)
		}
		got := pf["ouro_node_procs"].GetMetric()
		if len(got) == 1 && got[0].GetGauge().GetValue() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ouro_node_procs of a quiet node = %v after 10 s, want 1", got)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, b)
	}
	return string(b)
}
