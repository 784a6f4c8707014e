package flowtest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
)

// TestPort runs the flow.Port conformance suite against the pairs newPair
// returns: two connected ends, fresh for every subtest. The suite expects
// what local ports (kernel rings, sockets, pipes) give: no loss, no
// reordering, and a bounded capacity of 1 to 1<<16 SDUs per direction.
// TestPort closes both ends at the end of each subtest.
//
// It checks every line of the flow.Port contract: SDU boundaries, copies on
// Write, ErrTooBig, ErrTruncated, deadlines (ErrTimeout), back-pressure,
// Close (drain then ErrClosed on the other end, ErrClosed on this end,
// blocked calls released, idempotence) and concurrent use.
func TestPort(t *testing.T, newPair func() (flow.Port, flow.Port)) {
	t.Helper()
	for _, tc := range portTests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newPair()
			t.Cleanup(func() { a.Close(); b.Close() })
			tc.run(t, a, b)
		})
	}
}

// slack bounds how long a call may take beyond what it was asked to wait;
// generous because CI runs on two shared cores under the race detector.
const slack = 2 * time.Second

var portTests = []struct {
	name string
	run  func(t *testing.T, a, b flow.Port)
}{
	{"RoundTrip", testRoundTrip},
	{"BothDirections", testBothDirections},
	{"WriteCopies", testWriteCopies},
	{"TooBig", testTooBig},
	{"Truncated", testTruncated},
	{"ReadDeadline", testReadDeadline},
	{"ReadDeadlinePassed", testReadDeadlinePassed},
	{"BackPressure", testBackPressure},
	{"BlockedWriteResumes", testBlockedWriteResumes},
	{"CloseDrains", testCloseDrains},
	{"WriteAfterClose", testWriteAfterClose},
	{"ReadAfterClose", testReadAfterClose},
	{"CloseIdempotent", testCloseIdempotent},
	{"CloseReleasesRead", testCloseReleasesRead},
	{"PeerCloseReleasesRead", testPeerCloseReleasesRead},
	{"CloseReleasesWrite", testCloseReleasesWrite},
	{"Concurrent", testConcurrent},
}

// sdu returns an SDU of n bytes whose content depends on seq.
func sdu(seq, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seq*7 + i)
	}
	return p
}

func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

func mustWrite(t *testing.T, p flow.Port, b []byte) {
	t.Helper()
	if err := p.Write(b, deadline(slack)); err != nil {
		t.Fatalf("Write(%d bytes): %v", len(b), err)
	}
}

func mustRead(t *testing.T, p flow.Port, want []byte) {
	t.Helper()
	buf := make([]byte, flow.MaxSDU+1)
	n, err := p.Read(buf, deadline(slack))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("Read got %d bytes %x..., want %d bytes %x...", n, head(buf[:n]), len(want), head(want))
	}
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

// eventually runs f in a goroutine and returns its result channel.
func eventually(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func waitErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(slack):
		t.Fatalf("%s: still blocked after %v", what, slack)
		return nil
	}
}

// writeAll writes sdus to p in a goroutine (the port may hold fewer than
// len(sdus)), then runs after, if not nil, and reports on the channel.
func writeAll(p flow.Port, sdus [][]byte, after func() error) <-chan error {
	return eventually(func() error {
		for i, b := range sdus {
			if err := p.Write(b, deadline(slack)); err != nil {
				return fmt.Errorf("Write #%d (%d bytes): %w", i, len(b), err)
			}
		}
		if after != nil {
			return after()
		}
		return nil
	})
}

func testRoundTrip(t *testing.T, a, b flow.Port) {
	sizes := []int{1, 2, 64, 100, 1000, flow.MaxSDU - 1, flow.MaxSDU}
	var sdus [][]byte
	for i, n := range sizes {
		sdus = append(sdus, sdu(i, n))
	}
	done := writeAll(a, sdus, nil)
	for _, want := range sdus {
		mustRead(t, b, want)
	}
	if err := waitErr(t, done, "writer"); err != nil {
		t.Fatal(err)
	}
}

