package main

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ouronet/ouro/layer/capture"
	"github.com/ouronet/ouro/layer/capture/pcapng"
	"github.com/ouronet/ouro/layer/shim/udp"
)

// record is one captured packet for writeCapture.
type record struct {
	dir     capture.Dir
	content capture.Content
	port    uint64
	data    []byte
	len     int // before snapping; 0: len(data)
}

func writeCapture(t *testing.T, recs []record) string {
	t.Helper()
	var buf bytes.Buffer
	w := pcapng.NewWriter(&buf, "test")
	for _, r := range recs {
		h := make(capture.Header, capture.HeaderLen)
		capture.PutHeader(h, r.dir, capture.LayerUDP, r.content, r.port)
		n := r.len
		if n == 0 {
			n = len(r.data)
		}
		if err := w.Write("r.udp", capture.Record{Time: time.Unix(1, 0), Len: n, Header: h, Data: r.data}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "c.pcapng")
	if err := os.WriteFile(f, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestLoadKeepsTheFlood: of a capture, only received SDUs kept whole
// and of the most common length are replayed, each behind a shim header
// naming the endpoint id the capture recorded.
func TestLoadKeepsTheFlood(t *testing.T) {
	sdu := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	f := writeCapture(t, []record{
		{capture.In, capture.SDU, 7, sdu(1, 80), 0},
		{capture.Out, capture.SDU, 9, sdu(2, 80), 0},    // sent: not replayed
		{capture.In, capture.ShimCtl, 0, sdu(3, 80), 0}, // control
		{capture.In, capture.SDU, 7, sdu(4, 80), 0},
		{capture.In, capture.SDU, 5, sdu(5, 30), 0},   // a keepalive's length
		{capture.In, capture.SDU, 7, sdu(6, 80), 120}, // cut by the snap length
		{capture.In, capture.SDU, 7, sdu(8, 80), 0},
	})
	got, err := load(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d datagrams, want the 3 whole received SDUs of 80 bytes", len(got))
	}
	for i, want := range []byte{1, 4, 8} {
		d := got[i]
		if len(d) != udp.HeaderLen+80 || binary.BigEndian.Uint32(d) != 7 || !bytes.Equal(d[udp.HeaderLen:], sdu(want, 80)) {
			t.Errorf("datagram %d: % x..., want endpoint 7 and 80 bytes of %d", i, d[:8], want)
		}
	}
}

func TestLoadNothingToReplay(t *testing.T) {
	f := writeCapture(t, []record{{capture.Out, capture.SDU, 9, []byte{1, 2, 3}, 0}})
	if _, err := load(f); err == nil {
		t.Fatal("a capture without a received SDU loaded")
	}
}

// TestReplayArrives sends a capture's datagrams in GSO runs to a socket
// and checks that they arrive one by one, in order, at no more than the
// rate asked for.
func TestReplayArrives(t *testing.T) {
	var recs []record
	for i := range 10 {
		recs = append(recs, record{capture.In, capture.SDU, 42, bytes.Repeat([]byte{byte(i)}, 100), 0})
	}
	f := writeCapture(t, recs)
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Skipf("no UDP on 127.0.0.1: %v", err)
	}
	defer l.Close()
	_ = l.SetReadBuffer(1 << 20)
	from, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	src := from.LocalAddr().String()
	from.Close() // a free port for the replay to bind
	done := make(chan error, 1)
	go func() {
		// 2,000 datagrams a second for 0.3 s: about 600, in runs of 8.
		done <- run(f, src, l.LocalAddr().String(), 300*time.Millisecond, 8, 2000, true)
	}()
	buf := make([]byte, 2048)
	n := 0
	var runErr error
	finished := false
	giveUp := time.Now().Add(10 * time.Second)
	for time.Now().Before(giveUp) {
		// Until the replay has ended and what it sent is read.
		_ = l.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		k, addr, err := l.ReadFromUDP(buf)
		if err != nil {
			if finished {
				break
			}
			select {
			case runErr = <-done:
				finished = true
			default:
			}
			continue
		}
		if addr.String() != src {
			t.Fatalf("from %s, want %s", addr, src)
		}
		if k != udp.HeaderLen+100 || binary.BigEndian.Uint32(buf) != 42 || buf[udp.HeaderLen] != byte(n%10) {
			t.Fatalf("datagram %d: %d bytes, endpoint %d, first SDU byte %d; want 104, 42, %d", n, k, binary.BigEndian.Uint32(buf), buf[udp.HeaderLen], n%10)
		}
		n++
	}
	if !finished {
		t.Fatal("the replay did not end")
	}
	if runErr != nil {
		t.Fatal(runErr)
	}
	if n < 100 || n > 2000*0.3+8 {
		t.Fatalf("%d datagrams arrived in 0.3 s at 2,000/s (runs of 8)", n)
	}
}
