package ipstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/flow/ipnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type goRunner struct{}

func (goRunner) Go(f func()) { go f() }

// pair is two stacks, 10.9.0.1 and 10.9.0.2, each behind an IP bridge
// over one in-memory broker: the only way between them is ouro flows.
func pair(t *testing.T) (a, b *Stack) {
	a, b, _, _ = bridged(t)
	return a, b
}

// bridged is pair with the two bridges too.
func bridged(t *testing.T) (a, b *Stack, ba, bb *ipnet.Bridge) {
	t.Helper()
	fake := flowtest.NewBroker(64)
	var err error
	if a, err = New(netip.MustParsePrefix("10.9.0.1/24"), 1280); err != nil {
		t.Fatal(err)
	}
	if b, err = New(netip.MustParsePrefix("10.9.0.2/24"), 1280); err != nil {
		t.Fatal(err)
	}
	ba, err = ipnet.New(ipnet.Config{Broker: fake.Program("pa"), Dev: a, Runner: goRunner{}, Name: "ip.a",
		Routes: []ipnet.Route{{Prefix: netip.MustParsePrefix("10.9.0.2/32"), Name: "ip.b"}}})
	if err != nil {
		t.Fatal(err)
	}
	bb, err = ipnet.New(ipnet.Config{Broker: fake.Program("pb"), Dev: b, Runner: goRunner{}, Name: "ip.b",
		Routes: []ipnet.Route{{Prefix: netip.MustParsePrefix("10.9.0.1/32"), Name: "ip.a"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- ba.Run(ctx) }()
	go func() { done <- bb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		a.Close()
		b.Close()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
				t.Errorf("bridge: %v", err)
			}
		}
	})
	return a, b, ba, bb
}

// logPath logs what each bridge and stack counted, for a failure or a
// slow run.
func logPath(t *testing.T, stacks map[string]*Stack, bridges map[string]*ipnet.Bridge) {
	t.Helper()
	for name, br := range bridges {
		routes, noRoute, in, _, inDrops := br.Stats()
		t.Logf("bridge %s: routes %+v, no route %d, in %d, in drops %d, device errors %d", name, routes, noRoute, in, inDrops, br.DevErrors())
	}
	for name, s := range stacks {
		st := s.s.Stats()
		t.Logf("stack %s: tcp retransmits %d, timeouts %d, fast retransmits %d, slow-start retransmits %d, segments sent %d, received %d; nic rx %d, ip delivered %d, tx dropped %d; ep queued %d",
			name, st.TCP.Retransmits.Value(), st.TCP.Timeouts.Value(), st.TCP.FastRetransmit.Value(), st.TCP.SlowStartRetransmits.Value(),
			st.TCP.SegmentsSent.Value(), st.TCP.ValidSegmentsReceived.Value(), st.NICs.Rx.Packets.Value(), st.IP.PacketsDelivered.Value(), st.NICs.TxPacketsDroppedNoBufferSpace.Value(), s.ep.NumQueued())
	}
}

// TestHTTPAcrossFlows: an HTTP server on b's stack serves a client on
// a's, every packet carried by flows between the two bridges: a small
// page, then 4 MB hash-identical.
func TestHTTPAcrossFlows(t *testing.T) {
	a, b, ba, bb := bridged(t)
	blob := make([]byte, 4<<20)
	rand.Read(blob)
	l, err := b.Listen(80)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from b") })
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) { w.Write(blob) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return a.Dial(ctx, netip.MustParseAddrPort(addr))
		},
	}}
	defer client.CloseIdleConnections()
	get := func(path string) []byte {
		t.Helper()
		resp, err := client.Get("http://10.9.0.2:80" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	if got := get("/"); string(got) != "hello from b" {
		t.Fatalf("GET /: %q", got)
	}
	start := time.Now()
	defer func() {
		if t.Failed() || time.Since(start) > 5*time.Second {
			logPath(t, map[string]*Stack{"a": a, "b": b}, map[string]*ipnet.Bridge{"a": ba, "b": bb})
		}
	}()
	got := get("/blob")
	if sha256.Sum256(got) != sha256.Sum256(blob) {
		t.Fatalf("GET /blob: %d bytes, not the %d sent", len(got), len(blob))
	}
	t.Logf("4 MiB over HTTP across two stacks and two bridges in %v", time.Since(start).Round(time.Millisecond))
}

// TestDeviceErrors: what the bridge may hand the stack that is not an IP
// packet is refused; a closed stack ends Read and refuses Write.
func TestDeviceErrors(t *testing.T) {
	if _, err := New(netip.MustParsePrefix("10.9.0.1/24"), 100); !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("mtu 100: %v", err)
	}
	if _, err := New(netip.Prefix{}, 1280); !errors.Is(err, flow.ErrInvalid) {
		t.Fatalf("no address: %v", err)
	}
	s, err := New(netip.MustParsePrefix("fd00::1/64"), 1280)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{nil, bytes.Repeat([]byte{0x55}, 40)} {
		if _, err := s.Write(p); !errors.Is(err, flow.ErrInvalid) {
			t.Errorf("Write(% x...): %v, want ErrInvalid", p[:min(len(p), 4)], err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 2048))
		done <- err
	}()
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := s.Write([]byte{0x45, 0, 0, 20}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

// TestSACKRecovery: the stack's TCP recovers losses by SACK, not by
// gVisor's RACK-TLP (tuneTCP says why).
func TestSACKRecovery(t *testing.T) {
	s, err := New(netip.MustParsePrefix("10.9.0.1/24"), 1280)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var r tcpip.TCPRecovery
	if err := s.s.TransportProtocolOption(tcp.ProtocolNumber, &r); err != nil {
		t.Fatal(err)
	}
	if r&tcpip.TCPRACKLossDetection != 0 {
		t.Fatalf("TCP recovery %#x: RACK loss detection is on", r)
	}
	var sack tcpip.TCPSACKEnabled
	if err := s.s.TransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil || !sack {
		t.Fatalf("SACK %v (%v): want on", sack, err)
	}
}
