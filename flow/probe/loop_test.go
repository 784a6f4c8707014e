package probe

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
)

func TestPingOverPipe(t *testing.T) {
	client, server := flowtest.Pipe(16)
	done := make(chan error, 1)
	go func() {
		_, _, err := Echo(server, nil)
		done <- err
	}()
	var (
		mu      sync.Mutex
		replies []PingReply
	)
	sum, err := Ping(context.Background(), client, PingConfig{Name: "echo", Count: 5, Interval: time.Millisecond, Size: 64, Timeout: time.Second},
		func(r PingReply) { mu.Lock(); replies = append(replies, r); mu.Unlock() })
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if sum.Transmitted != 5 || sum.Received != 5 || sum.LossPercent != 0 {
		t.Errorf("summary %+v, want 5 sent, 5 received, no loss", sum)
	}
	if sum.RTTMinMS <= 0 || sum.RTTMinMS > sum.RTTAvgMS || sum.RTTAvgMS > sum.RTTMaxMS {
		t.Errorf("rtt min/avg/max = %g/%g/%g, want 0 < min <= avg <= max", sum.RTTMinMS, sum.RTTAvgMS, sum.RTTMaxMS)
	}
	mu.Lock()
	if len(replies) != 5 {
		t.Fatalf("%d replies reported, want 5", len(replies))
	}
	for i, r := range replies {
		if r.Seq != uint64(i) || r.Size != 64 || r.Outcome != OK {
			t.Errorf("reply %d = %+v, want seq %d, 64 bytes, OK", i, r, i)
		}
	}
	mu.Unlock()
	client.Close()
	if err := <-done; err != nil {
		t.Errorf("Echo: %v", err)
	}
}

// lossy wraps a Conn and drops every SDU whose index is in drop (writes).
type lossy struct {
	Conn
	mu   sync.Mutex
	n    int
	drop map[int]bool
}

func (l *lossy) Write(p []byte, d time.Time) error {
	l.mu.Lock()
	i := l.n
	l.n++
	l.mu.Unlock()
	if l.drop[i] {
		return nil
	}
	return l.Conn.Write(p, d)
}

