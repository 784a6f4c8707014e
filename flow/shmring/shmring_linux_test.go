//go:build linux

package shmring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns the node's and the program's End of one flow, each with
// its own mapping of the memfd and its own eventfd descriptors, as two
// processes have them after the handover.
func pair(t testing.TB, g Geometry) (node, prog *End) {
	t.Helper()
	node, prog, err := Pair(g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Release(); prog.Release() })
	return node, prog
}

var geo = Geometry{Slots: 8, MaxSDU: 1400}

func TestRoundTrip(t *testing.T) {
	node, prog := pair(t, geo)
	buf := make([]byte, 2000)
	dl := func() time.Time { return time.Now().Add(2 * time.Second) }
	for _, size := range []int{1, 64, 1400} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if err := prog.Send(msg, dl()); err != nil {
			t.Fatal(err)
		}
		n, err := node.Recv(buf, dl())
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("node read %d bytes: %d, %v", size, n, err)
		}
		if err := node.Send(msg, dl()); err != nil {
			t.Fatal(err)
		}
		n, err = prog.Recv(buf, dl())
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("program read %d bytes: %d, %v", size, n, err)
		}
	}
	if err := prog.Send(make([]byte, 1401), dl()); !errors.Is(err, ErrTooBig) {
		t.Fatalf("1401 bytes: %v, want ErrTooBig", err)
	}
	// Truncation: the SDU is consumed, cut to the buffer.
	prog.Send([]byte("hello"), dl())
	prog.Send([]byte("next"), dl())
	small := make([]byte, 3)
	if n, err := node.Recv(small, dl()); n != 3 || !errors.Is(err, ErrTruncated) || string(small) != "hel" {
		t.Fatalf("truncated read: %d %q %v", n, small, err)
	}
	if n, err := node.Recv(buf, dl()); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("after truncation: %q %v", buf[:n], err)
	}
	// Batches, in order, more than the ring holds (the writer waits for
	// the reader).
	var sdus [][]byte
	for i := range 50 {
		sdus = append(sdus, []byte{byte(i), byte(i)})
	}
	done := make(chan error, 1)
	go func() {
		n, err := prog.SendBatch(sdus, dl())
		if n != len(sdus) && err == nil {
			err = errors.New("short batch")
		}
		done <- err
	}()
	bufs := make([][]byte, 5)
	for i := range bufs {
		bufs[i] = make([]byte, 100)
	}
	sizes := make([]int, 5)
	for got := 0; got < len(sdus); {
		n, err := node.RecvBatch(bufs, sizes, dl())
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if sizes[i] != 2 || bufs[i][0] != byte(got) {
				t.Fatalf("SDU %d: %v", got, bufs[i][:sizes[i]])
			}
			got++
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := node.Stats(); s != (Stats{}) {
		t.Fatalf("stats after honest traffic: %+v", s)
	}
}

// TestWakeups runs a ping-pong where every wait must sleep (no spinning)
// and one where the reader may spin, and a full ring whose writer waits
// for space: a lost wake-up hangs the test.
// echo sends back on e what it receives, until either fails; the channel
// is closed when it stops.
func echo(e *End) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			n, err := e.Recv(buf, time.Time{})
			if err != nil {
				return
			}
			if err := e.Send(buf[:n], time.Time{}); err != nil {
				return
			}
		}
	}()
	return done
}

