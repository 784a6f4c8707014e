package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/tools/testnet"
)

const logNode = "[node]\nname = \"%s\"\n%s[[ipcp]]\nkind = \"local\"\n"

// TestLogFlag checks the one switch end to end on the router: -log
// overrides [node] log both ways, log_format = "json" writes JSON lines
// carrying the node and the component, and a bad -log value is refused
// with the value named.
func TestLogFlag(t *testing.T) {
	n := newNet(t)
	const ready = `msg="node ready"`
	// [node] log off, -log info: the Info line is there.
	a, err := n.StartNode("la", strings.ReplaceAll(strings.Replace(logNode, "%s", "la", 1), "%s", "log = \"off\"\n"), testnet.NodeOpts{Args: []string{"-log", "info"}})
	if err != nil {
		t.Fatal(err)
	}
	if out := outputWith(a, ready); !strings.Contains(out, ready) || !strings.Contains(out, "node=la") {
		t.Errorf("log off, -log info: no %s line with node=la:\n%s", ready, out)
	}
	// [node] log = true (info), -log warn: the Info line is hidden.
	b, err := n.StartNode("lb", strings.ReplaceAll(strings.Replace(logNode, "%s", "lb", 1), "%s", "log = true\n"), testnet.NodeOpts{Args: []string{"-log", "warn"}})
	if err != nil {
		t.Fatal(err)
	}
	if out := outputWith(b, "level=INFO"); strings.Contains(out, "level=INFO") {
		t.Errorf("log = true, -log warn: an Info line shown:\n%s", out)
	}
	// JSON: the ready record parses, with node and level.
	c, err := n.StartNode("lc", strings.ReplaceAll(strings.Replace(logNode, "%s", "lc", 1), "%s", "log = \"debug\"\nlog_format = \"json\"\n"), testnet.NodeOpts{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	sc := bufio.NewScanner(strings.NewReader(outputWith(c, `"node ready"`)))
	for sc.Scan() {
		var m map[string]any
		if !strings.HasPrefix(sc.Text(), "{") {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("a JSON log line does not parse: %v: %s", err, sc.Text())
			continue
		}
		if m["msg"] == "node ready" {
			found = m["level"] == "INFO" && m["node"] == "lc"
		}
	}
	if !found {
		t.Errorf("no JSON node ready record with level and node:\n%s", c.Output())
	}
	// A bad level is refused before anything starts.
	cfg := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(strings.Replace(logNode, "%s", "ld", 1), "%s", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bins.router, "-config", cfg, "-socket", filepath.Join(t.TempDir(), "s"), "-log", "loud").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"loud"`) {
		t.Errorf("-log loud: err %v, output %q; want a refusal naming the value", err, out)
	}
}

// outputWith returns nd's output once it holds sub, or after 3 s (its
// standard error is copied in by a goroutine of its own, so it may lag
// behind the ready line).
func outputWith(nd *testnet.Node, sub string) string {
	deadline := time.Now().Add(3 * time.Second)
	for {
		out := nd.Output()
		if strings.Contains(out, sub) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}
