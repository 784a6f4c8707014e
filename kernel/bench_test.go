package kernel

import (
	"context"
	"testing"
)

// rpcPair boots a client and a server whose program runs a ReplyRecv loop
// answering each Call with a reply of the request's size.
func rpcPair(tb testing.TB) (*Kernel, *PD, Cap) {
	sys := &System{
		Endpoints: []ObjectSpec{{Name: "ep"}},
		Components: []ComponentSpec{
			{Name: "client", Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Write | GrantReply}}},
			{Name: "server", Caps: []CapSpec{{Name: "ep", Object: "ep", Rights: Read}}},
		},
	}
	serve := func(pd *PD) error {
		ep, _ := pd.Slot("ep")
		m := Msg{Payload: make([]byte, 0, MaxPayload)}
		r := Msg{Payload: make([]byte, 0, MaxPayload)}
		var reply Cap
		for {
			info, err := pd.ReplyRecv(ep, reply, &r, &m)
			if err != nil {
				return nil
			}
			reply = info.Reply
			r.Label = m.Label + 1
			r.Payload = r.Payload[:len(m.Payload)]
		}
	}
	_, pds := harness(tb, sys, map[string]Program{"server": serve})
	c := pds["client"]
	return nil, c, mustSlot(tb, c, "ep")
}

// TestZeroAllocs asserts the fast paths allocate nothing: Call+ReplyRecv
// with a payload, Send/Recv, Signal/Poll, and Push/Pop with Alloc/Free.
func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a quiet run")
	}
	_, c, ep := rpcPair(t)
	payload := make([]byte, 64, MaxPayload)
	m := Msg{Payload: payload}
	call := func() {
		m.Payload = payload
		if err := c.Call(ep, &m); err != nil {
			t.Fatal(err)
		}
	}
	call()
	_, pds := harness(t, pair(AllRights), nil)
	a := pds["a"]
	ra, na := mustSlot(t, a, "r"), mustSlot(t, a, "n")
	bufs := make([]*Buf, 8)
	ring := func() {
		n, err := a.AllocBufs(bufs)
		if err != nil || n != len(bufs) {
			t.Fatalf("AllocBufs: %d, %v", n, err)
		}
		for _, x := range bufs {
			x.SetLen(100)
		}
		if n, err := a.Push(ra, bufs); n != len(bufs) || err != nil {
			t.Fatalf("Push: %d, %v", n, err)
		}
		if n, err := a.Pop(ra, bufs); n != len(bufs) || err != nil {
			t.Fatalf("Pop: %d, %v", n, err)
		}
		a.FreeBufs(bufs)
	}
	ring()
	var nb Msg
	epa := mustSlot(t, a, "ep")
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Call+ReplyRecv", call},
		{"AllocBufs+Push+Pop+FreeBufs", ring},
		{"Pop of an empty ring", func() { a.Pop(ra, bufs) }},
		{"Signal+Poll", func() { a.Signal(na); a.Poll(na) }},
		{"NBSend with no receiver", func() { a.NBSend(epa, &nb) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(200, tc.f); got != 0 {
				t.Fatalf("allocations per run: got %v, want 0", got)
			}
		})
	}
}

// BenchmarkRoundTrip compares a kernel Call+ReplyRecv round trip with
// its baseline, a request/response over two unbuffered Go channels
// between two goroutines, carrying the same payload by copy.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{0, 64, 1024} {
		b.Run("kernel/"+sizeName(size), func(b *testing.B) {
			_, c, ep := rpcPair(b)
			payload := make([]byte, size, MaxPayload)
			m := Msg{}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m.Payload = payload
				if err := c.Call(ep, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("chan/"+sizeName(size), func(b *testing.B) {
			type req struct {
				label uint64
				buf   []byte
			}
			reqc, respc := make(chan req), make(chan req)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				sbuf := make([]byte, MaxPayload)
				for {
					select {
					case r := <-reqc:
						n := copy(sbuf, r.buf)
						respc <- req{label: r.label + 1, buf: sbuf[:n]}
					case <-ctx.Done():
						return
					}
				}
			}()
			payload := make([]byte, size, MaxPayload)
			cbuf := make([]byte, MaxPayload)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				reqc <- req{label: uint64(i), buf: payload}
				r := <-respc
				copy(cbuf, r.buf)
			}
			b.StopTimer()
			cancel()
			<-done
		})
	}
}

func sizeName(n int) string {
	switch n {
	case 0:
		return "0B"
	case 64:
		return "64B"
	}
	return "1KiB"
}

