package irm_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/images/internal/irm"
	"github.com/ouronet/ouro/kernel"
	"github.com/ouronet/ouro/kernel/kerneltest"
)

var noTime time.Time

// bootPD boots a kernel with one component and returns its PD.
func bootPD(t *testing.T, bufs int) *kernel.PD {
	t.Helper()
	return kerneltest.PD(t, "app", kernel.Budget{Bufs: bufs, Objects: 1 << 12})
}

// ringPair returns two RingPorts connected by two fresh rings.
func ringPair(t *testing.T, pd *kernel.PD, size int) (flow.Port, flow.Port) {
	t.Helper()
	r1, err := pd.NewRing(size)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := pd.NewRing(size)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(c kernel.Cap, r kernel.Rights) kernel.Cap {
		m, err := pd.Mint(c, r, 0)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := irm.NewRingPort(pd, mint(r2, kernel.Read), mint(r1, kernel.Write))
	b := irm.NewRingPort(pd, mint(r1, kernel.Read), mint(r2, kernel.Write))
	pd.Delete(r1)
	pd.Delete(r2)
	return a, b
}

// TestRingPortQueued: Queued counts what the port wrote and the other end
// has not read, drops as it reads, and allocates nothing (the unicast
// transmit loop calls it per batch).
func TestRingPortQueued(t *testing.T) {
	pd := bootPD(t, 1024)
	pa, b := ringPair(t, pd, 64)
	defer pa.Close()
	defer b.Close()
	a := pa.(*irm.RingPort)
	msg := make([]byte, 100)
	for range 5 {
		if err := a.Write(msg, noTime); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Queued(); got != 5 {
		t.Errorf("after 5 writes: Queued %d, want 5", got)
	}
	buf := make([]byte, flow.MaxSDU)
	if _, err := b.Read(buf, noTime); err != nil {
		t.Fatal(err)
	}
	// The reader pops a batch at once: what is left in the ring is what
	// it has not taken.
	if got := a.Queued(); got >= 5 {
		t.Errorf("after a read: Queued %d, want < 5", got)
	}
	if n := testing.AllocsPerRun(100, func() { a.Queued() }); n != 0 {
		t.Errorf("Queued allocates %v, want 0", n)
	}
}

// TestRingPortDepth: QueueCap and BacklogCap are the rings' sizes (a
// power of two at least the size asked), Backlog counts what the other
// end wrote that this end has not popped, and none of them allocates
// (the unicast IPCP calls them per batch and per delivery).
func TestRingPortDepth(t *testing.T) {
	pd := bootPD(t, 1024)
	pa, pb := ringPair(t, pd, 48)
	defer pa.Close()
	defer pb.Close()
	a, b := pa.(*irm.RingPort), pb.(*irm.RingPort)
	if got := a.QueueCap(); got != 64 {
		t.Errorf("QueueCap %d, want 64 (48 rounded up)", got)
	}
	if got := b.BacklogCap(); got != 64 {
		t.Errorf("BacklogCap %d, want 64", got)
	}
	msg := make([]byte, 100)
	for range 7 {
		if err := a.Write(msg, noTime); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Backlog(); got != 7 {
		t.Errorf("after 7 writes: Backlog %d, want 7", got)
	}
	if got := a.Backlog(); got != 0 {
		t.Errorf("the writer's own Backlog %d, want 0 (nothing came its way)", got)
	}
	buf := make([]byte, flow.MaxSDU)
	if _, err := b.Read(buf, noTime); err != nil {
		t.Fatal(err)
	}
	if got := b.Backlog(); got != 0 {
		t.Errorf("after a read (the reader pops the batch): Backlog %d, want 0", got)
	}
	for name, f := range map[string]func() int{"QueueCap": a.QueueCap, "Backlog": b.Backlog, "BacklogCap": b.BacklogCap} {
		if n := testing.AllocsPerRun(100, func() { f() }); n != 0 {
			t.Errorf("%s allocates %v, want 0", name, n)
		}
	}
	a.Close()
	if got := a.QueueCap(); got != 0 {
		t.Errorf("QueueCap after Close %d, want 0", got)
	}
}

func TestRingPortConformance(t *testing.T) {
	pd := bootPD(t, 1<<14)
	flowtest.TestPort(t, func() (flow.Port, flow.Port) { return ringPair(t, pd, 64) })
}

func TestRingPortZeroAllocs(t *testing.T) {
	pd := bootPD(t, 1024)
	a, b := ringPair(t, pd, 64)
	defer a.Close()
	defer b.Close()
	msg := make([]byte, 1400)
	buf := make([]byte, flow.MaxSDU)
	allocs := testing.AllocsPerRun(1000, func() {
		if err := a.Write(msg, noTime); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Read(buf, noTime); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per write+read, want 0", allocs)
	}
}

func TestRingPortBatch(t *testing.T) {
	pd := bootPD(t, 1<<14)
	flowtest.TestBatchPort(t, func() (flow.BatchPort, flow.BatchPort) {
		a, b := ringPair(t, pd, 16)
		return a.(flow.BatchPort), b.(flow.BatchPort)
	})
}

func TestRingPortBatchZeroAllocs(t *testing.T) {
	pd := bootPD(t, 1024)
	a, b := ringPair(t, pd, 64)
	defer a.Close()
	defer b.Close()
	wa, rb := a.(flow.BatchPort), b.(flow.BatchPort)
	msgs := flowtest.BatchSDUs(32, 0)
	bufs, sizes := flowtest.BatchBufs(32, flow.MaxSDU)
	allocs := testing.AllocsPerRun(1000, func() {
		if n, err := wa.WriteBatch(msgs, noTime); n != len(msgs) || err != nil {
			t.Fatal(n, err)
		}
		for got := 0; got < len(msgs); {
			n, err := rb.ReadBatch(bufs, sizes, noTime)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per batch of 32 written and read, want 0", allocs)
	}
}

// TestRingPortBufs: buffers handed on, not copied: AllocBufs and PushBufs
// on one end, PopBufs and FreeBufs on the other carry each SDU whole and in
// order; PopBufs serves first what a Read left in the port's batch; the
// budget is what AllocBufs can take; a closed port refuses both; and a
// round trip allocates nothing.
func TestRingPortBufs(t *testing.T) {
	pd := bootPD(t, 64)
	pa, pb := ringPair(t, pd, 16)
	a, b := pa.(*irm.RingPort), pb.(*irm.RingPort)
	kb := make([]*kernel.Buf, 8)
	n, err := a.AllocBufs(kb)
	if n != 8 || err != nil {
		t.Fatalf("AllocBufs = %d, %v", n, err)
	}
	for i, x := range kb {
		x.Reset()
		copy(x.Extend(i+1), []byte("abcdefgh")[:i+1])
	}
	if n, err := a.PushBufs(kb, noTime); n != 8 || err != nil {
		t.Fatalf("PushBufs = %d, %v", n, err)
	}
	for _, x := range kb {
		if x != nil {
			t.Fatal("PushBufs left a pushed buffer in the caller's slice")
		}
	}
	buf := make([]byte, flow.MaxSDU)
	if k, err := b.Read(buf, noTime); k != 1 || err != nil || buf[0] != 'a' {
		t.Fatalf("Read = %d, %v", k, err)
	}
	got := make([]*kernel.Buf, 16)
	n, err = b.PopBufs(got, noTime)
	if n != 7 || err != nil {
		t.Fatalf("PopBufs after a Read = %d, %v; want the 7 the Read left", n, err)
	}
	for i, x := range got[:n] {
		if want := "abcdefgh"[:i+2]; string(x.Bytes()) != want {
			t.Fatalf("SDU %d = %q, want %q", i, x.Bytes(), want)
		}
	}
	b.FreeBufs(got[:n])
	if n, err := b.PopBufs(got, time.Now().Add(10*time.Millisecond)); n != 0 || !errors.Is(err, flow.ErrTimeout) {
		t.Fatalf("PopBufs of an empty ring = %d, %v; want ErrTimeout", n, err)
	}
	// The budget: 64 buffers, none held now.
	big := make([]*kernel.Buf, 100)
	if n, _ := a.AllocBufs(big); n != 64 {
		t.Fatalf("AllocBufs of 100 with a budget of 64 = %d", n)
	}
	if n, err := a.AllocBufs(kb[:1]); n != 0 || !errors.Is(err, flow.ErrBusy) {
		t.Fatalf("AllocBufs with the budget spent = %d, %v; want ErrBusy", n, err)
	}
	a.FreeBufs(big[:64])
	allocs := testing.AllocsPerRun(1000, func() {
		if n, _ := a.AllocBufs(kb[:4]); n != 4 {
			t.Fatal("no buffers")
		}
		for _, x := range kb[:4] {
			x.Reset()
			x.Extend(1400)
		}
		if n, err := a.PushBufs(kb[:4], noTime); n != 4 || err != nil {
			t.Fatal(n, err)
		}
		if n, err := b.PopBufs(got, noTime); n != 4 || err != nil {
			t.Fatal(n, err)
		}
		b.FreeBufs(got[:4])
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per round of 4 buffers, want 0", allocs)
	}
	a.Close()
	b.Close()
	if n, _ := a.AllocBufs(kb[:1]); n == 1 {
		if k, err := a.PushBufs(kb[:1], noTime); k != 0 || !errors.Is(err, flow.ErrClosed) {
			t.Fatalf("PushBufs on a closed port = %d, %v", k, err)
		}
		a.FreeBufs(kb[:1])
	}
	if n, err := b.PopBufs(got, noTime); n != 0 || !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("PopBufs on a closed port = %d, %v", n, err)
	}
}

// TestRingPortLend: Lend hands the reader the ring's buffers in place,
// each SDU behind the room asked for and with the buffer's tailroom, and
// they stay held (charged to the budget) until Return, even across
// Close; too much room in front is refused; nothing is allocated.
func TestRingPortLend(t *testing.T) {
	pd := bootPD(t, 64)
	pa, pb := ringPair(t, pd, 16)
	a, b := pa.(*irm.RingPort), pb.(*irm.RingPort)
	sdus := [][]byte{[]byte("a"), []byte("ab"), []byte("abc")}
	if n, err := a.WriteBatch(sdus, noTime); n != 3 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	frames := make([][]byte, 8)
	if _, err := b.Lend(frames, kernel.Headroom+1, noTime); !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("Lend with more room than the headroom: %v, want ErrInvalid", err)
	}
	const head = 20
	n, err := b.Lend(frames, head, noTime)
	if n != 3 || err != nil {
		t.Fatalf("Lend = %d, %v", n, err)
	}
	for i, f := range frames[:n] {
		if string(f[head:]) != string(sdus[i]) || cap(f)-len(f) < kernel.BufSize-flow.MaxSDU {
			t.Fatalf("frame %d: %q (cap %d), want %q behind %d bytes with the tailroom", i, f[head:], cap(f), sdus[i], head)
		}
		copy(f[:head], bytes.Repeat([]byte{'h'}, head)) // a header, in place
		_ = append(f, "tag"...)                         // a trailer, in place
	}
	big := make([]*kernel.Buf, 100)
	if k, _ := a.AllocBufs(big); k != 64-3 {
		t.Fatalf("AllocBufs while 3 are lent = %d, want %d", k, 64-3)
	}
	a.FreeBufs(big[:64-3])
	b.Return()
	b.Return() // a second Return is a no-op
	if k, _ := a.AllocBufs(big); k != 64 {
		t.Fatalf("AllocBufs after Return = %d, want 64", k)
	}
	a.FreeBufs(big[:64])
	// Lent across Close: Return still frees them.
	if n, err := a.WriteBatch(sdus, noTime); n != 3 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if n, err := b.Lend(frames, head, noTime); n != 3 || err != nil {
		t.Fatalf("Lend = %d, %v", n, err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		b.Return()
		if n, err := a.WriteBatch(sdus, noTime); n != 3 || err != nil {
			t.Fatal(n, err)
		}
		if n, err := b.Lend(frames, head, noTime); n != 3 || err != nil {
			t.Fatal(n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per write, lend and return, want 0", allocs)
	}
	b.Close()
	b.Return()
	if n, err := b.Lend(frames, head, time.Now().Add(10*time.Millisecond)); n != 0 || !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Lend after Close = %d, %v; want ErrClosed", n, err)
	}
	if k, _ := a.AllocBufs(big); k != 64 {
		t.Fatalf("AllocBufs after Close and Return = %d, want 64: lent buffers leaked", k)
	}
}

// TestRingPortMarks: a buffer's mark (what a delivering unicast layer
// says of the packet's congestion) reaches the reader with ReadMarked,
// whatever the batch's split; a buffer allocated after a marked one was
// freed starts unmarked.
func TestRingPortMarks(t *testing.T) {
	pd := bootPD(t, 64)
	pa, pb := ringPair(t, pd, 16)
	a, b := pa.(*irm.RingPort), pb.(*irm.RingPort)
	kb := make([]*kernel.Buf, 6)
	if n, err := a.AllocBufs(kb); n != 6 || err != nil {
		t.Fatalf("AllocBufs = %d, %v", n, err)
	}
	for i, x := range kb {
		x.Reset()
		x.Extend(10)[0] = byte(i)
		x.SetMark(uint8(i * 40))
	}
	if n, err := a.PushBufs(kb, noTime); n != 6 || err != nil {
		t.Fatalf("PushBufs = %d, %v", n, err)
	}
	bufs, sizes, marks := make([][]byte, 4), make([]int, 4), make([]uint8, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	var got []uint8
	for len(got) < 6 {
		n, err := b.ReadMarked(bufs, sizes, marks, time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if int(bufs[i][0]) != len(got) || sizes[i] != 10 {
				t.Fatalf("SDU %d: %d bytes from %d", len(got), sizes[i], bufs[i][0])
			}
			got = append(got, marks[i])
		}
	}
	if want := []uint8{0, 40, 80, 120, 160, 200}; !bytes.Equal(got, want) {
		t.Fatalf("marks %v, want %v", got, want)
	}
	// Every buffer is free again: a fresh one is unmarked.
	all := make([]*kernel.Buf, 64)
	n, _ := a.AllocBufs(all)
	for _, x := range all[:n] {
		if x.Mark() != 0 {
			t.Fatalf("a buffer just allocated has mark %d", x.Mark())
		}
	}
	a.FreeBufs(all[:n])
}
