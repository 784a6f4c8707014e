package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/crypto/identity"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/images/mgmtflow"
	"github.com/ouronet/ouro/kernel/logx"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/capture/pcapng"
	"github.com/ouronet/ouro/layer/ipcp"
)

// mgmtPair starts node a (bootstrap, with a program's session) and node b
// (enrolled through a) whose [[app]] kind = "mgmt" takes flows from a's
// id only, and a second one ("b.other") from another node's only. It
// returns a's and b's brokers (b's with management authority).
func mgmtPair(t *testing.T) (ba, bb *irm.Broker) {
	ida, idb := newIdentity(t), newIdentity(t)
	pa, pb := freeUDPPort(t), freeUDPPort(t)
	cfg := uniPairConfig(pa, pb)
	xa, bra := app("app")
	xb, brb := mgmtApp("local")
	startNodeID(t, ida, cfg("a", pa, "bootstrap = true\nadmission = \"open\""), xa)
	c := parse(t, cfg("b", pb, fmt.Sprintf(`enroll = "a.uni"
[[app]]
kind = "mgmt"
peers = [%q]
[[app]]
kind = "mgmt"
name = "b.other"
peers = [%q]
`, identity.NameOf(ida.Public()), identity.NameOf(newIdentity(t).Public()))))
	c.Identity = idb
	startParsedApps(t, c, AppEnv{Log: logx.Test(t)}, xb)
	return <-bra, <-brb
}

// dialRetry dials b's management name until it is in the directory.
func dialRetry(t *testing.T, ctx context.Context, b *irm.Broker, name string) (*mgmtflow.Client, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		c, err := mgmtflow.Dial(actx, b, name)
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, flow.ErrRefused) {
			return c, err
		}
		t.Logf("dial %s: %v (retrying)", name, err)
		time.Sleep(100 * time.Millisecond)
	}
}

// counters reads a stats table as numbers.
func counters(t *testing.T, r ipcp.MgmtResp) map[string]uint64 {
	m := map[string]uint64{}
	for _, row := range r.Table.Rows {
		if v, err := strconv.ParseUint(row[1], 10, 64); err == nil {
			m[row[0]] = v
		}
	}
	if len(m) == 0 {
		t.Fatalf("no counters in %v", r.Table)
	}
	return m
}

// TestMgmtAppStats: a's program asks b's management app over a sealed
// flow for b's IPCPs, b.uni's counters and b's status page; they are
// what b's own session sees (each counter between b's reading before
// and after, as the flow itself moves them). A command that changes the
// node (reg, bootstrap) is refused and changes nothing.
func TestMgmtAppStats(t *testing.T) {
	ba, bb := mgmtPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := dialRetry(t, ctx, ba, "b.mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.Info().Peer; p == nil || p.Name != "b" {
		t.Fatalf("management flow's peer %v, want node b", p)
	}
	remote, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil {
		t.Fatal(err)
	}
	local, err := bb.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(remote.Table) != fmt.Sprint(local.Table) {
		t.Fatalf("ipcps over the flow %v, local %v", remote.Table, local.Table)
	}
	stats := ipcp.MgmtReq{Cmd: "stats", IPCP: "b.uni"}
	before, err := bb.Mgmt(ctx, stats)
	if err != nil {
		t.Fatal(err)
	}
	via, err := c.Mgmt(ctx, stats)
	if err != nil {
		t.Fatal(err)
	}
	after, err := bb.Mgmt(ctx, stats)
	if err != nil {
		t.Fatal(err)
	}
	lo, mid, hi := counters(t, before), counters(t, via), counters(t, after)
	if len(mid) != len(lo) {
		t.Fatalf("%d counters over the flow, %d local", len(mid), len(lo))
	}
	for k, v := range mid {
		if l, ok := lo[k]; !ok || v < l || v > hi[k] {
			t.Errorf("%s = %d over the flow, local %d before and %d after", k, v, l, hi[k])
		}
	}
	st, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: mgmtflow.CmdStatus})
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Node struct{ Name string } `json:"node"`
	}
	if err := json.Unmarshal([]byte(st.Text), &page); err != nil || !strings.Contains(st.Text, "b.uni") {
		t.Fatalf("status over the flow: %v\n%s", err, st.Text)
	}
	// Changes are refused over the flow and leave the node as it was.
	if _, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdReg, Name: "planted", Layer: "uni"}); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("reg over the flow: %v, want ErrRefused", err)
	}
	if _, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: "bootstrap", IPCP: "b.uni"}); !errors.Is(err, flow.ErrRefused) {
		t.Fatalf("bootstrap over the flow: %v, want ErrRefused", err)
	}
	names, err := bb.Mgmt(ctx, ipcp.MgmtReq{Cmd: ipcp.CmdNames})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprint(names.Table.Rows), "planted") {
		t.Fatalf("a refused reg registered the name: %v", names.Table.Rows)
	}
	// The flow still answers after the refusals.
	if _, err := c.Mgmt(ctx, stats); err != nil {
		t.Fatalf("stats after refusals: %v", err)
	}
}

