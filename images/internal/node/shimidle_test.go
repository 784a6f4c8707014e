package node

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/ipcp"
)

// TestShimIdleTimeout runs a unicast layer between two nodes over UDP
// shims that deallocate flows idle for 400 ms ([ipcp.udp] idle_timeout).
// With the layer's keepalive (100 ms) below it, the keepalives on the idle
// N-1 data-transfer flow keep it, and the adjacency, up. With a keepalive
// of 2 s, the shim expires the idle data-transfer flow and the adjacency
// goes down: what the keepalives are for.
func TestShimIdleTimeout(t *testing.T) {
	for _, tc := range []struct {
		name, keepalive string
		expire          bool
	}{{"keepalive below the idle timeout", "100ms", false}, {"keepalive above it", "2s", true}} {
		t.Run(tc.name, func(t *testing.T) {
			pa, pb := freeUDPPort(t), freeUDPPort(t)
			cfg := func(name string, port, peer int, uni string) string {
				return fmt.Sprintf(`
[node]
name = %q
[[ipcp]]
kind = "udp"
name = "%s.udp"
layer = "udp"
[ipcp.udp]
addr = "127.0.0.1:%d"
idle_timeout = "400ms"
dir = { "%s.uni" = "127.0.0.1:%d" }
[[ipcp]]
kind = "unicast"
name = "%s.uni"
layer = "uni"
[ipcp.unicast]
lower = ["udp"]
keepalive = %q
%s
`, name, name, port, map[string]string{"a": "b", "b": "a"}[name], peer, name, tc.keepalive, uni)
			}
			extra, brs := app("mgmt")
			extraB, brsB := app("mgmt")
			startNode(t, cfg("a", pa, pb, "bootstrap = true\nadmission = \"open\""), extra)
			startNode(t, cfg("b", pb, pa, `enroll = "a.uni"`), extraB)
			brA, brB := <-brs, <-brsB
			stat := func(proc, counter string) uint64 {
				br := brA
				if proc[0] == 'b' {
					br = brB
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				r, err := br.Mgmt(ctx, ipcp.MgmtReq{Cmd: "stats", IPCP: proc})
				if err != nil {
					t.Fatalf("stats of %s: %v", proc, err)
				}
				for _, row := range r.Table.Rows {
					if len(row) == 2 && row[0] == counter {
						v, _ := strconv.ParseUint(row[1], 10, 64)
						return v
					}
				}
				t.Fatalf("stats of %s: no %s in %v", proc, counter, r.Table.Rows)
				return 0
			}
			deadline := time.Now().Add(20 * time.Second)
			for stat("a.uni", "neighbours") != 1 {
				if time.Now().After(deadline) {
					t.Fatal("no adjacency between a.uni and b.uni")
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Idle: no program uses the layer.
			var expired, downs uint64
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
				// Either shim may expire the flow first (the other then sees
				// it closed): count both.
				expired, downs = stat("a.udp", "flows_expired")+stat("b.udp", "flows_expired"), stat("a.uni", "adjacencies.downs")
				if tc.expire && expired > 0 && downs > 0 {
					break
				}
			}
			t.Logf("keepalive %s: %d shim flows expired, %d adjacency downs, %d keepalives received",
				tc.keepalive, expired, downs, stat("a.uni", "keepalives_in"))
			if tc.expire {
				if expired == 0 || downs == 0 {
					t.Fatalf("%d flows expired, %d adjacency downs: want the idle data-transfer flow expired and the adjacency down", expired, downs)
				}
				return
			}
			if expired != 0 || downs != 0 {
				t.Fatalf("%d flows expired, %d adjacency downs: want none", expired, downs)
			}
			if stat("a.uni", "keepalives_in") == 0 {
				t.Fatal("no keepalive received on the data-transfer flow")
			}
		})
	}
}
