package flow_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
)

// flowPorts are the ports Flows' batch calls are tested over: batch
// ports (rxLoop reads runs) and, on Linux, a plain socket pair (one SDU
// per port read) and shared rings (flowbatch_linux_test.go adds them).
var flowPorts = map[string]func(t *testing.T) (flow.Port, flow.Port){
	// The node's ring ports (images/internal/irm) are batch ports as the
	// pipe is; flowtest.TestBatchPort checks both alike.
	"Pipe": func(t *testing.T) (flow.Port, flow.Port) { return flowtest.Pipe(16) },
}

func sortedPorts() []string {
	var names []string
	for n := range flowPorts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// flowPair makes two Flows of QoS q over the ports mk makes.
func flowPair(t *testing.T, mk func(t *testing.T) (flow.Port, flow.Port), q flow.QoS) (a, b *flow.Flow) {
	t.Helper()
	pa, pb := mk(t)
	var err error
	opts := []flow.Option{flow.WithFRCT(fastFRCT), flow.WithLinger(2 * time.Second)}
	if a, err = flow.New(pa, flow.Info{ID: 1, Local: "a", Remote: "b", QoS: q}, opts...); err != nil {
		t.Fatal(err)
	}
	if b, err = flow.New(pb, flow.Info{ID: 2, Local: "b", Remote: "a", QoS: q}, opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { a.Close(); b.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("Close hangs")
		}
	})
	return a, b
}

// readAll reads want SDUs with ReadBatch into batches of k buffers and
// checks each against sdu(i, size(i)) in order.
func readAll(t *testing.T, f *flow.Flow, want, k int, size func(int) int) {
	t.Helper()
	bufs, sizes := flowtest.BatchBufs(k, flow.MaxSDU)
	f.SetReadDeadline(time.Now().Add(10 * time.Second))
	for got := 0; got < want; {
		n, err := f.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d: %d, %v", got, want, n, err)
		}
		if n < 1 || n > k {
			t.Fatalf("ReadBatch = %d, want 1..%d", n, k)
		}
		for i := range n {
			if w := sdu(got, size(got)); !bytes.Equal(bufs[i][:sizes[i]], w) {
				t.Fatalf("SDU %d: got %d bytes (seq %d), want %d bytes", got, sizes[i], seqOf(bufs[i]), len(w))
			}
			got++
		}
	}
}

// TestFlowBatchInOrder: runs written with WriteBatch and read with
// ReadBatch (and a mix with Write and Read) arrive whole, in order, one
// SDU per buffer, with and without FRCT, over every kind of port.
func TestFlowBatchInOrder(t *testing.T) {
	const total = 300
	size := func(i int) int { return 4 + i*37%(flow.MaxSDU-200) }
	for _, name := range sortedPorts() {
		for _, q := range []struct {
			name string
			q    flow.QoS
		}{{"raw", flow.Raw()}, {"data", flow.Data()}} {
			t.Run(name+"/"+q.name, func(t *testing.T) {
				a, b := flowPair(t, flowPorts[name], q.q)
				done := make(chan error, 1)
				go func() {
					a.SetWriteDeadline(time.Now().Add(10 * time.Second))
					var run [][]byte
					for i := 0; i < total; i++ {
						if i%50 == 49 { // a single Write between runs
							if _, err := a.Write(sdu(i, size(i))); err != nil {
								done <- err
								return
							}
							continue
						}
						run = append(run, sdu(i, size(i)))
						if len(run) == 23 || i == total-1 || i%50 == 48 {
							n, err := a.WriteBatch(run)
							if err != nil || n != len(run) {
								done <- errors.Join(err, errors.New("short WriteBatch"))
								return
							}
							run = run[:0]
						}
					}
					done <- nil
				}()
				readAll(t, b, total, 7, size)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if s := b.Stats(); s.RecvSDUs != total {
					t.Errorf("reader's RecvSDUs = %d, want %d", s.RecvSDUs, total)
				}
				if s := a.Stats(); s.SentSDUs != total {
					t.Errorf("writer's SentSDUs = %d, want %d", s.SentSDUs, total)
				}
			})
		}
	}
}