func TestWakeups(t *testing.T) {
	for _, spin := range []time.Duration{0, 50 * time.Microsecond} {
		old, oldNode := MaxSpin, NodeMaxSpin
		MaxSpin, NodeMaxSpin = spin, spin
		node, prog := pair(t, Geometry{Slots: 2, MaxSDU: 64})
		done := echo(node)
		buf := make([]byte, 64)
		for i := range 2000 {
			msg := binary.LittleEndian.AppendUint32(nil, uint32(i))
			if err := prog.Send(msg, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
			n, err := prog.Recv(buf, time.Now().Add(5*time.Second))
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("spin %v, round %d: %x, %v", spin, i, buf[:n], err)
			}
		}
		// A flood through a ring of 2: the writer waits for space.
		var got int
		var rd sync.WaitGroup
		rd.Add(1)
		go func() {
			defer rd.Done()
			b := make([]byte, 64)
			for got < 5000 {
				if _, err := prog.Recv(b, time.Now().Add(5*time.Second)); err != nil {
					t.Error(err)
					return
				}
				got++
			}
		}()
		for i := 0; i < 5000; i++ {
			if err := prog.Send([]byte{1}, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		rd.Wait()
		prog.Shutdown()
		<-done
		MaxSpin, NodeMaxSpin = old, oldNode
		if got != 5000 {
			t.Fatalf("echoed %d of 5000", got)
		}
	}
}

func TestDeadlines(t *testing.T) {
	node, prog := pair(t, Geometry{Slots: 1, MaxSDU: 64})
	start := time.Now()
	if _, err := node.Recv(make([]byte, 64), time.Now().Add(20*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("read of an empty ring: %v", err)
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Fatal("returned before the deadline")
	}
	if err := prog.Send([]byte{1}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := prog.Send([]byte{2}, time.Now().Add(20*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("write into a full ring: %v", err)
	}
	// The deadline set by a timed wait does not stick to the next one.
	if n, err := node.Recv(make([]byte, 64), time.Time{}); n != 1 || err != nil {
		t.Fatal(n, err)
	}
}

// TestClose: what was sent before a close is read, then ErrClosed; the
// same when the other side is gone without a word (PeerGone); and
// Release wakes a blocked reader.
func TestClose(t *testing.T) {
	node, prog := pair(t, geo)
	prog.Send([]byte("a"), time.Time{})
	prog.Send([]byte("b"), time.Time{})
	prog.Shutdown()
	buf := make([]byte, 10)
	for _, want := range []string{"a", "b"} {
		if n, err := node.Recv(buf, time.Time{}); err != nil || string(buf[:n]) != want {
			t.Fatalf("read after close: %q %v", buf[:n], err)
		}
	}
	if _, err := node.Recv(buf, time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after drain: %v", err)
	}
	if err := node.Send([]byte("x"), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write to a closed consumer: %v", err)
	}
	if err := prog.Send([]byte("x"), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after own close: %v", err)
	}

	node2, prog2 := pair(t, geo)
	prog2.Send([]byte("c"), time.Time{})
	node2.PeerGone()
	if n, err := node2.Recv(buf, time.Time{}); err != nil || string(buf[:n]) != "c" {
		t.Fatalf("read after peer gone: %q %v", buf[:n], err)
	}
	if _, err := node2.Recv(buf, time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after peer gone, drained: %v", err)
	}

	node3, _ := pair(t, geo)
	errc := make(chan error, 1)
	go func() { _, err := node3.Recv(buf, time.Time{}); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	node3.Release()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked read at release: %v", err)
	}
}

// TestSealed: the program cannot resize the memfd it was handed (a
// shrunk file would fault the node's accesses), and Open refuses an
// unsealed one.
func TestSealed(t *testing.T) {
	m, err := Create(geo)
	if err != nil {
		t.Fatal(err)
	}
	defer m.unmap()
	if err := unix.Ftruncate(m.FD(), 0); !errors.Is(err, unix.EPERM) {
		t.Fatalf("shrinking the memfd: %v, want EPERM", err)
	}
	if err := unix.Ftruncate(m.FD(), int64(geo.Size())*2); !errors.Is(err, unix.EPERM) {
		t.Fatalf("growing the memfd: %v, want EPERM", err)
	}
	fd, err := unix.MemfdCreate("plain", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	unix.Ftruncate(fd, int64(geo.Size()))
	if _, err := Open(fd); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unsealed memfd: %v, want ErrInvalid", err)
	}
}

// hostileRound lets a hostile program write data over its whole mapping
// (headers, indexes, lengths, slots), then drives the node's End both
// ways. The node must not panic, must return sizes within its buffers and
// must leave the other flow's mapping alone.
func hostileRound(t testing.TB, node *End, progMem []byte, data []byte, other []byte, otherCopy []byte) {
	if len(data) == 0 {
		data = []byte{0}
	}
	for i := range progMem {
		progMem[i] = data[i%len(data)]
	}
	bufs := [][]byte{make([]byte, 1400), make([]byte, 7), make([]byte, 1400)}
	sizes := make([]int, 3)
	dl := time.Now().Add(time.Millisecond)
	for range 4 {
		n, err := node.RecvBatch(bufs, sizes, dl)
		for i := range n {
			if sizes[i] < 0 || sizes[i] > len(bufs[i]) {
				t.Fatalf("size %d of a %d-byte buffer", sizes[i], len(bufs[i]))
			}
		}
		if err != nil && !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCorrupt) &&
			!errors.Is(err, ErrClosed) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("recv: unexpected %v", err)
		}
		if _, err := node.SendBatch([][]byte{[]byte("x"), bytes.Repeat([]byte{7}, 1400)}, dl); err != nil &&
			!errors.Is(err, ErrTimeout) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrClosed) {
			t.Fatalf("send: unexpected %v", err)
		}
	}
	if !bytes.Equal(other, otherCopy) {
		t.Fatal("the other flow's mapping changed")
	}
}

// TestHostileProgram scribbles random headers, indexes and lengths into
// a program's mapping, round after round: the node's side only ever
// counts drops or breaks the flow, and another flow's memory is left as
// it was. Without the index and length checks in take, the node reads
// past the ring (a panic on the slice bounds, or another flow's memory).
func TestHostileProgram(t *testing.T) {
	_, otherProg := pair(t, geo)
	otherProg.Send([]byte("mine"), time.Time{})
	other := otherProg.m.Bytes()
	otherCopy := bytes.Clone(other)
	r := rand.New(rand.NewPCG(1, 2))
	var drops, corrupt uint64
	for round := range 300 {
		node, prog := pair(t, geo)
		data := make([]byte, 1+r.IntN(64))
		for i := range data {
			data[i] = byte(r.Uint32())
			if r.IntN(4) == 0 {
				data[i] = 0 // small indexes and lengths, not just huge ones
			}
		}
		hostileRound(t, node, prog.m.Bytes(), data, other, otherCopy)
		// Targeted: honest header, a plausible head, bad lengths.
		mem := prog.m.Bytes()
		clear(mem[ringHdrOff : ringHdrOff+ringHdrSize])
		node.rtail = 0
		node.broken.Store(false)
		binary.LittleEndian.PutUint64(mem[ringHdrOff:], uint64(1+round%8))
		for s := range 8 {
			binary.LittleEndian.PutUint32(mem[headerSize+s*geo.slotSize():], []uint32{0, 1401, 0xffffffff, 5}[s%4])
		}
		buf := make([]byte, 1400)
		for {
			n, err := node.Recv(buf, time.Now().Add(time.Millisecond))
			if err != nil {
				break
			}
			if n != 5 {
				t.Fatalf("read %d bytes from a slot of length 5", n)
			}
		}
		s := node.Stats()
		drops += s.Drops
		corrupt += s.Corrupt
		node.Release()
		prog.Release()
	}
	if drops == 0 || corrupt == 0 {
		t.Fatalf("drops %d, corrupt %d: the hostile rounds hit neither check", drops, corrupt)
	}
	t.Logf("%d drops, %d corrupt indexes counted", drops, corrupt)
	if _, err := otherProg.Recv(make([]byte, 10), time.Now().Add(time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("the other flow: %v", err)
	}
}

// FuzzHostileRing: whatever bytes a program writes over its mapping, the
// node's End neither panics nor reads or writes outside it.
func FuzzHostileRing(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0x79, 0x05, 0, 0})
	_, otherProg := pair(f, geo)
	other := otherProg.m.Bytes()
	otherCopy := bytes.Clone(other)
	f.Fuzz(func(t *testing.T, data []byte) {
		node, prog := pair(t, geo)
		hostileRound(t, node, prog.m.Bytes(), data, other, otherCopy)
	})
}

// TestWakeupsNotLost plays many short ping-pongs, each through a new pair
// of ends: every round trip is two sleeps and two wake-ups (a reader that
// announced it sleeps, a writer that publishes and looks at the
// announcement), so a wake-up the ordering loses shows as a Recv that
// times out with the SDU in the ring. Under the race detector, whose
// atomic stores are release stores and its loads acquire loads, a
// Store-then-Load on each side lost one in about every 20,000 to 60,000
// round trips (TestWakeups failed 3 of 4 batches of 100 runs); the
// announcement and the publication are swaps now, as on every build.
func TestWakeupsNotLost(t *testing.T) {
	old, oldNode := MaxSpin, NodeMaxSpin
	MaxSpin, NodeMaxSpin = 50*time.Microsecond, 50*time.Microsecond
	defer func() { MaxSpin, NodeMaxSpin = old, oldNode }()
	const pairs, rounds = 100, 3000
	for p := range pairs {
		node, prog := pair(t, Geometry{Slots: 2, MaxSDU: 64})
		done := echo(node)
		buf := make([]byte, 64)
		for i := range rounds {
			msg := binary.LittleEndian.AppendUint32(nil, uint32(i))
			if err := prog.Send(msg, time.Now().Add(5*time.Second)); err != nil {
				t.Fatalf("pair %d, round %d: send: %v", p, i, err)
			}
			n, err := prog.Recv(buf, time.Now().Add(2*time.Second))
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("pair %d, round %d: %x, %v (a wake-up lost)", p, i, buf[:n], err)
			}
		}
		prog.Shutdown()
		<-done
		node.Release()
		prog.Release()
	}
}

