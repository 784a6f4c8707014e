package flow_test

import (
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// The batch calls are found by assertion, so that this file also builds
// against a flow package without them (to measure a baseline there).
type (
	batchReader interface {
		ReadBatch(bufs [][]byte, sizes []int) (int, error)
	}
	batchWriter interface {
		WriteBatch(sdus [][]byte) (int, error)
	}
	readWither interface {
		ReadWith(use func(sdu []byte)) error
	}
)

// cpuNS is the process's CPU time (user and system) so far.
func cpuNS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkFlowShm measures the program's side of a hosted flow over
// shared rings, per 1000-byte SDU, without FRCT: "recv" has the node's
// end write runs of 16 (as the gateway does) and a Flow read them one
// per Read ("one"), a run per ReadBatch ("batch") or one per ReadWith,
// where it lies in the ring ("with"; the reader looks at the first 8
// bytes of each SDU, after Read as in ReadWith's use); "send" has a Flow
// write them one per Write or 16 per WriteBatch and the node's end read
// runs. Back-pressure throughout: nothing is lost. cpu-ns/SDU is the
// process's CPU time per SDU, both sides: on a shared machine it moves
// less than ns/op (wall time) with what else runs.
func BenchmarkFlowShm(b *testing.B) {
	const size, run = 1000, 16
	msgs := make([][]byte, run)
	for i := range msgs {
		msgs[i] = make([]byte, size)
	}
	for _, mode := range []string{"one", "batch", "with"} {
		batch := mode == "batch"
		b.Run("recv/"+mode, func(b *testing.B) {
			prog, node := flow.ShmPair(b, 16)
			f, err := flow.New(prog, flow.Info{ID: 1, QoS: flow.Raw()})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			br, ok := any(f).(batchReader)
			if batch && !ok {
				b.Skip("no Flow.ReadBatch")
			}
			rw, ok := any(f).(readWither)
			if mode == "with" && !ok {
				b.Skip("no Flow.ReadWith")
			}
			var seq uint64
			use := func(sdu []byte) { seq += binary.BigEndian.Uint64(sdu) }
			nb := node.(flow.BatchPort)
			go writeRuns(nb, msgs, run, b.N)
			bufs, sizes := benchBufs(32, flow.MaxSDU)
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuNS()
			defer func() { b.ReportMetric(float64(cpuNS()-cpu)/float64(b.N), "cpu-ns/SDU") }()
			for got := 0; got < b.N; {
				var n int
				switch mode {
				case "batch":
					n, err = br.ReadBatch(bufs, sizes)
				case "with":
					err = rw.ReadWith(use)
					n = 1
				default:
					_, err = f.Read(bufs[0])
					seq += binary.BigEndian.Uint64(bufs[0])
					n = 1
				}
				if err != nil {
					b.Fatal(err)
				}
				got += n
			}
		})
		if mode == "with" {
			continue
		}
		b.Run("send/"+mode, func(b *testing.B) {
			prog, node := flow.ShmPair(b, 16)
			f, err := flow.New(prog, flow.Info{ID: 1, QoS: flow.Raw()})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			bw, ok := any(f).(batchWriter)
			if batch && !ok {
				b.Skip("no Flow.WriteBatch")
			}
			nb := node.(flow.BatchPort)
			done := make(chan struct{})
			go func() {
				defer close(done)
				bufs, sizes := benchBufs(run, flow.MaxSDU)
				for got := 0; got < b.N; {
					n, err := nb.ReadBatch(bufs, sizes, time.Time{})
					if err != nil {
						return
					}
					got += n
				}
			}()
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuNS()
			defer func() { b.ReportMetric(float64(cpuNS()-cpu)/float64(b.N), "cpu-ns/SDU") }()
			for sent := 0; sent < b.N; {
				k := min(run, b.N-sent)
				if batch {
					if _, err := bw.WriteBatch(msgs[:k]); err != nil {
						b.Fatal(err)
					}
				} else {
					for _, m := range msgs[:k] {
						if _, err := f.Write(m); err != nil {
							b.Fatal(err)
						}
					}
				}
				sent += k
			}
			<-done
		})
	}
}

// benchBufs returns n read buffers of size bytes and their sizes (here,
// not flowtest's, so that the file builds against older code too).
func benchBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// writeRuns writes n of msgs' SDUs to nb in runs of at most run, until
// nb fails: a flood from the node's side.
func writeRuns(nb flow.BatchPort, msgs [][]byte, run, n int) {
	for sent := 0; sent < n; {
		k, err := nb.WriteBatch(msgs[:min(run, n-sent)], time.Time{})
		sent += k
		if err != nil {
			return
		}
	}
}