// TestMgmtAppRefuses: an unsealed flow to b's management name, and a
// sealed one to a management name whose allow-list does not hold a's id,
// get no answer (the IRM refuses them as bound with peers; the app's
// Admit refuses them again). Run with both the BindPeers and the Admit
// check removed, both allocations are answered and the test fails.
func TestMgmtAppRefuses(t *testing.T) {
	ba, _ := mgmtPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// b.mgmt takes a's sealed flows: wait until b is reachable.
	c, err := dialRetry(t, ctx, ba, "b.mgmt")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	answered := func(name string, q flow.QoS) error {
		actx, acancel := context.WithTimeout(ctx, 15*time.Second)
		defer acancel()
		p, info, err := ba.Alloc(actx, name, q)
		if err != nil {
			return err
		}
		defer p.Close()
		cl := mgmtflow.NewClient(p, info)
		_, err = cl.Mgmt(actx, ipcp.MgmtReq{Cmd: ipcp.CmdIPCPs})
		if err == nil {
			return nil
		}
		return fmt.Errorf("no answer: %w", err)
	}
	unsealed := mgmtflow.QoS()
	unsealed.Sealed = false
	if err := answered("b.mgmt", unsealed); err == nil {
		t.Fatal("an unsealed flow to the management app was answered")
	} else {
		t.Logf("unsealed: %v", err)
	}
	if err := answered("b.other", mgmtflow.QoS()); err == nil {
		t.Fatal("a sealed flow from a node not on the allow-list was answered")
	} else {
		t.Logf("not on the list: %v", err)
	}
}

// TestMgmtAppCapture: a capture of b.uni armed, read and stopped over the
// management flow, while a pings b's echo; the pages make a pcapng file
// that tshark (if installed) reads with the ouro dissector.
func TestMgmtAppCapture(t *testing.T) {
	ba, _ := mgmtPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := dialRetry(t, ctx, ba, "b.mgmt")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func(op string) ipcp.MgmtResp {
		r, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: capture.Cmd, IPCP: "b.uni", Args: map[string]string{capture.ArgOp: op}})
		if err != nil {
			t.Fatalf("capture %s: %v", op, err)
		}
		return r
	}
	call(capture.OpStart)
	// Traffic through b.uni: the management flow's own answers.
	var recs []capture.Record
	for i := 0; i < 50 && len(recs) < 4; i++ {
		if _, err := c.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: "b.uni"}); err != nil {
			t.Fatal(err)
		}
		r := call(capture.OpRead)
		page, err := base64.StdEncoding.DecodeString(r.Text)
		if err != nil {
			t.Fatal(err)
		}
		got, err := capture.DecodePage(page)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, got...)
	}
	call(capture.OpStop)
	if len(recs) < 4 {
		t.Fatalf("%d packets captured over the management flow", len(recs))
	}
	var out bytes.Buffer
	w := pcapng.NewWriter(&out, "mgmtapp test")
	for _, r := range recs {
		if err := w.Write("b.uni", r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Log("tshark not installed: pcapng not decoded")
		return
	}
	file := filepath.Join(t.TempDir(), "b.pcapng")
	if err := os.WriteFile(file, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lua, err := filepath.Abs("../../../tools/wireshark/ouro.lua")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-r", file, "-X", "lua_script:"+lua, "-T", "fields", "-e", "frame.number", "-e", "_ws.malformed")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, b)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && l[0] >= '0' && l[0] <= '9' {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(recs) {
		t.Fatalf("tshark read %d packets, captured %d:\n%s", len(lines), len(recs), b)
	}
	if strings.Contains(strings.ToLower(string(b)), "malformed") {
		t.Fatalf("tshark: malformed packets:\n%s", b)
	}
}

// TestMgmtAppNeedsPeers: a "mgmt" app without an allow-list is a
// configuration error, not a name that refuses everyone; its default
// name is NODE.mgmt.
func TestMgmtAppNeedsPeers(t *testing.T) {
	c := parse(t, "[node]\nname = \"n\"\n[[app]]\nkind = \"mgmt\"\n")
	if _, err := Apps(c, AppEnv{}); err == nil || !strings.Contains(err.Error(), "needs peers") {
		t.Fatalf("mgmt app without peers: %v", err)
	}
	c = parse(t, "[[app]]\nkind = \"echo\"\npeers = [\"x\"]\n")
	if _, err := Apps(c, AppEnv{}); err == nil || !strings.Contains(err.Error(), "peers apply to kind") {
		t.Fatalf("echo app with peers: %v", err)
	}
	c = parse(t, "[node]\nname = \"n\"\n[[app]]\nkind = \"mgmt\"\npeers = [\"x\"]\n")
	xs, err := Apps(c, AppEnv{})
	if err != nil || len(xs) != 1 || xs[0].Name != "app.n.mgmt" || !xs[0].Mgmt {
		t.Fatalf("mgmt app: %v %+v", err, xs)
	}
}