// TestEndsDoNotSpin: by default (no $OURO_SHM_SPIN, $OURO_SHM_NODE_SPIN)
// neither end learns a spin from short waits; with a bound set (a second,
// so that every wait is short) the end it is set for does.
func TestEndsDoNotSpin(t *testing.T) {
	old, oldNode := MaxSpin, NodeMaxSpin
	defer func() { MaxSpin, NodeMaxSpin = old, oldNode }()
	t.Setenv("OURO_SHM_SPIN", "")
	t.Setenv("OURO_SHM_NODE_SPIN", "")
	defProg, defNode := spinFromEnv("OURO_SHM_SPIN", 0), spinFromEnv("OURO_SHM_NODE_SPIN", 0)
	for _, c := range []struct {
		name               string
		prog, node         time.Duration // the bounds
		progSpin, nodeSpin bool          // whether each end should spin after short waits
	}{
		{"defaults", defProg, defNode, false, false},
		{"program's bound", time.Second, defNode, true, false},
		{"node's bound", defProg, time.Second, false, true},
	} {
		MaxSpin, NodeMaxSpin = c.prog, c.node
		node, prog := pair(t, Geometry{Slots: 2, MaxSDU: 64})
		buf := make([]byte, 64)
		for _, e := range []struct {
			name     string
			from, to *End
			spin     *time.Duration
			want     bool
		}{
			{"node", prog, node, &node.rspin, c.nodeSpin},
			{"program", node, prog, &prog.rspin, c.progSpin},
		} {
			// Twenty short waits: the writer sends as soon as the
			// reader has announced its sleep.
			spun := false
			for range 20 {
				go func() {
					for e.to.rx.rwait.Load() == 0 {
						runtime.Gosched()
					}
					if err := e.from.Send([]byte{1}, time.Now().Add(time.Second)); err != nil {
						t.Error(err)
					}
				}()
				if _, err := e.to.Recv(buf, time.Now().Add(5*time.Second)); err != nil {
					t.Fatalf("%s, %s: %v", c.name, e.name, err)
				}
				e.to.rmu.Lock()
				spun = spun || *e.spin > 0
				e.to.rmu.Unlock()
			}
			if spun != e.want {
				t.Errorf("%s: the %s's end spun after short waits: %v, want %v", c.name, e.name, spun, e.want)
			}
		}
		node.Release()
		prog.Release()
	}
}

