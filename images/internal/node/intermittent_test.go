package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/layer/ipcp"
)

// sendAndReceive has the app on a allocate name with q, write n SDUs and
// close, while the app on b accepts and reads them; pump runs between
// polls (the carrier's courier).
func sendAndReceive(t *testing.T, a, b *irm.Broker, q flow.QoS, n, size int, pump func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Bind(ctx, "files"); err != nil {
		t.Fatalf("bind: %v", err)
	}
	pA, info, err := a.Alloc(ctx, "files", q)
	if err != nil {
		t.Fatalf("alloc: %v", err)
	}
	for i := range n {
		if err := pA.Write(sdu(i, size), time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("write %d: %v (flow %+v)", i, err, info)
		}
	}
	pA.Close()
	accepted := make(chan flow.Port, 1)
	go func() {
		p, _, err := b.Accept(ctx)
		if err != nil {
			t.Errorf("accept: %v", err)
		}
		accepted <- p
	}()
	var pB flow.Port
	for pB == nil {
		select {
		case pB = <-accepted:
			if pB == nil {
				t.FailNow()
			}
		case <-time.After(100 * time.Millisecond):
			pump()
		case <-ctx.Done():
			t.Fatal("no flow accepted")
		}
	}
	defer pB.Close()
	buf := make([]byte, flow.MaxSDU)
	for i := range n {
		var got int
		var err error
		for {
			got, err = pB.Read(buf, time.Now().Add(100*time.Millisecond))
			if !errors.Is(err, flow.ErrTimeout) || ctx.Err() != nil {
				break
			}
			pump()
		}
		if want := sdu(i, size); err != nil || !bytes.Equal(buf[:got], want) {
			t.Fatalf("SDU %d: got %d bytes %.20q, %v, want %d bytes %.20q", i, got, buf[:got], err, len(want), want)
		}
	}
}

// sdu is the i-th SDU sendAndReceive sends: "sdu i", padded to size
// bytes if size is larger.
func sdu(i, size int) []byte {
	b := fmt.Appendf(nil, "sdu %d", i)
	for len(b) < size {
		b = append(b, byte('a'+len(b)%26))
	}
	return b
}

// TestDiodeNodes: two nodes joined by a one-way diode shim over UDP only
// (the sender's identity signs, the receiver is configured with its key):
// a program's flow from the one reaches a program on the other.
func TestDiodeNodes(t *testing.T) {
	idA := newIdentity(t)
	port := freeUDPPort(t)
	cfgA := fmt.Sprintf(`
[node]
name = "a"
[[ipcp]]
kind = "diode"
layer = "oneway"
[ipcp.diode]
send = "127.0.0.1:%d"
flows = { files = 7 }
loss = 1
`, port)
	cfgB := fmt.Sprintf(`
[node]
name = "b"
[[ipcp]]
kind = "diode"
layer = "oneway"
[ipcp.diode]
receive = "127.0.0.1:%d"
peer_key = %q
flows = { files = 7 }
loss = 1
`, port, hex.EncodeToString(idA.Public()))
	appA, brA := mgmtApp("app")
	appB, brB := mgmtApp("app")
	startNodeID(t, newIdentity(t), cfgB, appB)
	startNodeID(t, idA, cfgA, appA)
	a, b := <-brA, <-brB
	sendAndReceive(t, a, b, flow.BestEffort(), 100, 0, func() {})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := b.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: "b.diode"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, row := range r.Table.Rows {
		got[row[0]] = row[1]
	}
	if got["fec.blocks_in"] == "" || got["fec.blocks_in"] == "0" || got["fec.forged"] != "0" {
		t.Errorf("got stats %v, want blocks in and none forged", got)
	}
}

// TestCarrierNodes: two nodes whose only link is two pairs of directories
// that the test carries: a delay-tolerant flow of 100 full-size SDUs goes
// across (bundles of over 100 KB, signed through the node's signer
// component, whose messages are at most 2 KB: what is signed is a
// digest), clear and sealed (opened through the signer's agreement), and
// the receiver's acknowledgements come back.
func TestCarrierNodes(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(map[bool]string{false: "clear", true: "sealed"}[sealed], func(t *testing.T) {
			idA, idB := newIdentity(t), newIdentity(t)
			aOut, aIn, bOut, bIn := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
			cfg := func(name, out, in string, peer []byte) string {
				return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "carrier"
layer = "courier"
[ipcp.carrier]
out = %q
in = %q
peer_keys = [%q]
names = ["files"]
poll = "50ms"
ack = true
`, name, out, in, hex.EncodeToString(peer))
			}
			appA, brA := mgmtApp("app")
			appB, brB := mgmtApp("app")
			startNodeID(t, idA, cfg("a", aOut, aIn, idB.Public()), appA)
			startNodeID(t, idB, cfg("b", bOut, bIn, idA.Public()), appB)
			carry := func(from, to string) {
				ents, _ := os.ReadDir(from)
				for _, e := range ents {
					if (strings.HasSuffix(e.Name(), ".bundle") || strings.HasSuffix(e.Name(), ".ack")) && !strings.HasPrefix(e.Name(), ".") {
						os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name()))
					}
				}
			}
			a, b := <-brA, <-brB
			q := flow.DelayTolerant()
			q.Sealed = sealed
			sendAndReceive(t, a, b, q, 100, flow.MaxSDU, func() { carry(aOut, bIn); carry(bOut, aIn) })
			// b's acknowledgements, signed by its signer too, reach a
			for deadline := time.Now().Add(5 * time.Second); counter(statsRows(t, a, "a.carrier"), "bundles.acks_in") < 1; time.Sleep(20 * time.Millisecond) {
				carry(bOut, aIn)
				if time.Now().After(deadline) {
					t.Fatalf("no acknowledgement reached a: a %v, b %v", statsRows(t, a, "a.carrier"), statsRows(t, b, "b.carrier"))
				}
			}
			if st := statsRows(t, b, "b.carrier"); counter(st, "bundles.acks_out") < 1 || counter(st, "bundles.bundles_in") < 1 || counter(st, "bundles.unopened") != 0 {
				t.Errorf("b: %v, want bundles in, acknowledgements out, none unopened", st)
			}
			for _, n := range []string{"a.carrier", "b.carrier"} {
				if st := statsRows(t, map[string]*irm.Broker{"a.carrier": a, "b.carrier": b}[n], n); st["bundles.store_errors"] != "0" {
					t.Errorf("%s: store errors: %v", n, st)
				}
			}
		})
	}
}

// counter is a stats row's value as a number; -1 if it is absent.
func counter(rows map[string]string, name string) int64 {
	v, err := strconv.ParseInt(rows[name], 10, 64)
	if err != nil {
		return -1
	}
	return v
}
