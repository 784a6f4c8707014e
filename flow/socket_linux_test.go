package flow_test

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/flow/flowtest"
)

func seqpacketPair(t *testing.T) (flow.Port, flow.Port) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return flow.NewSeqpacketPort(conn(fds[0])), flow.NewSeqpacketPort(conn(fds[1]))
}

func TestSeqpacketPortConformance(t *testing.T) {
	flowtest.TestPort(t, func() (flow.Port, flow.Port) { return seqpacketPair(t) })
}

func TestShmPortConformance(t *testing.T) {
	flowtest.TestPort(t, func() (flow.Port, flow.Port) { return flow.ShmPair(t, 16) })
}

// benchPairs are the program↔node transports, as pairs of Ports.
func benchPairs(b *testing.B) map[string]func() (flow.Port, flow.Port) {
	return map[string]func() (flow.Port, flow.Port){
		"seqpacket": func() (flow.Port, flow.Port) { return seqpacketPair2(b) },
		"shm":       func() (flow.Port, flow.Port) { return flow.ShmPair(b, 16) },
	}
}

func seqpacketPair2(b *testing.B) (flow.Port, flow.Port) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			b.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	p, q := flow.NewSeqpacketPort(conn(fds[0])), flow.NewSeqpacketPort(conn(fds[1]))
	b.Cleanup(func() { p.Close(); q.Close() })
	return p, q
}

// BenchmarkPortRTT: a 64-byte SDU to an echo on the other end and back,
// over a socket pair (the old path) and over shared rings (spinning or
// not, with OURO_SHM_SPIN), in one process.
func BenchmarkPortRTT(b *testing.B) {
	for name, mk := range benchPairs(b) {
		b.Run(name, func(b *testing.B) {
			p, q := mk()
			go func() {
				buf := make([]byte, flow.MaxSDU)
				for {
					n, err := q.Read(buf, time.Time{})
					if err != nil || q.Write(buf[:n], time.Time{}) != nil {
						return
					}
				}
			}()
			msg, buf := make([]byte, 64), make([]byte, flow.MaxSDU)
			b.ResetTimer()
			for range b.N {
				if err := p.Write(msg, time.Time{}); err != nil {
					b.Fatal(err)
				}
				if _, err := p.Read(buf, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPortFlood: 1400-byte SDUs one way, as fast as the reader
// takes them (per SDU).
func BenchmarkPortFlood(b *testing.B) {
	for name, mk := range benchPairs(b) {
		b.Run(name, func(b *testing.B) {
			p, q := mk()
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, flow.MaxSDU)
				for range b.N {
					if _, err := q.Read(buf, time.Time{}); err != nil {
						return
					}
				}
			}()
			msg := make([]byte, 1400)
			b.SetBytes(1400)
			b.ResetTimer()
			for range b.N {
				if err := p.Write(msg, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
			<-done
		})
	}
}