func testBothDirections(t *testing.T, a, b flow.Port) {
	mustWrite(t, a, []byte("ping"))
	mustWrite(t, b, []byte("pong"))
	mustRead(t, b, []byte("ping"))
	mustRead(t, a, []byte("pong"))
}

func testWriteCopies(t *testing.T, a, b flow.Port) {
	p := []byte("original")
	mustWrite(t, a, p)
	copy(p, "CHANGED!")
	mustRead(t, b, []byte("original"))
}

func testTooBig(t *testing.T, a, b flow.Port) {
	err := a.Write(make([]byte, flow.MaxSDU+1), deadline(slack))
	if !errors.Is(err, flow.ErrTooBig) {
		t.Fatalf("Write(MaxSDU+1) = %v, want ErrTooBig", err)
	}
	// The port is still usable.
	mustWrite(t, a, []byte("after"))
	mustRead(t, b, []byte("after"))
}

func testTruncated(t *testing.T, a, b flow.Port) {
	done := writeAll(a, [][]byte{sdu(1, 100), []byte("next")}, nil)
	buf := make([]byte, 10)
	n, err := b.Read(buf, deadline(slack))
	if !errors.Is(err, flow.ErrTruncated) || n != len(buf) {
		t.Fatalf("Read(10-byte buffer) of a 100-byte SDU = %d, %v; want 10, ErrTruncated", n, err)
	}
	if !bytes.Equal(buf, sdu(1, 100)[:10]) {
		t.Fatalf("truncated Read got %x, want %x", buf, sdu(1, 100)[:10])
	}
	// The truncated SDU is consumed; the next one is whole.
	mustRead(t, b, []byte("next"))
	if err := waitErr(t, done, "writer"); err != nil {
		t.Fatal(err)
	}
}

func testReadDeadline(t *testing.T, a, b flow.Port) {
	const wait = 50 * time.Millisecond
	start := time.Now()
	n, err := b.Read(make([]byte, 16), deadline(wait))
	el := time.Since(start)
	if !errors.Is(err, flow.ErrTimeout) || n != 0 {
		t.Fatalf("Read with no data = %d, %v; want 0, ErrTimeout", n, err)
	}
	if el < wait-5*time.Millisecond || el > wait+slack {
		t.Fatalf("Read timed out after %v, want about %v", el, wait)
	}
	// The port is still usable after a timeout.
	mustWrite(t, a, []byte("late"))
	mustRead(t, b, []byte("late"))
}

func testReadDeadlinePassed(t *testing.T, a, b flow.Port) {
	done := eventually(func() error {
		_, err := b.Read(make([]byte, 16), time.Now().Add(-time.Second))
		return err
	})
	if err := waitErr(t, done, "Read with a passed deadline"); !errors.Is(err, flow.ErrTimeout) {
		t.Fatalf("Read with a passed deadline = %v, want ErrTimeout", err)
	}
}

// fill writes SDUs to p until a Write times out and returns how many it wrote.
func fill(t *testing.T, p flow.Port) int {
	t.Helper()
	const limit = 1 << 16
	for i := 0; i < limit; i++ {
		err := p.Write(sdu(i, 64), deadline(50*time.Millisecond))
		if err == nil {
			continue
		}
		if !errors.Is(err, flow.ErrTimeout) {
			t.Fatalf("Write #%d on a full port = %v, want ErrTimeout", i, err)
		}
		return i
	}
	t.Fatalf("%d Writes without a reader never blocked: the port is not bounded", limit)
	return 0
}

func testBackPressure(t *testing.T, a, b flow.Port) {
	n := fill(t, a)
	if n == 0 {
		t.Fatalf("the first Write already blocked: no capacity")
	}
	// Everything accepted before the port filled up arrives, in order.
	for i := 0; i < n; i++ {
		mustRead(t, b, sdu(i, 64))
	}
	mustWrite(t, a, []byte("room again"))
	mustRead(t, b, []byte("room again"))
}

