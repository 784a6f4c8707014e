package flow_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/flow/frct"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fastFRCT makes retransmission quick enough for tests on real time.
func fastFRCT(c *frct.Config) {
	c.InitialRTO = 50 * time.Millisecond
	c.MinRTO = 10 * time.Millisecond
	c.MaxRTO = 500 * time.Millisecond
}

// pair returns two Flows over a Pipe, both made with q.
func pair(t *testing.T, q flow.QoS, capacity int, wrap func(flow.Port) flow.Port, opts ...flow.Option) (a, b *flow.Flow) {
	t.Helper()
	pa, pb := flowtest.Pipe(capacity)
	if wrap != nil {
		pa, pb = wrap(pa), wrap(pb)
	}
	opts = append([]flow.Option{flow.WithFRCT(fastFRCT), flow.WithLinger(2 * time.Second)}, opts...)
	var err error
	a, err = flow.New(pa, flow.Info{ID: 1, Local: "a", Remote: "b", Layer: "test", QoS: q}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b, err = flow.New(pb, flow.Info{ID: 2, Local: "b", Remote: "a", Layer: "test", QoS: q}, opts...)
	if err != nil {
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

func sdu(i, n int) []byte {
	p := make([]byte, n)
	for j := range p {
		p[j] = byte(i*13 + j)
	}
	if n >= 4 {
		p[0], p[1], p[2], p[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	}
	return p
}

func seqOf(p []byte) int { return int(p[0])<<24 | int(p[1])<<16 | int(p[2])<<8 | int(p[3]) }

var presets = []struct {
	name     string
	q        flow.QoS
	frct     bool
	inOrder  bool
	reliable bool
}{
	{"raw", flow.Raw(), false, false, false},
	{"best_effort", flow.BestEffort(), false, false, false},
	{"voice", flow.Voice(), true, true, false},
	{"video", flow.Video(), true, true, false},
	{"data", flow.Data(), true, true, true},
	{"reliable_unordered", flow.QoS{Loss: 0, MaxGap: flow.MaxGapAny}, true, false, true},
}

func TestPresetsRoundTrip(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			a, b := pair(t, p.q, 64, nil)
			wantMax := flow.MaxSDU
			if p.frct {
				wantMax -= frct.HeaderSize
			}
			if a.MaxSDU() != wantMax {
				t.Fatalf("MaxSDU() = %d, want %d", a.MaxSDU(), wantMax)
			}
			const n = 300
			errc := make(chan error, 1)
			go func() {
				for i := 0; i < n; i++ {
					if _, err := a.Write(sdu(i, 4+i%(a.MaxSDU()-4))); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			buf := make([]byte, flow.MaxSDU)
			for i := 0; i < n; i++ {
				b.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, err := b.Read(buf)
				if err != nil {
					t.Fatalf("Read #%d: %v", i, err)
				}
				if !bytes.Equal(buf[:k], sdu(i, 4+i%(a.MaxSDU()-4))) {
					t.Fatalf("Read #%d: got SDU %d (%d bytes)", i, seqOf(buf), k)
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			s := b.Stats()
			if s.RecvSDUs != n {
				t.Fatalf("Stats().RecvSDUs = %d, want %d", s.RecvSDUs, n)
			}
		})
	}
}

// lossyPort drops, duplicates and delays what is written to it.
type lossyPort struct {
	flow.Port
	mu        sync.Mutex
	rng       *rand.Rand
	loss, dup float64
	held      [][]byte // delayed: sent after the next packet (reordering)
}

func (p *lossyPort) Write(b []byte, deadline time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rng.Float64()
	switch {
	case r < p.loss:
		return nil
	case r < p.loss+p.dup:
		if err := p.Port.Write(b, deadline); err != nil {
			return err
		}
	case r < p.loss+p.dup+0.1 && len(p.held) == 0:
		p.held = append(p.held, append([]byte(nil), b...))
		return nil
	}
	if err := p.Port.Write(b, deadline); err != nil {
		return err
	}
	for _, h := range p.held {
		p.Port.Write(h, deadline)
	}
	p.held = p.held[:0]
	return nil
}

func TestReliableOverLossyPort(t *testing.T) {
	for _, p := range presets {
		if !p.reliable {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			seed := uint64(7)
			wrap := func(port flow.Port) flow.Port {
				seed++
				return &lossyPort{Port: port, rng: rand.New(rand.NewPCG(seed, seed)), loss: 0.1, dup: 0.05}
			}
			a, b := pair(t, p.q, 256, wrap)
			const n = 500
			errc := make(chan error, 1)
			go func() {
				for i := 0; i < n; i++ {
					if _, err := a.Write(sdu(i, 100)); err != nil {
						errc <- err
						return
					}
				}
				errc <- a.Close() // lingers until everything is acknowledged
			}()
			seen := make([]bool, n)
			buf := make([]byte, flow.MaxSDU)
			for i := 0; i < n; i++ {
				b.SetReadDeadline(time.Now().Add(20 * time.Second))
				k, err := b.Read(buf)
				if err != nil {
					t.Fatalf("Read #%d: %v", i, err)
				}
				s := seqOf(buf[:k])
				if p.inOrder && s != i {
					t.Fatalf("Read #%d: SDU %d, want in order", i, s)
				}
				if s >= n || seen[s] {
					t.Fatalf("Read #%d: SDU %d twice or unknown", i, s)
				}
				seen[s] = true
			}
			if _, err := b.Read(buf); !errors.Is(err, io.EOF) || !errors.Is(err, flow.ErrClosed) {
				t.Fatalf("Read after the peer closed = %v, want io.EOF and ErrClosed", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("writer: %v", err)
			}
			if a.Stats().Retransmits == 0 {
				t.Fatalf("no retransmissions over a lossy port")
			}
		})
	}
}

func TestDeadlines(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			a, _ := pair(t, p.q, 4, nil)
			a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			start := time.Now()
			_, err := a.Read(make([]byte, 10))
			if !flowtest.IsTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past its deadline = %v, want ErrTimeout, net.Error Timeout(), os.ErrDeadlineExceeded", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("deadline error %v is not a net.Error with Timeout()", err)
			}
			if el := time.Since(start); el < 15*time.Millisecond || el > 2*time.Second {
				t.Fatalf("Read timed out after %v, want about 20ms", el)
			}

			// A deadline set while Read blocks ends it (net/http relies on it).
			a.SetReadDeadline(time.Time{})
			done := make(chan error, 1)
			go func() { _, err := a.Read(make([]byte, 10)); done <- err }()
			time.Sleep(20 * time.Millisecond)
			a.SetReadDeadline(time.Now().Add(-time.Second))
			select {
			case err := <-done:
				if !flowtest.IsTimeout(err) {
					t.Fatalf("blocked Read after SetReadDeadline(past) = %v, want a timeout", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatalf("SetReadDeadline did not end a blocked Read")
			}
		})
	}
}

func TestWriteDeadlineWindowFull(t *testing.T) {
	// Nobody reads b: the FRCT window (8) fills and Write times out.
	a, _ := pair(t, flow.Data(), 64, nil, flow.WithLinger(100*time.Millisecond), flow.WithFRCT(func(c *frct.Config) { fastFRCT(c); c.Window = 8 }))
	a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = a.Write([]byte("x"))
	}
	if !flowtest.IsTimeout(err) {
		t.Fatalf("Write into a closed window = %v, want a timeout", err)
	}
}

func TestErrors(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			a, b := pair(t, p.q, 8, nil)
			if _, err := a.Write(make([]byte, a.MaxSDU()+1)); !errors.Is(err, flow.ErrTooBig) {
				t.Errorf("Write(MaxSDU+1) = %v, want ErrTooBig", err)
			}
			a.Write([]byte("0123456789"))
			b.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4)
			if n, err := b.Read(buf); n != 4 || !errors.Is(err, flow.ErrTruncated) {
				t.Errorf("Read into 4 bytes = %d, %v; want 4, ErrTruncated", n, err)
			}
			if err := a.Close(); err != nil {
				t.Errorf("Close = %v", err)
			}
			if err := a.Close(); err != nil {
				t.Errorf("second Close = %v, want nil", err)
			}
			if _, err := a.Write([]byte("x")); !errors.Is(err, flow.ErrClosed) || !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write after Close = %v, want ErrClosed and net.ErrClosed", err)
			}
			if _, err := a.Read(buf); !errors.Is(err, flow.ErrClosed) {
				t.Errorf("Read after Close = %v, want ErrClosed", err)
			}
			if _, err := b.Read(buf); !errors.Is(err, io.EOF) || !errors.Is(err, flow.ErrClosed) {
				t.Errorf("Read after the peer closed = %v, want io.EOF and ErrClosed", err)
			}
			if _, err := b.Write([]byte("x")); !errors.Is(err, flow.ErrClosed) {
				t.Errorf("Write after the peer closed = %v, want ErrClosed", err)
			}
		})
	}
}