func TestPingLossAndTimeout(t *testing.T) {
	client, server := flowtest.Pipe(16)
	defer client.Close()
	go Echo(&lossy{Conn: server, drop: map[int]bool{1: true, 3: true}}, nil)
	start := time.Now()
	sum, err := Ping(context.Background(), client, PingConfig{Name: "x", Count: 4, Size: HeaderLen, Timeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if sum.Transmitted != 4 || sum.Received != 2 || sum.LossPercent != 50 {
		t.Errorf("summary %+v, want 4 sent, 2 received, 50%% loss", sum)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second {
		t.Errorf("took %v, want about the 200ms reply timeout", el)
	}
}

func TestPingDeadlineAndCancel(t *testing.T) {
	client, server := flowtest.Pipe(16)
	defer client.Close()
	go Echo(server, nil)
	sum, err := Ping(context.Background(), client, PingConfig{Count: 0, Interval: 10 * time.Millisecond, Size: 32, Deadline: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if sum.Transmitted < 3 || sum.TimeMS > 1000 {
		t.Errorf("deadline run: %d sent in %g ms, want several within the 100ms deadline", sum.Transmitted, sum.TimeMS)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	sum, err = Ping(ctx, client, PingConfig{Interval: 10 * time.Millisecond, Size: 32}, nil)
	if err != nil || sum.Transmitted == 0 {
		t.Errorf("cancelled run: %+v, %v; want some SDUs, no error", sum, err)
	}
}

func TestPingPeerGone(t *testing.T) {
	client, server := flowtest.Pipe(16)
	server.Close()
	_, err := Ping(context.Background(), client, PingConfig{Count: 3, Interval: time.Millisecond, Size: 32}, nil)
	if !errors.Is(err, flow.ErrClosed) {
		t.Errorf("Ping to a closed flow: %v, want ErrClosed", err)
	}
}

func TestPerfOverPipe(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		size int
	}{
		{"flood", 0, 1400},
		{"paced", 2000, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := flowtest.Pipe(64)
			srv := make(chan Report, 1)
			go func() {
				r, err := ServePerf(server, nil)
				if err != nil {
					t.Errorf("ServePerf: %v", err)
				}
				srv <- r
			}()
			var progress int
			res, err := PerfClient(context.Background(), client, PerfConfig{
				Name: "p", Duration: 1100 * time.Millisecond, Size: tt.size, Rate: tt.rate,
				Progress: func(Progress) { progress++ },
			})
			if err != nil {
				t.Fatalf("PerfClient: %v", err)
			}
			client.Close()
			final := <-srv
			if !res.HaveServer || res.Server.SDUs != res.Sent || res.Loss != 0 || res.Sent == 0 {
				t.Errorf("result %+v, want every sent SDU counted by the server", res)
			}
			if final.SDUs != res.Sent || final.Bytes != res.SentBytes {
				t.Errorf("server's final count %+v, want %d SDUs, %d bytes", final, res.Sent, res.SentBytes)
			}
			if tt.rate > 0 && (res.SendPPS < tt.rate*0.8 || res.SendPPS > tt.rate*1.2) {
				t.Errorf("paced at %g SDU/s, want about %g", res.SendPPS, tt.rate)
			}
			if progress != 1 {
				t.Errorf("%d progress calls in 1.1s, want 1", progress)
			}
		})
	}
}

func TestPerfLossyReport(t *testing.T) {
	client, server := flowtest.Pipe(64)
	defer client.Close()
	drop := map[int]bool{}
	for i := 0; i < 1000; i += 4 {
		drop[i] = true
	}
	go ServePerf(server, nil)
	res, err := PerfClient(context.Background(), &lossy{Conn: client, drop: drop},
		PerfConfig{Duration: 200 * time.Millisecond, Size: 64, Rate: 2000})
	if err != nil {
		t.Fatalf("PerfClient: %v", err)
	}
	if res.Server.SDUs >= res.Sent || res.Loss < 20 || res.Loss > 30 {
		t.Errorf("sent %d, server counted %d, loss %g%%; want about 25%% lost", res.Sent, res.Server.SDUs, res.Loss)
	}
}

func TestPerfNoServer(t *testing.T) {
	client, server := flowtest.Pipe(1 << 14)
	defer client.Close()
	defer server.Close()
	res, err := PerfClient(context.Background(), client, PerfConfig{Duration: 50 * time.Millisecond, Size: 64, Rate: 1000, ReportTimeout: 10 * time.Millisecond})
	if !errors.Is(err, ErrNoReport) || res.Sent == 0 {
		t.Errorf("sent %d, err %v; want some sent and ErrNoReport", res.Sent, err)
	}
}

func TestUDPBaseline(t *testing.T) {
	for _, perf := range []bool{false, true} {
		name := map[bool]string{false: "echo", true: "perf"}[perf]
		t.Run(name, func(t *testing.T) {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Skipf("no UDP on loopback: %v", err)
			}
			defer pc.Close()
			ctx, cancel := context.WithCancel(context.Background())
			events := make(chan PeerEvent, 8)
			served := make(chan error, 1)
			go func() { served <- ServeUDP(ctx, pc, perf, func(e PeerEvent) { events <- e }) }()

			port, err := DialUDP(pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer port.Close()
			sum, err := Ping(context.Background(), port, PingConfig{Count: 5, Interval: time.Millisecond, Size: 64, Timeout: time.Second}, nil)
			if err != nil || sum.Received != 5 {
				t.Fatalf("ping over UDP: %+v, %v; want 5 received", sum, err)
			}
			if perf {
				res, err := PerfClient(context.Background(), port, PerfConfig{Duration: 200 * time.Millisecond, Size: 1000, Rate: 5000})
				if err != nil || !res.HaveServer || res.Server.SDUs == 0 {
					t.Fatalf("perf over UDP: %+v, %v; want a server report", res, err)
				}
				if res.Server.SDUs > res.Sent {
					t.Errorf("server counted %d of %d sent", res.Server.SDUs, res.Sent)
				}
			}
			cancel()
			if err := <-served; err != nil {
				t.Errorf("ServeUDP: %v", err)
			}
			if e := <-events; !e.Open || e.Peer.String() != port.LocalAddr().String() {
				t.Errorf("first event %+v, want the client %v opening", e, port.LocalAddr())
			}
			if e := <-events; e.Open || e.SDUs < 5 {
				t.Errorf("last event %+v, want the client ending with at least 5 SDUs", e)
			}
		})
	}
}

func TestUDPRefused(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no UDP on loopback: %v", err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	port, err := DialUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	_, err = Ping(context.Background(), port, PingConfig{Count: 3, Interval: 20 * time.Millisecond, Size: 32, Timeout: 100 * time.Millisecond}, nil)
	if !errors.Is(err, flow.ErrRefused) {
		t.Errorf("ping to a closed UDP port: %v, want ErrRefused", err)
	}
}

// TestEchoRuns: an echo over a batch port (runs read with ReadBatch,
// written back with WriteBatch) sends every SDU of a flood back, in
// order, and counts them.
func TestEchoRuns(t *testing.T) {
	client, server := flowtest.Pipe(8)
	type counts struct{ sdus, bytes uint64 }
	done := make(chan counts, 1)
	go func() {
		s, b, err := Echo(server, nil)
		if err != nil {
			t.Errorf("Echo: %v", err)
		}
		done <- counts{s, b}
	}()
	const total = 500
	go func() {
		var run [][]byte
		for i := range total {
			run = append(run, Put(make([]byte, 20+i%100), KindData, uint64(i), 0))
			if len(run) == 20 {
				if n, err := client.(flow.BatchPort).WriteBatch(run, time.Now().Add(5*time.Second)); n != len(run) || err != nil {
					t.Errorf("WriteBatch: %d, %v", n, err)
					return
				}
				run = run[:0]
			}
		}
	}()
	buf := make([]byte, flow.MaxSDU)
	var bytes uint64
	for i := range total {
		n, err := client.Read(buf, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if m := Msg(buf[:n]); !m.IsValid() || m.Seq() != uint64(i) || n != 20+i%100 {
			t.Fatalf("echo %d: %d bytes, seq %d", i, n, m.Seq())
		}
		bytes += uint64(n)
	}
	client.Close()
	if c := <-done; c.sdus != total || c.bytes != bytes {
		t.Errorf("Echo counted %d SDUs, %d bytes; want %d, %d", c.sdus, c.bytes, total, bytes)
	}
}

// inPlace is a Conn that takes SDUs written in place (InPlaceWriter),
// counting them, and refuses plain writes.
type inPlace struct {
	Conn
	withs int
}

func (c *inPlace) WriteWith(n int, fill func([]byte), d time.Time) error {
	c.withs++
	b := make([]byte, n)
	fill(b)
	return c.Conn.Write(b, d)
}

func (c *inPlace) Write([]byte, time.Time) error {
	return errors.New("a plain write where the Conn takes SDUs in place")
}

// TestPingInPlace: over a Conn that takes SDUs in place, Ping writes each
// ping there (InPlaceWriter), and the replies match as over Write.
func TestPingInPlace(t *testing.T) {
	c := &inPlace{}
	sum := pingEcho(t, func(client Conn) Conn { c.Conn = client; return c })
	if sum.Transmitted != 5 || sum.Received != 5 || c.withs != 5 {
		t.Errorf("summary %+v, %d written in place; want 5 sent, 5 received, 5 in place", sum, c.withs)
	}
}

// pingEcho pings an echo 5 times over a pipe, through the Conn wrap makes
// of the pipe's client end, and returns the summary.
func pingEcho(t *testing.T, wrap func(Conn) Conn) Summary {
	t.Helper()
	client, server := flowtest.Pipe(16)
	defer client.Close()
	go Echo(server, nil)
	sum, err := Ping(context.Background(), wrap(client), PingConfig{Name: "echo", Count: 5, Interval: time.Millisecond, Size: 64, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	return sum
}

// inPlaceRead is a Conn that hands SDUs over in place (InPlaceReader),
// counting them, and refuses plain reads.
type inPlaceRead struct {
	Conn
	withs int // touched by Ping's receiver only, until Ping returned
}

func (c *inPlaceRead) ReadWith(use func([]byte), d time.Time) error {
	buf := make([]byte, flow.MaxSDU)
	n, err := c.Conn.Read(buf, d)
	if err == nil {
		c.withs++
		use(buf[:n])
	}
	return err
}

func (c *inPlaceRead) Read([]byte, time.Time) (int, error) {
	return 0, errors.New("a plain read where the Conn reads in place")
}

// TestPingReadsInPlace: over a Conn that hands SDUs over in place, Ping
// reads each reply there (InPlaceReader), and the replies match as over
// Read.
func TestPingReadsInPlace(t *testing.T) {
	c := &inPlaceRead{}
	sum := pingEcho(t, func(client Conn) Conn { c.Conn = client; return c })
	if sum.Transmitted != 5 || sum.Received != 5 || c.withs != 5 {
		t.Errorf("summary %+v, %d read in place; want 5 sent, 5 received, 5 in place", sum, c.withs)
	}
}
