package unicast_test

import (
	"context"
	"encoding/base64"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/unicast"
	"github.com/ouronet/ouro/layer/unicast/dt"
	"github.com/ouronet/ouro/layer/unicast/unicasttest"
)

func captureCmd(tb testing.TB, nd *unicasttest.Node, args map[string]string) ipcp.MgmtResp {
	tb.Helper()
	r, err := nd.IPCP.Mgmt(context.Background(), ipcp.MgmtReq{Cmd: unicast.CmdCapture, IPCP: nd.Name, Args: args})
	if err != nil {
		tb.Fatalf("capture %v at %s: %v", args, nd.Name, err)
	}
	return r
}

func readRecords(tb testing.TB, nd *unicasttest.Node) []capture.Record {
	tb.Helper()
	var out []capture.Record
	for {
		r := captureCmd(tb, nd, map[string]string{capture.ArgOp: capture.OpRead})
		b, err := base64.StdEncoding.DecodeString(r.Text)
		if err != nil {
			tb.Fatal(err)
		}
		rs, err := capture.DecodePage(b)
		if err != nil {
			tb.Fatal(err)
		}
		if len(rs) == 0 {
			return out
		}
		out = append(out, rs...)
	}
}

// TestForwardCaptureAllocs is TestForwardZeroAllocs with a capture
// running at every hop: records are copied into the preallocated rings
// (big enough to keep every packet: AllocsPerRun rounds down, so the
// runs must all keep), nothing allocates. It
// also checks that the hops captured the SDUs both ways with their PCI.
func TestForwardCaptureAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	a, b, n := chain3(t, "mb-ecn")
	for _, nd := range n.Nodes() {
		captureCmd(t, nd, map[string]string{capture.ArgOp: capture.OpStart, capture.ArgSlots: "65536", capture.ArgSnap: "64"})
	}
	msg := make([]byte, 100)
	buf := make([]byte, flow.MaxSDU)
	send := func() {
		if err := a.Write(msg, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Read(buf, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2000 {
		send()
	}
	mid := n.Node(unicasttest.NodeName(1))
	readRecords(t, mid) // empty its ring: the next SDUs are kept
	if allocs := quietAllocs(5000, send); allocs != 0 {
		t.Errorf("%v allocations per SDU over 3 hops with captures running, want 0", allocs)
	}
	var in, out int
	rs := readRecords(t, mid)
	for _, r := range rs {
		pci := dt.PCI(r.Data)
		if r.Header.Content() != capture.PDU || r.Len < dt.PCILen || !pci.IsValid() || pci.Cube() >= flow.NumCubes {
			t.Fatalf("record %x %x: not a dt PDU", []byte(r.Header), r.Data)
		}
		if r.Len == dt.PCILen+len(msg) {
			if r.Header.Dir() == capture.In {
				in++
			} else {
				out++
			}
		}
	}
	if in < 5000 || out < 5000 {
		t.Errorf("the middle hop captured %d SDUs in and %d out, want every one of 5000 both ways", in, out)
	}
	rows := captureCmd(t, mid, map[string]string{capture.ArgOp: capture.OpStop}).Table.Rows
	t.Logf("middle hop's capture: %v", rows)
}

// BenchmarkForwardCapture3Hops is BenchmarkForward3Hops with captures
// off and running at all four IPCPs, each drained by a reader through
// the management command as `ouro capture` does (pages back to back
// while records are pending, else a wait of its default poll interval,
// 50 ms). kept% is the share of offered records the rings kept (the
// rest were counted drops: a full ring).
func BenchmarkForwardCapture3Hops(b *testing.B) {
	for _, on := range []bool{false, true} {
		for _, size := range []int{64, 1000} {
			b.Run(map[bool]string{false: "off", true: "on"}[on]+"/"+byteSize(size), func(b *testing.B) {
				a, z, n := chain3(b, "nop")
				var wg sync.WaitGroup
				var kept, dropped atomic.Uint64
				if on {
					ctx, cancel := context.WithCancel(context.Background())
					defer func() {
						cancel()
						wg.Wait()
						if k, d := kept.Load(), dropped.Load(); k+d > 0 {
							b.ReportMetric(100*float64(k)/float64(k+d), "kept%")
						}
					}()
					for _, nd := range n.Nodes() {
						captureCmd(b, nd, map[string]string{capture.ArgOp: capture.OpStart, capture.ArgSlots: "4096"})
						wg.Add(1)
						go func() {
							defer wg.Done()
							read := ipcp.MgmtReq{Cmd: unicast.CmdCapture, Args: map[string]string{capture.ArgOp: capture.OpRead}}
							for ctx.Err() == nil {
								r, err := nd.IPCP.Mgmt(ctx, read)
								if err != nil || counter(r, "pending") == 0 {
									select {
									case <-ctx.Done():
									case <-time.After(50 * time.Millisecond):
									}
								}
							}
							stop := ipcp.MgmtReq{Cmd: unicast.CmdCapture, Args: map[string]string{capture.ArgOp: capture.OpStop}}
							if r, err := nd.IPCP.Mgmt(context.Background(), stop); err == nil {
								kept.Add(counter(r, "kept"))
								dropped.Add(counter(r, "dropped"))
							}
						}()
					}
				}
				forwardBench(b, size, func(p []byte) error { return a.Write(p, time.Time{}) },
					func(p []byte) error { _, err := z.Read(p, time.Now().Add(300*time.Millisecond)); return err })
			})
		}
	}
}

// counter reads a row of a capture answer's counters.
func counter(r ipcp.MgmtResp, name string) uint64 {
	for _, row := range r.Table.Rows {
		if len(row) == 2 && row[0] == name {
			v, _ := strconv.ParseUint(row[1], 10, 64)
			return v
		}
	}
	return 0
}