func testBlockedWriteResumes(t *testing.T, a, b flow.Port) {
	n := fill(t, a)
	done := eventually(func() error { return a.Write([]byte("blocked"), time.Time{}) })
	// Read until the blocked Write completes: a socket may need a few
	// SDUs read before it takes another.
	for i := 0; i < n; i++ {
		mustRead(t, b, sdu(i, 64))
	}
	if err := waitErr(t, done, "Write after the reader made room"); err != nil {
		t.Fatalf("blocked Write = %v, want nil once the reader made room", err)
	}
	mustRead(t, b, []byte("blocked"))
}

func testCloseDrains(t *testing.T, a, b flow.Port) {
	const n = 5
	var sdus [][]byte
	for i := 0; i < n; i++ {
		sdus = append(sdus, sdu(i, 200))
	}
	// The writer closes as soon as its last Write returned, possibly
	// before the reader took everything.
	done := writeAll(a, sdus, a.Close)
	for _, want := range sdus {
		mustRead(t, b, want)
	}
	if err := waitErr(t, done, "writer"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, err := b.Read(make([]byte, 16), deadline(slack))
		if !errors.Is(err, flow.ErrClosed) {
			t.Fatalf("Read #%d after the peer closed and the port drained = %v, want ErrClosed", i, err)
		}
	}
}

func testWriteAfterClose(t *testing.T, a, b flow.Port) {
	a.Close()
	if err := a.Write([]byte("x"), deadline(slack)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}

func testReadAfterClose(t *testing.T, a, b flow.Port) {
	a.Close()
	if _, err := a.Read(make([]byte, 16), deadline(slack)); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Read after Close = %v, want ErrClosed", err)
	}
}

func testCloseIdempotent(t *testing.T, a, b flow.Port) {
	for i := 0; i < 3; i++ {
		if err := a.Close(); err != nil {
			t.Fatalf("Close #%d = %v, want nil", i, err)
		}
	}
}

func testCloseReleasesRead(t *testing.T, a, b flow.Port) {
	done := eventually(func() error {
		_, err := a.Read(make([]byte, 16), time.Time{})
		return err
	})
	time.Sleep(20 * time.Millisecond)
	a.Close()
	if err := waitErr(t, done, "Read blocked across Close"); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Read blocked across Close = %v, want ErrClosed", err)
	}
}

func testPeerCloseReleasesRead(t *testing.T, a, b flow.Port) {
	done := eventually(func() error {
		_, err := b.Read(make([]byte, 16), time.Time{})
		return err
	})
	time.Sleep(20 * time.Millisecond)
	a.Close()
	if err := waitErr(t, done, "Read blocked across the peer's Close"); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Read blocked across the peer's Close = %v, want ErrClosed", err)
	}
}

func testCloseReleasesWrite(t *testing.T, a, b flow.Port) {
	fill(t, a)
	done := eventually(func() error { return a.Write([]byte("blocked"), time.Time{}) })
	time.Sleep(20 * time.Millisecond)
	a.Close()
	if err := waitErr(t, done, "Write blocked across Close"); !errors.Is(err, flow.ErrClosed) {
		t.Fatalf("Write blocked across Close = %v, want ErrClosed", err)
	}
}

func testConcurrent(t *testing.T, a, b flow.Port) {
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	// Each direction: one writer, one reader, at the same time.
	for _, pair := range [][2]flow.Port{{a, b}, {b, a}} {
		w, r := pair[0], pair[1]
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if err := w.Write(sdu(i, 1+i%flow.MaxSDU), deadline(10*slack)); err != nil {
					errs <- fmt.Errorf("Write #%d: %w", i, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, flow.MaxSDU)
			for i := 0; i < n; i++ {
				k, err := r.Read(buf, deadline(10*slack))
				if err != nil {
					errs <- fmt.Errorf("Read #%d: %w", i, err)
					return
				}
				if !bytes.Equal(buf[:k], sdu(i, 1+i%flow.MaxSDU)) {
					errs <- fmt.Errorf("Read #%d: got %d bytes, want SDU #%d (%d bytes)", i, k, i, 1+i%flow.MaxSDU)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
