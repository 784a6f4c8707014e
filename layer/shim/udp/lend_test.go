package udp

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/impair"
	"github.com/ouronet/ouro/layer/shim/internal/engine"
)

// TestLentSDUs: a flow whose port lends its SDUs (flow.LendPort, as the
// node's rings do) is sent from the lent buffers: the shim header written
// in the room in front of each SDU, a sealed SDU sealed in place. Every
// size crosses whole and in order, unsealed and sealed; an SDU too long
// for a sealed flow is dropped and counted as the copying loop counts it;
// every Lend is returned before the next.
func TestLentSDUs(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			var a, b *node
			q := flow.BestEffort()
			max := flow.MaxSDU
			if sealed {
				sa, sb := sealedPair(t, nil, sealOpts{}, sealOpts{})
				a, b = sa.node, sb.node
				q.Sealed, max = true, engine.SealedMaxSDU
			} else {
				a, b = pair(t, "127.0.0.1:0", impair.Config{})
			}
			app, ipcpEnd := flowtest.Pipe(256)
			defer app.Close()
			lp := flowtest.Lending(ipcpEnd, 128)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := a.ipcp.AllocPeer(ctx, ipcp.AllocReq{ID: 1, Dst: "srv", QoS: q}, lp); err != nil {
				t.Fatalf("alloc: %v", err)
			}
			var server flow.Port
			select {
			case acc := <-b.up.Accepted:
				server = acc.Port
				defer server.Close()
			case <-ctx.Done():
				t.Fatal("no flow accepted")
			}
			bp := app.(flow.BatchPort)
			buf := make([]byte, flow.MaxSDU)
			sdu := func(i int) []byte { return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, max)[:i%max+1] }
			for off := 0; off < max; off += 50 { // every size, in batches of 50
				var batch [][]byte
				for i := off; i < min(off+50, max); i++ {
					batch = append(batch, sdu(i))
				}
				for k := 0; k < len(batch); {
					n, err := bp.WriteBatch(batch[k:], time.Now().Add(2*time.Second))
					if err != nil {
						t.Fatalf("WriteBatch: %v", err)
					}
					k += n
				}
				for i := off; i < min(off+50, max); i++ {
					n, err := server.Read(buf, time.Now().Add(2*time.Second))
					if err != nil || !bytes.Equal(buf[:n], sdu(i)) {
						t.Fatalf("SDU %d: %d bytes, %v; want %d bytes", i, n, err, len(sdu(i)))
					}
				}
			}
			if sealed { // one byte over the sealed flow's limit: dropped, counted
				before := a.ipcp.Stats().Drops.Truncated
				if err := app.Write(make([]byte, max+1), time.Now().Add(time.Second)); err != nil {
					t.Fatal(err)
				}
				waitFor(t, func() bool { return a.ipcp.Stats().Drops.Truncated == before+1 })
			}
			waitFor(t, func() bool { return lp.Lends.Load() > 0 && lp.Returns.Load() == lp.Lends.Load() })
			if u := lp.Unreturned.Load(); u != 0 {
				t.Errorf("%d Lends while the last was still out", u)
			}
			if st := a.ipcp.Stats(); st.PacketsOut != uint64(max) {
				t.Errorf("%d packets out, want %d", st.PacketsOut, max)
			}
		})
	}
}