func TestCloseReleasesBlockedCalls(t *testing.T) {
	for _, p := range presets {
		t.Run(p.name, func(t *testing.T) {
			a, _ := pair(t, p.q, 4, nil)
			done := make(chan error, 1)
			go func() { _, err := a.Read(make([]byte, 10)); done <- err }()
			time.Sleep(20 * time.Millisecond)
			a.Close()
			select {
			case err := <-done:
				if !errors.Is(err, flow.ErrClosed) {
					t.Fatalf("Read blocked across Close = %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Close did not release a blocked Read")
			}
		})
	}
}

func TestPeerGone(t *testing.T) {
	// The peer end of the port is never served: keepalives go unanswered.
	q := flow.Data()
	q.Timeout = 200 * time.Millisecond
	pa, pb := flowtest.Pipe(1024)
	defer pb.Close()
	start := time.Now() // the silence counts from New: a loaded machine may take a while in it
	a, err := flow.New(pa, flow.Info{QoS: q}, flow.WithFRCT(fastFRCT), flow.WithLinger(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, err = a.Read(make([]byte, 10))
	if !errors.Is(err, flow.ErrPeerGone) {
		t.Fatalf("Read from a silent peer = %v, want ErrPeerGone", err)
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 3*time.Second {
		t.Fatalf("peer declared gone after %v, want about 200ms", el)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, flow.ErrPeerGone) {
		t.Fatalf("Write to a dead peer = %v, want ErrPeerGone", err)
	}
}

func TestKeepaliveKeepsIdleFlowAlive(t *testing.T) {
	q := flow.Voice()
	q.Timeout = 200 * time.Millisecond
	a, b := pair(t, q, 16, nil)
	time.Sleep(600 * time.Millisecond) // three timeouts of silence from the applications
	if _, err := a.Write([]byte("still here")); err != nil {
		t.Fatalf("Write after idling: %v", err)
	}
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 32)
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "still here" {
		t.Fatalf("Read after idling = %q, %v", buf[:n], err)
	}
}

func TestAddrs(t *testing.T) {
	a, _ := pair(t, flow.Raw(), 1, nil)
	la, ra := a.LocalAddr(), a.RemoteAddr()
	if la.Network() != "ouro" || la.String() != "a@test" || ra.String() != "b@test" {
		t.Fatalf("LocalAddr %v/%v, RemoteAddr %v", la.Network(), la, ra)
	}
	if got := (flow.Addr{Name: "x"}).String(); got != "x" {
		t.Fatalf("Addr without layer = %q, want x", got)
	}
	if a.Info().Remote != "b" {
		t.Fatalf("Info() = %+v", a.Info())
	}
}

func TestNewBadFRCT(t *testing.T) {
	pa, pb := flowtest.Pipe(1)
	defer pa.Close()
	defer pb.Close()
	_, err := flow.New(pa, flow.Info{QoS: flow.Data()}, flow.WithFRCT(func(c *frct.Config) { c.Window = 3 }))
	if !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("New with a bad FRCT window = %v, want ErrInvalid", err)
	}
}

func ExampleNew() {
	// Two ends of a port, as a broker or an IPCP hands them out.
	pa, pb := flowtest.Pipe(16)
	info := flow.Info{Local: "client", Remote: "echo", QoS: flow.Data()}
	a, _ := flow.New(pa, info)
	b, _ := flow.New(pb, flow.Info{Local: "echo", Remote: "client", QoS: flow.Data()})
	defer b.Close()

	a.Write([]byte("hello"))
	a.Close() // lingers until b acknowledged

	buf := make([]byte, b.MaxSDU())
	n, _ := b.Read(buf)
	fmt.Println(string(buf[:n]))
	_, err := b.Read(buf)
	fmt.Println(errors.Is(err, io.EOF))
	// Output:
	// hello
	// true
}

func TestFlowHonoursLayerSDULimit(t *testing.T) {
	for _, q := range []struct {
		name string
		qos  flow.QoS
	}{{"raw", flow.Raw()}, {"data", flow.Data()}} {
		t.Run(q.name, func(t *testing.T) {
			a, b := flowtest.Pipe(4)
			defer b.Close()
			f, err := flow.New(a, flow.Info{QoS: q.qos, MaxSDU: 1381}, flow.WithLinger(10*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.MaxSDU() > 1381 {
				t.Fatalf("MaxSDU() = %d, want at most the layer's 1381", f.MaxSDU())
			}
			if _, err := f.Write(make([]byte, f.MaxSDU()+1)); !errors.Is(err, flow.ErrTooBig) {
				t.Errorf("write of MaxSDU()+1 bytes: got %v, want ErrTooBig", err)
			}
		})
	}
}
