package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast/dt"
)

// TestUnicastOverUDP runs three nodes in a line A - B - C over the UDP
// shim on 127.0.0.1 with a unicast layer on top, configured only by
// TOML: A bootstraps, B enrolls via A, C via B. A flow from A's program
// to C's crosses B.
func TestUnicastOverUDP(t *testing.T) {
	pa, pb, pc := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	cfg := func(name string, port int, dir, uni string) string {
		return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
dir = { %s }
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
%s
`, name, port, dir, name, uni)
	}
	appC, brC := app("echo")
	startNode(t, cfg("c", pc, fmt.Sprintf(`"b.uni" = "127.0.0.1:%d"`, pb), `enroll = "b.uni"`), appC)
	startNode(t, cfg("b", pb, fmt.Sprintf(`"a.uni" = "127.0.0.1:%d", "c.uni" = "127.0.0.1:%d"`, pa, pc), `enroll = "a.uni"`))
	appA, brA := app("app")
	a := startNode(t, cfg("a", pa, fmt.Sprintf(`"b.uni" = "127.0.0.1:%d"`, pb), "bootstrap = true\nadmission = \"open\"\nrouting = \"alternate\""), appA)
	ba, bc := <-brA, <-brC

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bc.Bind(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan flow.Port, 1)
	go func() {
		p, info, err := bc.Accept(ctx)
		if err != nil {
			close(accepted)
			return
		}
		if info.Layer != "uni" {
			t.Errorf("accepted in layer %q, want uni", info.Layer)
		}
		if want := flow.MaxSDU - dt.PCILen; info.SDULimit() != want {
			t.Errorf("accepted flow's SDU limit %d, want %d", info.SDULimit(), want)
		}
		accepted <- p
	}()
	var pA flow.Port
	start := time.Now()
	for {
		p, info, err := ba.Alloc(ctx, "echo", flow.BestEffort())
		if err == nil {
			if info.Layer != "uni" {
				t.Fatalf("allocated in layer %q, want uni", info.Layer)
			}
			// The layer tells the writer its SDU limit: a Flow refuses an
			// SDU the layer would have to drop.
			if want := flow.MaxSDU - dt.PCILen; info.SDULimit() != want {
				t.Errorf("allocated flow's SDU limit %d, want %d", info.SDULimit(), want)
			}
			pA = p
			break
		}
		if !errors.Is(err, flow.ErrNotFound) || ctx.Err() != nil {
			t.Fatalf("alloc echo: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("layer up and flow allocated %v after the nodes started", time.Since(start).Round(time.Millisecond))
	pC := <-accepted
	if pC == nil {
		t.Fatal("no flow accepted")
	}
	buf := make([]byte, flow.MaxSDU)
	for i, size := range []int{1, 100, 1000, flow.MaxSDU - 19} {
		msg := make([]byte, size)
		msg[0] = byte(i)
		if err := pA.Write(msg, time.Now().Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := pC.Read(buf, time.Now().Add(2*time.Second))
		if err != nil || n != size || buf[0] != byte(i) {
			t.Fatalf("read %d-byte SDU: %d bytes, %v", size, n, err)
		}
		if err := pC.Write(buf[:n], time.Now().Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if n, err = pA.Read(buf, time.Now().Add(2*time.Second)); err != nil || n != size {
			t.Fatalf("echo of %d bytes: %d, %v", size, n, err)
		}
	}
	// The management commands answer through the IRM.
	for _, cmd := range []string{"members", "routes", "flows", "stats"} {
		r, err := ba.Mgmt(ctx, ipcp.MgmtReq{Cmd: cmd, IPCP: "a.uni"})
		if err != nil || len(r.Table.Rows) == 0 {
			t.Errorf("%s on a.uni: %d rows, %v", cmd, len(r.Table.Rows), err)
		}
	}
	r, err := ba.Mgmt(ctx, ipcp.MgmtReq{Cmd: "routes", IPCP: "a.uni"})
	if err == nil && len(r.Table.Rows) != 2 {
		t.Errorf("a.uni has %d routes, want 2 (b and c): %v", len(r.Table.Rows), r.Table.Rows)
	}
	// The data path's own packet buffers are charged to the IPCP
	// component's budget (unicast.Config.Reserve): what its budget has in
	// use covers at least the buffers it has made.
	r, err = ba.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: "a.uni"})
	made := -1
	for _, row := range r.Table.Rows {
		if len(row) == 2 && row[0] == "buf_allocs" {
			made, _ = strconv.Atoi(row[1])
		}
	}
	cs, serr := a.Kernel().Stats(ipcpComponent("a.uni"))
	if err != nil || serr != nil || made <= 0 || cs.Budget.Bufs < made {
		t.Errorf("a.uni made %d packet buffers (%v); its component's budget has %d in use (%v): the pool is not charged to it", made, err, cs.Budget.Bufs, serr)
	}
	pA.Close()
	if _, err := pC.Read(buf, time.Now().Add(5*time.Second)); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("C's read after A closed: %v, want ErrClosed", err)
	}
	pC.Close()
}