// TestFlowBatchPartial: ReadBatch returns what is ready without waiting
// for the batch to fill, and a Read after a ReadBatch takes the next SDU
// of the same run.
func TestFlowBatchPartial(t *testing.T) {
	for _, name := range sortedPorts() {
		t.Run(name, func(t *testing.T) {
			a, b := flowPair(t, flowPorts[name], flow.Raw())
			if n, err := a.WriteBatch([][]byte{sdu(0, 10), sdu(1, 10), sdu(2, 10), sdu(3, 10)}); n != 4 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			bufs, sizes := flowtest.BatchBufs(2, 64)
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := b.ReadBatch(bufs, sizes)
			if err != nil || n < 1 || n > 2 {
				t.Fatalf("ReadBatch of 2 = %d, %v; want 1..2", n, err)
			}
			got := n
			p := make([]byte, 64)
			k, err := b.Read(p)
			if err != nil || !bytes.Equal(p[:k], sdu(got, 10)) {
				t.Fatalf("Read after ReadBatch: %d, %v, seq %d; want SDU %d", k, err, seqOf(p), got)
			}
			got++
			bufs, sizes = flowtest.BatchBufs(16, 64)
			for got < 4 {
				n, err := b.ReadBatch(bufs, sizes)
				if err != nil {
					t.Fatalf("ReadBatch after %d: %v", got, err)
				}
				for i := range n {
					if !bytes.Equal(bufs[i][:sizes[i]], sdu(got, 10)) {
						t.Fatalf("SDU %d: seq %d", got, seqOf(bufs[i]))
					}
					got++
				}
			}
			// Nothing more: a batch of 16 does not wait for 16, it times out
			// empty.
			b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			start := time.Now()
			n, err = b.ReadBatch(bufs, sizes)
			if n != 0 || !errors.Is(err, flow.ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadBatch on an empty flow = %d, %v; want 0, a deadline error", n, err)
			}
			if d := time.Since(start); d < 40*time.Millisecond {
				t.Errorf("ReadBatch returned after %v, before its deadline", d)
			}
		})
	}
}

// TestFlowBatchTruncated: an SDU longer than its buffer is consumed, cut
// to it, and ends its batch with ErrTruncated; the SDUs after it are
// read by the next call.
func TestFlowBatchTruncated(t *testing.T) {
	for _, name := range sortedPorts() {
		t.Run(name, func(t *testing.T) {
			a, b := flowPair(t, flowPorts[name], flow.Raw())
			in := [][]byte{sdu(0, 20), sdu(1, 20), sdu(2, 100), sdu(3, 20)}
			if n, err := a.WriteBatch(in); n != 4 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			bufs, sizes := flowtest.BatchBufs(8, 50)
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			for got := 0; got < 4; {
				n, err := b.ReadBatch(bufs, sizes)
				if n == 0 {
					t.Fatalf("ReadBatch after %d: %v", got, err)
				}
				for i := range n {
					w := in[got]
					if len(w) > 50 {
						w = w[:50]
					}
					if !bytes.Equal(bufs[i][:sizes[i]], w) {
						t.Fatalf("SDU %d: %d bytes, seq %d", got, sizes[i], seqOf(bufs[i]))
					}
					got++
				}
				cut := got == 3 // the long one was the last of this batch
				if cut != errors.Is(err, flow.ErrTruncated) {
					t.Fatalf("batch ending at SDU %d: error %v (truncated: %v)", got-1, err, cut)
				}
				if !cut && err != nil {
					t.Fatalf("batch ending at SDU %d: %v", got-1, err)
				}
			}
		})
	}
}

// TestFlowBatchTooBig: WriteBatch stops at an SDU longer than MaxSDU,
// having written those before it; the reader gets exactly those.
func TestFlowBatchTooBig(t *testing.T) {
	for _, q := range []flow.QoS{flow.Raw(), flow.Data()} {
		a, b := flowPair(t, flowPorts["Pipe"], q)
		in := [][]byte{sdu(0, 10), sdu(1, 10), make([]byte, a.MaxSDU()+1), sdu(3, 10)}
		n, err := a.WriteBatch(in)
		if n != 2 || !errors.Is(err, flow.ErrTooBig) {
			t.Fatalf("%v: WriteBatch with a long third SDU = %d, %v; want 2, ErrTooBig", q.Cube(), n, err)
		}
		readAll(t, b, 2, 8, func(int) int { return 10 })
		bufs, sizes := flowtest.BatchBufs(8, 64)
		b.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := b.ReadBatch(bufs, sizes); n != 0 || !errors.Is(err, flow.ErrTimeout) {
			t.Fatalf("%v: after the two: ReadBatch = %d, %v; want 0, ErrTimeout", q.Cube(), n, err)
		}
		if n, err := b.ReadBatch(bufs, sizes[:2]); n != 0 || !errors.Is(err, flow.ErrInvalid) {
			t.Fatalf("%v: ReadBatch with fewer sizes than buffers = %d, %v; want ErrInvalid", q.Cube(), n, err)
		}
	}
}

// TestFlowBatchWriteDeadline: a WriteBatch into a flow nobody reads
// stops at the write deadline and reports exactly how many SDUs it
// wrote: the reader then reads those and no more.
func TestFlowBatchWriteDeadline(t *testing.T) {
	for _, name := range sortedPorts() {
		t.Run(name, func(t *testing.T) {
			a, b := flowPair(t, flowPorts[name], flow.Raw())
			in := make([][]byte, 2000)
			for i := range in {
				in[i] = sdu(i, 8)
			}
			a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := a.WriteBatch(in)
			if n == 0 || n == len(in) || !errors.Is(err, flow.ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("WriteBatch of %d into a full flow = %d, %v; want some, a deadline error", len(in), n, err)
			}
			readAll(t, b, n, 16, func(int) int { return 8 })
			bufs, sizes := flowtest.BatchBufs(16, 64)
			b.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if k, err := b.ReadBatch(bufs, sizes); k != 0 || !errors.Is(err, flow.ErrTimeout) {
				t.Fatalf("after the %d written: ReadBatch = %d (seq %d), %v; want 0, ErrTimeout", n, k, seqOf(bufs[0]), err)
			}
		})
	}
}

