package flowtest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// BatchSDUs returns n SDUs "sdu FROM" to "sdu FROM+n-1".
func BatchSDUs(n, from int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("sdu %d", from+i))
	}
	return out
}

// BatchBufs returns n read buffers of size bytes and their sizes slice.
func BatchBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// TestBatchPort checks a flow.BatchPort implementation: newPair returns
// the two ends of a fresh flow of 16 slots. Batches keep their order
// across a full flow, a short buffer truncates (counted, the rest still
// read), an SDU over flow.MaxSDU is refused, deadlines and closes end
// blocked calls.
func TestBatchPort(t *testing.T, newPair func() (flow.BatchPort, flow.BatchPort)) {
	mk := newPair
	{
		t.Run("InOrder", func(t *testing.T) {
			a, b := mk()
			defer a.Close()
			defer b.Close()
			// 40 SDUs through a 16-slot flow: WriteBatch blocks until
			// the reader makes room.
			want := BatchSDUs(40, 0)
			done := make(chan error, 1)
			go func() {
				n, err := a.WriteBatch(want, time.Now().Add(5*time.Second))
				if err == nil && n != len(want) {
					err = fmt.Errorf("WriteBatch = %d, want %d", n, len(want))
				}
				done <- err
			}()
			bufs, sizes := BatchBufs(7, flow.MaxSDU)
			got := 0
			for got < len(want) {
				n, err := b.ReadBatch(bufs, sizes, time.Now().Add(5*time.Second))
				if err != nil {
					t.Fatalf("ReadBatch after %d: %v", got, err)
				}
				if n < 1 || n > len(bufs) {
					t.Fatalf("ReadBatch = %d, want 1..%d", n, len(bufs))
				}
				for i := range n {
					if g := bufs[i][:sizes[i]]; !bytes.Equal(g, want[got]) {
						t.Fatalf("SDU %d = %q, want %q", got, g, want[got])
					}
					got++
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
		t.Run("Truncated", func(t *testing.T) {
			a, b := mk()
			defer a.Close()
			defer b.Close()
			msgs := [][]byte{[]byte("ab"), []byte("long SDU"), []byte("cd")}
			if n, err := a.WriteBatch(msgs, time.Time{}); n != 3 || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want 3, nil", n, err)
			}
			bufs, sizes := BatchBufs(3, 4)
			deadline := time.Now().Add(time.Second)
			n, err := b.ReadBatch(bufs, sizes, deadline)
			for n < 2 && err == nil { // a batch may end early; never past the truncation
				var m int
				m, err = b.ReadBatch(bufs[n:], sizes[n:], deadline)
				n += m
			}
			if n != 2 || !errors.Is(err, flow.ErrTruncated) {
				t.Fatalf("ReadBatch = %d, %v; want 2, ErrTruncated", n, err)
			}
			if sizes[1] != 4 || string(bufs[1]) != "long" {
				t.Errorf("truncated SDU = %q (size %d), want \"long\" (4)", bufs[1][:sizes[1]], sizes[1])
			}
			n, err = b.ReadBatch(bufs, sizes, deadline)
			if n != 1 || err != nil || string(bufs[0][:sizes[0]]) != "cd" {
				t.Errorf("next ReadBatch = %d, %v, %q; want 1, nil, \"cd\"", n, err, bufs[0][:sizes[0]])
			}
		})
		t.Run("TooBig", func(t *testing.T) {
			a, b := mk()
			defer a.Close()
			defer b.Close()
			msgs := [][]byte{[]byte("ok"), make([]byte, flow.MaxSDU+1), []byte("after")}
			n, err := a.WriteBatch(msgs, time.Time{})
			if n != 1 || !errors.Is(err, flow.ErrTooBig) {
				t.Fatalf("WriteBatch = %d, %v; want 1, ErrTooBig", n, err)
			}
			if n, err := a.WriteBatch(msgs[2:], time.Time{}); n != 1 || err != nil {
				t.Fatalf("WriteBatch after = %d, %v; want 1, nil", n, err)
			}
			bufs, sizes := BatchBufs(4, flow.MaxSDU)
			var got []string
			for len(got) < 2 {
				n, err := b.ReadBatch(bufs, sizes, time.Now().Add(time.Second))
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					got = append(got, string(bufs[i][:sizes[i]]))
				}
			}
			if fmt.Sprint(got) != "[ok after]" {
				t.Errorf("got %q, want [ok after]", got)
			}
		})
		t.Run("Timeout", func(t *testing.T) {
			a, b := mk()
			defer a.Close()
			defer b.Close()
			bufs, sizes := BatchBufs(4, flow.MaxSDU)
			if n, err := b.ReadBatch(bufs, sizes, time.Now().Add(20*time.Millisecond)); n != 0 || !errors.Is(err, flow.ErrTimeout) {
				t.Errorf("ReadBatch on an idle flow = %d, %v; want 0, ErrTimeout", n, err)
			}
			n, err := a.WriteBatch(BatchSDUs(40, 0), time.Now().Add(20*time.Millisecond))
			if n != 16 || !errors.Is(err, flow.ErrTimeout) {
				t.Errorf("WriteBatch into a 16-slot flow = %d, %v; want 16, ErrTimeout", n, err)
			}
		})
		t.Run("Closed", func(t *testing.T) {
			a, b := mk()
			defer b.Close()
			if n, err := a.WriteBatch(BatchSDUs(3, 0), time.Time{}); n != 3 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			a.Close()
			if n, err := a.WriteBatch(BatchSDUs(1, 0), time.Time{}); n != 0 || !errors.Is(err, flow.ErrClosed) {
				t.Errorf("WriteBatch after Close = %d, %v; want 0, ErrClosed", n, err)
			}
			bufs, sizes := BatchBufs(8, flow.MaxSDU)
			got := 0
			for {
				n, err := b.ReadBatch(bufs, sizes, time.Now().Add(time.Second))
				got += n
				if err != nil {
					if !errors.Is(err, flow.ErrClosed) || n != 0 {
						t.Errorf("ReadBatch = %d, %v; want 0, ErrClosed", n, err)
					}
					break
				}
			}
			if got != 3 {
				t.Errorf("read %d SDUs in flight before the close, want 3", got)
			}
		})
	}
}