// TestReady: Ready counts the SDUs waiting without taking them, waits for
// the first, honours its deadline and reports the end of the flow.
func TestReady(t *testing.T) {
	node, prog := pair(t, Geometry{Slots: 4, MaxSDU: 64})
	defer node.Release()
	defer prog.Release()
	if n, err := node.Ready(time.Now().Add(10 * time.Millisecond)); n != 0 || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Ready on an empty ring = %d, %v; want 0, ErrTimeout", n, err)
	}
	for _, m := range []string{"a", "bb", "ccc"} {
		if err := prog.Send([]byte(m), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // counting takes nothing
		if n, err := node.Ready(time.Time{}); n != 3 || err != nil {
			t.Fatalf("Ready = %d, %v; want 3", n, err)
		}
	}
	bufs, sizes := [][]byte{make([]byte, 64), make([]byte, 64), make([]byte, 64), make([]byte, 64)}, make([]int, 4)
	if n, err := node.RecvBatch(bufs, sizes, time.Time{}); n != 3 || err != nil || string(bufs[2][:sizes[2]]) != "ccc" {
		t.Fatalf("RecvBatch after Ready = %d, %v", n, err)
	}
	got := make(chan int)
	go func() {
		n, _ := node.Ready(time.Now().Add(5 * time.Second))
		got <- n
	}()
	time.Sleep(10 * time.Millisecond)
	if err := prog.Send([]byte("d"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 1 {
		t.Fatalf("Ready woken by a send = %d, want 1", n)
	}
	prog.Shutdown()
	if n, err := node.Ready(time.Time{}); n != 1 || err != nil {
		t.Fatalf("Ready after the peer closed, one SDU left = %d, %v", n, err)
	}
	if n, _ := node.RecvBatch(bufs, sizes, time.Time{}); n != 1 {
		t.Fatal("the last SDU was not taken")
	}
	if n, err := node.Ready(time.Time{}); n != 0 || !errors.Is(err, ErrClosed) {
		t.Fatalf("Ready after the peer closed, drained = %d, %v; want ErrClosed", n, err)
	}
}

// TestRoom: Room counts the free slots without filling any, waits for
// one, honours its deadline, reports the end of the flow and refuses an
// impossible consumer index.
func TestRoom(t *testing.T) {
	node, prog := pair(t, Geometry{Slots: 4, MaxSDU: 64})
	defer node.Release()
	defer prog.Release()
	if n, err := node.Room(time.Time{}); n != 4 || err != nil {
		t.Fatalf("Room of an empty ring = %d, %v; want 4", n, err)
	}
	for range 4 {
		if err := node.Send([]byte("x"), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := node.Room(time.Now().Add(10 * time.Millisecond)); n != 0 || !errors.Is(err, ErrTimeout) {
		t.Fatalf("Room of a full ring = %d, %v; want 0, ErrTimeout", n, err)
	}
	got := make(chan int)
	go func() {
		n, _ := node.Room(time.Now().Add(5 * time.Second))
		got <- n
	}()
	time.Sleep(10 * time.Millisecond)
	// A sleeping writer is woken once half the ring is free (one that
	// still spins sees the first free slot).
	for range 2 {
		if _, err := prog.Recv(make([]byte, 64), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := <-got; n < 1 || n > 2 {
		t.Fatalf("Room woken by receives = %d, want 1 or 2", n)
	}
	// The program moves its consumer index past the producer's.
	tail := prog.rx.tail
	tail.Store(tail.Load() + 100)
	if n, err := node.Room(time.Time{}); n != 0 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Room with an impossible consumer index = %d, %v; want ErrCorrupt", n, err)
	}
	if c := node.Stats().Corrupt; c != 1 {
		t.Fatalf("corrupt = %d, want 1", c)
	}
	node2, prog2 := pair(t, Geometry{Slots: 4, MaxSDU: 64})
	defer node2.Release()
	defer prog2.Release()
	prog2.Shutdown()
	if n, err := node2.Room(time.Time{}); n != 0 || !errors.Is(err, ErrClosed) {
		t.Fatalf("Room after the program closed = %d, %v; want ErrClosed", n, err)
	}
}

// TestInterruptRecv: InterruptRecv ends a Recv waiting in an empty ring
// with ErrInterrupted (and the next Recv, when none waits), once; an SDU
// that is there is received instead.
func TestInterruptRecv(t *testing.T) {
	node, prog := pair(t, Geometry{Slots: 8, MaxSDU: 64})
	buf := make([]byte, 64)
	done := make(chan error, 1)
	go func() { _, err := prog.Recv(buf, time.Time{}); done <- err }()
	time.Sleep(20 * time.Millisecond)
	prog.InterruptRecv()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("interrupted Recv = %v, want ErrInterrupted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("InterruptRecv did not wake the Recv")
	}
	// None waits: the next Recv is interrupted, once.
	prog.InterruptRecv()
	if _, err := prog.Recv(buf, time.Now().Add(time.Second)); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Recv after an InterruptRecv = %v, want ErrInterrupted", err)
	}
	if _, err := prog.Recv(buf, time.Now().Add(20*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("the Recv after that = %v, want ErrTimeout", err)
	}
	// An SDU in the ring comes first.
	if err := node.Send([]byte("x"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	prog.InterruptRecv()
	if n, err := prog.Recv(buf, time.Time{}); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("Recv of a waiting SDU after InterruptRecv = %q, %v", buf[:n], err)
	}
}

// TestMarks: the node's side gives each SDU a mark (SendMarked) that the
// program's RecvMarked reads back, in order, across batches; SendBatch's
// SDUs read as unmarked (a slot once marked is not left marked), and a
// reader that does not ask for marks gets the same SDUs.
func TestMarks(t *testing.T) {
	node, prog := pair(t, geo)
	sdus := [][]byte{[]byte("a"), []byte("bb"), []byte("ccc")}
	dl := time.Now().Add(time.Second)
	for round, marks := range [][]uint8{{7, 0, 255}, {9, 9, 9}, nil} { // the third reuses slot 0
		var n int
		var err error
		if marks != nil {
			n, err = node.SendMarked(sdus, marks, dl)
		} else {
			n, err = node.SendBatch(sdus, dl)
		}
		if n != 3 || err != nil {
			t.Fatalf("round %d: sent %d, %v", round, n, err)
		}
		bufs, sizes, got := [][]byte{make([]byte, 8), make([]byte, 8)}, make([]int, 2), make([]uint8, 2)
		var all []uint8
		for len(all) < 3 {
			k, err := prog.RecvMarked(bufs, sizes, got, dl)
			if err != nil {
				t.Fatal(err)
			}
			for i := range k {
				if want := sdus[len(all)]; string(bufs[i][:sizes[i]]) != string(want) {
					t.Fatalf("round %d: SDU %q, want %q", round, bufs[i][:sizes[i]], want)
				}
				all = append(all, got[i])
			}
		}
		want := marks
		if want == nil {
			want = []uint8{0, 0, 0}
		}
		if string(all) != string(want) {
			t.Fatalf("round %d: marks %v, want %v", round, all, want)
		}
	}
}

// TestInPlace: a program's end writes SDUs straight into the ring's slots
// (SendWith) and reads them where they lie (RecvWith), round after round
// past the ring's wrap, the node's end reading and writing as usual;
// lengths out of range are refused; the node's end may not read in place
// (it must copy what a program wrote); a slot whose length the other
// side wrote impossible is skipped and counted, the next SDU read.
func TestInPlace(t *testing.T) {
	node, prog := pair(t, Geometry{Slots: 4, MaxSDU: 64})
	deadline := func() time.Time { return time.Now().Add(2 * time.Second) }
	buf := make([]byte, 64)
	for i := range 50 { // 50 rounds over 4 slots
		want := bytes.Repeat([]byte{byte(i)}, 1+i%64)
		if err := prog.SendWith(len(want), func(sdu []byte) {
			if len(sdu) != len(want) {
				t.Fatalf("fill got %d bytes, want %d", len(sdu), len(want))
			}
			copy(sdu, want)
		}, deadline()); err != nil {
			t.Fatalf("round %d: SendWith: %v", i, err)
		}
		n, err := node.Recv(buf, deadline())
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("round %d: the node read %q, %v; want %q", i, buf[:n], err, want)
		}
		if err := node.Send(want, deadline()); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := prog.RecvWith(func(sdu []byte) { got = append(got, sdu...) }, deadline()); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d: RecvWith got %q, %v; want %q", i, got, err, want)
		}
	}
	for _, n := range []int{0, -1, 65} {
		if err := prog.SendWith(n, func([]byte) { t.Fatal("fill called") }, deadline()); !errors.Is(err, ErrTooBig) {
			t.Errorf("SendWith(%d): %v, want ErrTooBig", n, err)
		}
	}
	if err := node.RecvWith(func([]byte) {}, deadline()); !errors.Is(err, ErrInvalid) {
		t.Errorf("RecvWith on the node's end: %v, want ErrInvalid", err)
	}
	if err := prog.RecvWith(func([]byte) { t.Fatal("use called") }, time.Now().Add(20*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Errorf("RecvWith on an empty ring: %v, want ErrTimeout", err)
	}
	// The node's side writes one slot with an impossible length, then a
	// good SDU: the program skips the first (counted) and reads the second.
	node.wmu.Lock()
	off := int(node.whead&node.mask) * node.ss
	binary.LittleEndian.PutUint32(node.tx.slots[off:], 65)
	node.whead++
	node.publish()
	node.wmu.Unlock()
	if err := node.Send([]byte("after"), deadline()); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := prog.RecvWith(func(sdu []byte) { got = append(got, sdu...) }, deadline()); err != nil || string(got) != "after" {
		t.Fatalf("after an impossible length: got %q, %v; want \"after\"", got, err)
	}
	if d := prog.Stats().Drops; d != 1 {
		t.Errorf("drops %d, want 1 (the impossible length)", d)
	}
	prog.Shutdown()
	if err := prog.SendWith(1, func([]byte) { t.Fatal("fill called") }, deadline()); !errors.Is(err, ErrClosed) {
		t.Errorf("SendWith after Shutdown: %v, want ErrClosed", err)
	}
}

// TestRenew: rings detached by both sides carry the next flow once
// renewed, both ways, from empty rings: whatever the flow before left in
// them (an SDU not read, closed flags, a pending wake-up) is gone, and
// the ends detached stay closed.
func TestRenew(t *testing.T) {
	node, prog := pair(t, geo)
	buf := make([]byte, 1400)
	prog.Send([]byte("left in the ring"), time.Time{})
	node.Send([]byte("left too"), time.Time{})
	prog.Shutdown()
	kp, kn := prog.Detach(), node.Detach()
	if kp == nil || kn == nil {
		t.Fatal("Detach of a live end returned nil")
	}
	if prog.Detach() != nil {
		t.Fatal("a second Detach returned the rings again")
	}
	if _, err := node.Recv(buf, time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("read on a detached end: %v", err)
	}
	if err := prog.Send([]byte("x"), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("write on a detached end: %v", err)
	}
	node2 := kn.Renew() // the node first: it empties the rings
	prog2 := kp.Renew()
	t.Cleanup(func() { node2.Release(); prog2.Release() })
	if _, err := node2.Recv(buf, time.Now().Add(5*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("the renewed node's ring is not empty: %v", err)
	}
	if _, err := prog2.Recv(buf, time.Now().Add(5*time.Millisecond)); !errors.Is(err, ErrTimeout) {
		t.Fatalf("the renewed program's ring is not empty: %v", err)
	}
	for i := range 3 * geo.Slots { // round the rings, waking each other
		msg := []byte{byte(i), 'p'}
		done := make(chan error, 1)
		go func() {
			n, err := node2.Recv(buf, time.Now().Add(time.Second))
			if err == nil && !bytes.Equal(buf[:n], msg) {
				err = errors.New("wrong SDU")
			}
			done <- err
		}()
		if err := prog2.Send(msg, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("program → node, SDU %d: %v", i, err)
		}
		if err := node2.Send([]byte{byte(i), 'n'}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if n, err := prog2.Recv(buf, time.Now().Add(time.Second)); err != nil || !bytes.Equal(buf[:n], []byte{byte(i), 'n'}) {
			t.Fatalf("node → program, SDU %d: %q %v", i, buf[:n], err)
		}
	}
	// The old ends' Release must not free what the new ones use.
	node.Release()
	prog.Release()
	if err := prog2.Send([]byte("still"), time.Time{}); err != nil {
		t.Fatalf("after the old ends' Release: %v", err)
	}
	if n, err := node2.Recv(buf, time.Now().Add(time.Second)); err != nil || string(buf[:n]) != "still" {
		t.Fatalf("after the old ends' Release: %q %v", buf[:n], err)
	}
}
