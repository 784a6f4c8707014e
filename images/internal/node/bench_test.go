package node

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/irm"
)

// benchPair starts two nodes over the UDP shim on 127.0.0.1 with one
// program each and returns an allocated flow's two ends.
func benchPair(b *testing.B, q flow.QoS) (a, z flow.Port, brA, brB *irm.Broker) {
	b.Helper()
	pa, pb := freePort(b), freePort(b)
	appA, chA := app("app")
	appB, chB := app("echo")
	for _, c := range []struct {
		cfg string
		x   Extra
	}{
		{fmt.Sprintf("[node]\nname = \"b\"\n[[ipcp]]\nkind = \"udp\"\nlayer = \"net\"\n[ipcp.udp]\naddr = \"127.0.0.1:%d\"\n", pb), appB},
		{fmt.Sprintf("[node]\nname = \"a\"\n[[ipcp]]\nkind = \"udp\"\nlayer = \"net\"\n[ipcp.udp]\naddr = \"127.0.0.1:%d\"\ndir = { echo = \"127.0.0.1:%d\" }\n", pa, pb), appA},
	} {
		cfg, err := ParseConfig([]byte(c.cfg))
		if err != nil {
			b.Fatal(err)
		}
		n, err := New(cfg, c.x)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(n.Stop)
	}
	brA, brB = <-chA, <-chB
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := brB.Bind(ctx, "echo"); err != nil {
		b.Fatal(err)
	}
	acc := make(chan flow.Port, 1)
	go func() {
		p, _, err := brB.Accept(ctx)
		if err != nil {
			b.Error(err)
		}
		acc <- p
	}()
	var err error
	a, _, err = brA.Alloc(ctx, "echo", q)
	if err != nil {
		b.Fatal(err)
	}
	z = <-acc
	b.Cleanup(func() { a.Close(); z.Close() })
	return a, z, brA, brB
}

func freePort(b *testing.B) int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// echoPort echoes SDUs on p until it fails.
func echoPort(p flow.Port) {
	buf := make([]byte, flow.MaxSDU)
	for {
		n, err := p.Read(buf, time.Time{})
		if err != nil {
			return
		}
		if p.Write(buf[:n], time.Time{}) != nil {
			return
		}
	}
}

// cpuTime returns the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per op since start as
// cpu-ns/op: on a shared machine the wall-clock ns/op of a round trip
// swings with the other load, the CPU it costs much less.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkRTT is one SDU's round trip between two programs in two nodes
// over the UDP shim on loopback, beside the same round trip over plain
// UDP sockets in the same process. Report: ns/op of each, and their ratio;
// cpu-ns/op is the CPU time of the whole process (both ends) per round
// trip.
func BenchmarkRTT(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(fmt.Sprintf("flow-udp-shim/%dB", size), func(b *testing.B) {
			a, z, _, _ := benchPair(b, flow.Raw())
			go echoPort(z)
			msg := make([]byte, size)
			buf := make([]byte, flow.MaxSDU)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if err := a.Write(msg, time.Time{}); err != nil {
					b.Fatal(err)
				}
				if _, err := a.Read(buf, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
		b.Run(fmt.Sprintf("plain-udp/%dB", size), func(b *testing.B) {
			srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			go func() {
				buf := make([]byte, 2048)
				for {
					n, from, err := srv.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					srv.WriteToUDPAddrPort(buf[:n], from)
				}
			}()
			cli, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer cli.Close()
			to := srv.LocalAddr().(*net.UDPAddr).AddrPort()
			msg := make([]byte, size)
			buf := make([]byte, 2048)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := cli.WriteToUDPAddrPort(msg, to); err != nil {
					b.Fatal(err)
				}
				cli.SetReadDeadline(time.Now().Add(time.Second))
				if _, _, err := cli.ReadFromUDPAddrPort(buf); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkAlloc is one flow allocation and deallocation between two
// nodes over the UDP shim on loopback, program to program.
func BenchmarkAlloc(b *testing.B) {
	_, _, brA, brB := benchPair(b, flow.Raw())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			p, _, err := brB.Accept(ctx)
			if err != nil {
				return
			}
			p.Close()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, _, err := brA.Alloc(ctx, "echo", flow.Raw())
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}
