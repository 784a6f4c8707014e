package udp

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
	"github.com/ouronet/ouro/layer/ipcp"
	"github.com/ouronet/ouro/layer/shim/impair"
)

// The throughput pair sends b.N datagrams one way as fast as the sender
// goes and reports what arrived: rx-pps (packets delivered per second, up
// to the last one that arrived) and loss-% (UDP on loopback drops when the
// receiver lags). ns/op includes the 200 ms idle wait that ends a lossy
// run: compare rx-pps. The shim's rx-pps is to be at least 60% of the
// plain socket's.

var sizes = []int{64, 1400}

// receive counts packets from read (which blocks without a deadline) until
// want arrived or, once the sender finished, nothing came for 200 ms: then
// stop is called to unblock read.
func receive(want int, sent *atomic.Bool, read func(buf []byte) error, stop func()) (int, time.Time) {
	var got atomic.Int64
	done := make(chan struct{})
	go func() { // watchdog
		last := int64(-1)
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if n := got.Load(); sent.Load() && n == last {
				stop()
				return
			} else {
				last = n
			}
		}
	}()
	buf := make([]byte, 2048)
	var last time.Time
	for got.Load() < int64(want) {
		if err := read(buf); err != nil {
			break
		}
		got.Add(1)
		last = time.Now()
	}
	close(done)
	return int(got.Load()), last
}

func report(b *testing.B, got int, start, last time.Time) {
	el := last.Sub(start)
	b.ReportMetric(float64(got)/el.Seconds(), "rx-pps")
	b.ReportMetric(100*float64(b.N-got)/float64(b.N), "loss-%")
}

func BenchmarkUDPShimThroughput(b *testing.B) {
	for _, size := range sizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			a, s := pair(b, "127.0.0.1:0", impair.Config{})
			client, server := dial(b, a, s, "srv")
			pkt := make([]byte, size)
			var sent atomic.Bool
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			go func() {
				for range b.N {
					if client.Write(pkt, time.Time{}) != nil {
						break
					}
				}
				sent.Store(true)
			}()
			got, last := receive(b.N, &sent, func(buf []byte) error {
				_, err := server.Read(buf, time.Time{})
				return err
			}, func() { server.Close() })
			b.StopTimer()
			report(b, got, start, last)
			st := s.ipcp.Stats()
			b.ReportMetric(100*float64(st.Drops.RxFull)/float64(b.N), "rxfull-%")
			for !sent.Load() {
				time.Sleep(time.Millisecond)
			}
		})
	}
}

func BenchmarkPlainUDPThroughput(b *testing.B) {
	for _, size := range sizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			tx, rx := listen(b, "udp", "127.0.0.1:0"), listen(b, "udp", "127.0.0.1:0")
			defer tx.Close()
			defer rx.Close()
			to := addrOf(rx)
			pkt := make([]byte, size+HeaderLen)
			var sent atomic.Bool
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			go func() {
				for range b.N {
					tx.WriteToUDPAddrPort(pkt, to)
				}
				sent.Store(true)
			}()
			got, last := receive(b.N, &sent, func(buf []byte) error {
				_, _, err := rx.ReadFromUDPAddrPort(buf)
				return err
			}, func() { rx.Close() })
			b.StopTimer()
			report(b, got, start, last)
			for !sent.Load() {
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// The RTT pair: b.N ping-pongs of one SDU; ns/op is the round-trip time.

func BenchmarkUDPShimRTT(b *testing.B) {
	a, s := pair(b, "127.0.0.1:0", impair.Config{})
	client, server := dial(b, a, s, "srv")
	pingPong(b, client, server, 64)
}

// pingPong runs b.N round trips of a size-byte SDU from client to an
// echo on server (ns/op is the round-trip time), then closes server.
func pingPong(b *testing.B, client, server flow.Port, size int) {
	done := make(chan struct{})
	go func() { // echo
		defer close(done)
		buf := make([]byte, flow.MaxSDU)
		for {
			n, err := server.Read(buf, time.Time{})
			if err != nil {
				return
			}
			server.Write(buf[:n], time.Time{})
		}
	}()
	pkt := make([]byte, size)
	buf := make([]byte, flow.MaxSDU)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		client.Write(pkt, time.Time{})
		if _, err := client.Read(buf, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	server.Close()
	<-done
}

func BenchmarkPlainUDPRTT(b *testing.B) {
	c, e := listen(b, "udp", "127.0.0.1:0"), listen(b, "udp", "127.0.0.1:0")
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := e.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			e.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	to := addrOf(e)
	pkt := make([]byte, 64+HeaderLen)
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.WriteToUDPAddrPort(pkt, to)
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	e.Close()
	<-done
}

// BenchmarkAlloc measures one flow allocation on loopback, from Alloc to
// the accepting side holding its end (target: < 0.5 ms).
func BenchmarkAlloc(b *testing.B) {
	a, s := pair(b, "127.0.0.1:0", impair.Config{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		app, ipcpEnd := flowtest.Pipe(4)
		if err := a.ipcp.Alloc(ctx, ipcp.AllocReq{Dst: "srv"}, ipcpEnd); err != nil {
			b.Fatal(err)
		}
		acc := <-s.up.Accepted
		b.StopTimer()
		app.Close()
		acc.Port.Close()
		b.StartTimer()
	}
}
