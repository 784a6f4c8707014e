package unicast_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

// table returns p's management table cmd as rows of column → value.
func table(t *testing.T, p *unicast.IPCP, cmd string) []map[string]string {
	t.Helper()
	r, err := p.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: cmd})
	if err != nil {
		t.Fatal(err)
	}
	return r.Table.RowMaps()
}

// flowRow returns the row of p's flows table in direction dir.
func flowRow(t *testing.T, p *unicast.IPCP, dir string) map[string]string {
	t.Helper()
	for _, row := range table(t, p, unicast.CmdFlows) {
		if row["dir"] == dir {
			return row
		}
	}
	t.Fatalf("no %q flow in the flows table", dir)
	return nil
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestQueuedColumns: the flows table says what waits at a flow's ends
// in the node (queued_out: written by the program, not yet taken by the
// layer, where a paced flow holds what it may not send yet; queued_in:
// delivered, not yet read by the program), and the ports table what
// waits in each N-1 flow's queue and rings, with its packets.
func TestQueuedColumns(t *testing.T) {
	// mb-ecn starts a flow at 128 KB/s: 150 SDUs of 1,300 bytes written
	// at once wait in front of it for more than a second.
	a, z, nodes := bareChain(t, 2, "mb-ecn")
	const n, size = 150, 1300
	msg := make([]byte, size)
	for i := range n {
		if err := a.Write(msg, time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	out := atoi(t, flowRow(t, nodes[0], "out")["queued_out"])
	if out <= 0 || out > n {
		t.Errorf("queued_out at the sender right after %d SDUs written: %d, want some and at most %d (the flow is paced)", n, out, n)
	}
	// The program at z does not read: what arrives waits for it.
	deadline := time.Now().Add(10 * time.Second)
	var in int
	for time.Now().Before(deadline) {
		if in = atoi(t, flowRow(t, nodes[1], "in")["queued_in"]); in == n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if in != n {
		t.Fatalf("queued_in at the receiver with the program not reading: %d, want all %d", in, n)
	}
	if out := atoi(t, flowRow(t, nodes[0], "out")["queued_out"]); out != 0 {
		t.Errorf("queued_out once everything arrived: %d, want 0", out)
	}
	buf := make([]byte, flow.MaxSDU)
	for i := range n {
		if _, err := z.Read(buf, time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if in := atoi(t, flowRow(t, nodes[1], "in")["queued_in"]); in != 0 {
		t.Errorf("queued_in once the program read everything: %d, want 0", in)
	}

	for i, p := range nodes {
		rows := table(t, p, unicast.CmdPorts)
		if len(rows) != 1 {
			t.Fatalf("node %d: %d ports, want 1 (its one neighbour): %v", i, len(rows), rows)
		}
		r := rows[0]
		if r["kind"] != "neighbour" || r["name"] != unicasttest.NodeName(1-i) {
			t.Errorf("node %d: port %v, want the neighbour %s", i, r, unicasttest.NodeName(1-i))
		}
		for _, col := range []string{"queued", "below", "backlog"} {
			if v := atoi(t, r[col]); v != 0 {
				t.Errorf("node %d: %s %d at rest, want 0", i, col, v)
			}
		}
		if atoi(t, r["queue_cap"]) <= 0 {
			t.Errorf("node %d: queue_cap %s", i, r["queue_cap"])
		}
	}
	if r := table(t, nodes[0], unicast.CmdPorts)[0]; atoi(t, r["pkts_out"]) < n {
		t.Errorf("the sender's port sent %s packets, want at least the %d SDUs", r["pkts_out"], n)
	}
	if r := table(t, nodes[1], unicast.CmdPorts)[0]; atoi(t, r["pkts_in"]) < n {
		t.Errorf("the receiver's port read %s packets, want at least the %d SDUs", r["pkts_in"], n)
	}
}
