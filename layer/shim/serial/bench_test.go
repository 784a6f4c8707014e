package serial

import (
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer/shim/serial/serialtest"
)

// BenchmarkLink measures two shims over a pty pair and over TCP on
// 127.0.0.1, unlimited and with both directions paced to 115200 bit/s
// (8N1). Throughput sends 1400-byte SDUs one way (credit paces the
// sender, so nothing is lost); RTT is a 64-byte ping-pong.
//
//	go test -run '^$' -bench 'Link/.*/unlimited' -benchtime 3000x ./layer/shim/serial/
//	go test -run '^$' -bench 'Link/.*/115200' -benchtime 20x ./layer/shim/serial/
func BenchmarkLink(b *testing.B) {
	links := []struct {
		name string
		open func(b *testing.B) (Device, Device)
	}{
		{"pty", func(b *testing.B) (Device, Device) { return openPTY(b) }},
		{"tcp", func(b *testing.B) (Device, Device) { s, c := tcpPair(b); return c, s }},
	}
	for _, l := range links {
		for _, baud := range []int{0, 115200} {
			name := "unlimited"
			if baud > 0 {
				name = "115200"
			}
			b.Run(l.name+"/"+name+"/throughput-1400", func(b *testing.B) {
				da, db := l.open(b)
				benchThroughput(b, throttle(da, baud), throttle(db, baud))
			})
			b.Run(l.name+"/"+name+"/rtt-64", func(b *testing.B) {
				da, db := l.open(b)
				benchRTT(b, throttle(da, baud), throttle(db, baud))
			})
		}
	}
}

func throttle(d Device, baud int) Device {
	if baud == 0 {
		return d
	}
	return serialtest.NewThrottle(d, baud)
}

func benchPair(b *testing.B, da, db Device) (client, server flow.Port, a, bn *node) {
	cfg := Config{Keepalive: time.Second, DeadTime: 10 * time.Second, ProbeInterval: 250 * time.Millisecond}
	a, bn = pairOn(b, da, db, cfg)
	client, server = dial(b, a, bn, "srv")
	return client, server, a, bn
}

func benchThroughput(b *testing.B, da, db Device) {
	client, server, a, _ := benchPair(b, da, db)
	msg := make([]byte, flow.MaxSDU)
	go func() {
		for range b.N {
			if client.Write(msg, time.Time{}) != nil {
				return
			}
		}
	}()
	buf := make([]byte, flow.MaxSDU)
	b.SetBytes(flow.MaxSDU)
	b.ReportAllocs()
	b.ResetTimer()
	got := 0
	for got < b.N {
		if _, err := server.Read(buf, time.Time{}); err != nil { // no deadline: a timer allocates
			break
		}
		got++
	}
	b.StopTimer()
	b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "sdu/s")
	b.ReportMetric(100*float64(b.N-got)/float64(b.N), "lost-%")
	b.ReportMetric(float64(a.ipcp.Link().CreditStalls)/float64(b.N), "stalls/sdu")
}

func benchRTT(b *testing.B, da, db Device) {
	client, server, _, _ := benchPair(b, da, db)
	go func() {
		buf := make([]byte, flow.MaxSDU)
		for {
			n, err := server.Read(buf, time.Time{})
			if err != nil || server.Write(buf[:n], time.Time{}) != nil {
				return
			}
		}
	}()
	msg := make([]byte, 64)
	buf := make([]byte, flow.MaxSDU)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		client.Write(msg, time.Time{})
		if _, err := client.Read(buf, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/rtt")
}