// BenchmarkRing compares ring throughput (a producer goroutine pushing
// batches of 32 packet buffers with back-pressure, a consumer popping
// batches of 32; ns/op is per buffer) with two baselines: a buffered Go
// channel of *Buf of the same capacity carrying the same buffers one by
// one (what a naive port would do), and the fair one, a channel of
// batches of 32 buffers (one channel operation per 32, as the ring does).
// "kernel/batch32" uses a ring of the system description, which is its
// own account; "kernel/batch32/flow" a ring made by a third component, as
// the IRM makes a flow's rings, so that every push and pop also moves the
// batch's charge between two budgets.
func BenchmarkRing(b *testing.B) {
	const batch, size = 32, 256
	run := func(b *testing.B, prod, cons *PD, rp, rc Cap) {
		// A fixed set of buffers circulates: the consumer frees them and
		// the producer allocates them again, so the benchmark measures
		// the ring, not the allocator.
		ctx := context.Background()
		done := make(chan int)
		go func() {
			out := make([]*Buf, batch)
			got := 0
			for got < b.N {
				n, err := cons.PopWait(ctx, rc, out)
				if err != nil {
					break
				}
				cons.FreeBufs(out[:n])
				got += n
			}
			done <- got
		}()
		bufs := make([]*Buf, batch)
		b.ReportAllocs()
		b.ResetTimer()
		for sent := 0; sent < b.N; {
			want := min(batch, b.N-sent)
			n, err := prod.AllocBufs(bufs[:want])
			if err != nil {
				continue // all in flight: the consumer frees them soon
			}
			for i := 0; i < n; {
				k, err := prod.PushWait(ctx, rp, bufs[i:n])
				if err != nil {
					b.Fatal(err)
				}
				i += k
			}
			sent += n
		}
		<-done
	}
	b.Run("kernel/batch32", func(b *testing.B) {
		sys := &System{
			Rings: []RingSpec{{Name: "r", Size: size}},
			Components: []ComponentSpec{
				{Name: "prod", Budget: Budget{Bufs: 2 * size}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: Write}}},
				{Name: "cons", Budget: Budget{Bufs: 2 * size}, Caps: []CapSpec{{Name: "r", Object: "r", Rights: Read}}},
			},
		}
		_, pds := harness(b, sys, nil)
		prod, cons := pds["prod"], pds["cons"]
		run(b, prod, cons, mustSlot(b, prod, "r"), mustSlot(b, cons, "r"))
	})
	b.Run("kernel/batch32/flow", func(b *testing.B) {
		ep := []CapSpec{{Name: "ep", Object: "ep", Rights: AllRights}}
		sys := &System{
			Endpoints: []ObjectSpec{{Name: "ep"}},
			Components: []ComponentSpec{
				{Name: "irm", Budget: Budget{Bufs: size, Objects: 1}, Caps: ep},
				{Name: "prod", Budget: Budget{Bufs: 2 * size}, Caps: ep},
				{Name: "cons", Budget: Budget{Bufs: 2 * size}, Caps: ep},
			},
		}
		_, pds := harness(b, sys, nil)
		irm, prod, cons := pds["irm"], pds["prod"], pds["cons"]
		r, err := irm.NewRing(size)
		if err != nil {
			b.Fatal(err)
		}
		w, _ := irm.Mint(r, Write, 0)
		rd, _ := irm.Mint(r, Read, 0)
		run(b, prod, cons, give(b, irm, prod, w)[0], give(b, irm, cons, rd)[0])
	})
	b.Run("chan/buffered", func(b *testing.B) {
		ch := make(chan *Buf, size)
		free := make(chan *Buf, 2*size)
		for range 2 * size {
			free <- NewBuf(0)
		}
		done := make(chan struct{})
		go func() {
			for i := 0; i < b.N; i++ {
				free <- <-ch
			}
			close(done)
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ch <- <-free
		}
		<-done
	})
	b.Run("chan/batch32", func(b *testing.B) {
		ch := make(chan []*Buf, size/batch)
		free := make(chan []*Buf, 2*size/batch)
		for range 2 * size / batch {
			bs := make([]*Buf, batch)
			for i := range bs {
				bs[i] = NewBuf(0)
			}
			free <- bs
		}
		done := make(chan struct{})
		go func() {
			for i := 0; i < b.N; i += batch {
				free <- <-ch
			}
			close(done)
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			ch <- <-free
		}
		<-done
	})
}