// TestFlowBatchClose: Close releases a WriteBatch blocked on a full flow
// (with the count it wrote) and a ReadBatch blocked on an empty one;
// after the peer closed, ReadBatch returns what was in flight, then
// io.EOF.
func TestFlowBatchClose(t *testing.T) {
	for _, name := range sortedPorts() {
		t.Run(name+"/Local", func(t *testing.T) {
			a, _ := flowPair(t, flowPorts[name], flow.Raw())
			in := make([][]byte, 5000)
			for i := range in {
				in[i] = sdu(i, 8)
			}
			type res struct {
				n   int
				err error
			}
			wrote, read := make(chan res, 1), make(chan res, 1)
			go func() { n, err := a.WriteBatch(in); wrote <- res{n, err} }()
			r, w := flowPorts[name](t) // a second pair: b2 reads an empty flow
			b2, err := flow.New(r, flow.Info{ID: 3, QoS: flow.Raw()})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			go func() {
				bufs, sizes := flowtest.BatchBufs(8, 64)
				n, err := b2.ReadBatch(bufs, sizes)
				read <- res{n, err}
			}()
			time.Sleep(100 * time.Millisecond)
			select {
			case r := <-wrote:
				t.Fatalf("WriteBatch of %d into a flow nobody reads returned: %d, %v", len(in), r.n, r.err)
			case r := <-read:
				t.Fatalf("ReadBatch on an empty flow returned: %d, %v", r.n, r.err)
			default:
			}
			a.Close()
			b2.Close()
			for _, ch := range []chan res{wrote, read} {
				select {
				case r := <-ch:
					if !errors.Is(r.err, flow.ErrClosed) || !errors.Is(r.err, net.ErrClosed) {
						t.Errorf("blocked call after Close: %d, %v; want ErrClosed", r.n, r.err)
					}
					if ch == wrote && (r.n == 0 || r.n == len(in)) {
						t.Errorf("WriteBatch after Close: wrote %d of %d, want a part", r.n, len(in))
					}
				case <-time.After(5 * time.Second):
					t.Fatal("a blocked batch call still blocks 5 s after Close")
				}
			}
			bufs, sizes := flowtest.BatchBufs(8, 64)
			if n, err := a.ReadBatch(bufs, sizes); n != 0 || !errors.Is(err, flow.ErrClosed) {
				t.Errorf("ReadBatch after Close = %d, %v; want ErrClosed", n, err)
			}
			if n, err := a.WriteBatch(in[:2]); n != 0 || !errors.Is(err, flow.ErrClosed) {
				t.Errorf("WriteBatch after Close = %d, %v; want ErrClosed", n, err)
			}
		})
		t.Run(name+"/Peer", func(t *testing.T) {
			a, b := flowPair(t, flowPorts[name], flow.Raw())
			in := [][]byte{sdu(0, 8), sdu(1, 8), sdu(2, 8)}
			if n, err := a.WriteBatch(in); n != 3 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			time.Sleep(50 * time.Millisecond) // in flight before the close
			a.Close()
			bufs, sizes := flowtest.BatchBufs(8, 64)
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for {
				n, err := b.ReadBatch(bufs, sizes)
				got += n
				if err != nil {
					if n != 0 || !errors.Is(err, io.EOF) {
						t.Fatalf("ReadBatch after the peer closed = %d, %v; want 0, io.EOF", n, err)
					}
					break
				}
			}
			if got != 3 {
				t.Errorf("read %d SDUs sent before the peer closed, want 3", got)
			}
		})
	}
}

// TestFlowBatchZeroAllocs: without FRCT, a run written with WriteBatch
// and read with ReadBatch allocates nothing per SDU, over a batch port
// (and, on Linux, shared rings). Run it without -race.
func TestFlowBatchZeroAllocs(t *testing.T) {
	for _, name := range []string{"Pipe", "RingPort", "Shm"} {
		mk, ok := flowPorts[name]
		if !ok {
			continue
		}
		t.Run(name, func(t *testing.T) {
			a, b := flowPair(t, mk, flow.Raw())
			msgs := make([][]byte, 16)
			for i := range msgs {
				msgs[i] = sdu(i, 1000)
			}
			bufs, sizes := flowtest.BatchBufs(16, flow.MaxSDU)
			round := func() {
				if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
					t.Fatal(n, err)
				}
				for got := 0; got < len(msgs); {
					n, err := b.ReadBatch(bufs, sizes)
					if err != nil {
						t.Fatal(err)
					}
					got += n
				}
			}
			for range 50 { // the receive queue's batches, made once
				round()
			}
			if allocs := testing.AllocsPerRun(500, round); allocs != 0 {
				t.Errorf("got %v allocations per run of 16 SDUs written and read, want 0", allocs)
			}
		})
	}
}
