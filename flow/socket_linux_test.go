package flow_test

import (
	"bytes"
	"encoding/binary"
	"errors"
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
			done := drain(q, b.N)
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

// drain reads n SDUs from q in a goroutine (or until q fails) and
// closes the channel it returns when done.
func drain(q flow.Port, n int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, flow.MaxSDU)
		for range n {
			if _, err := q.Read(buf, time.Time{}); err != nil {
				return
			}
		}
	}()
	return done
}

// BenchmarkPortFloodInPlace is BenchmarkPortFlood over shared rings with
// the program writing each 1,400-byte SDU in place (WriteWith: its
// sequence number into the slot, the rest as the slot holds it) instead
// of copying a buffer in (Write): the copy the in-place write saves.
func BenchmarkPortFloodInPlace(b *testing.B) {
	p, q := flow.ShmPair(b, 16)
	ip := p.(flow.InPlacePort)
	done := drain(q, b.N)
	var seq uint64
	fill := func(sdu []byte) { binary.BigEndian.PutUint64(sdu, seq) }
	b.SetBytes(1400)
	b.ResetTimer()
	for range b.N {
		seq++
		if err := ip.WriteWith(1400, fill, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}

// TestShmPortInPlace: a program's flow over shared rings is an
// InPlacePort: what WriteWith's fill writes reaches the node's side as
// that SDU, and ReadWith hands the program what the node sent, where it
// lies; a length beyond the flow's limit is ErrTooBig, and after Close
// both give ErrClosed.
func TestShmPortInPlace(t *testing.T) {
	prog, node := flow.ShmPair(t, 16)
	ip, ok := prog.(flow.InPlacePort)
	if !ok {
		t.Fatal("a program's shared-ring port is not an InPlacePort")
	}
	deadline := func() time.Time { return time.Now().Add(2 * time.Second) }
	buf := make([]byte, flow.MaxSDU)
	for i, size := range []int{1, 64, 1000, flow.MaxSDU} {
		want := bytes.Repeat([]byte{byte('a' + i)}, size)
		if err := ip.WriteWith(size, func(sdu []byte) { copy(sdu, want) }, deadline()); err != nil {
			t.Fatalf("WriteWith %d: %v", size, err)
		}
		n, err := node.Read(buf, deadline())
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("the node read %d bytes, %v; want %d of %q", n, err, size, want[:1])
		}
		if err := node.Write(want, deadline()); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := ip.ReadWith(func(sdu []byte) { got = append(got, sdu...) }, deadline()); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadWith: %d bytes, %v; want %d", len(got), err, size)
		}
	}
	if err := ip.WriteWith(flow.MaxSDU+1, func([]byte) {}, deadline()); !errors.Is(err, flow.ErrTooBig) {
		t.Errorf("WriteWith beyond the limit: %v, want ErrTooBig", err)
	}
	prog.Close()
	if err := ip.WriteWith(1, func([]byte) {}, deadline()); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("WriteWith after Close: %v, want ErrClosed", err)
	}
	if err := ip.ReadWith(func([]byte) {}, deadline()); !errors.Is(err, flow.ErrClosed) {
		t.Errorf("ReadWith after Close: %v, want ErrClosed", err)
	}
}

// TestFlowWriteWith: a Flow without FRCT over shared rings writes an SDU
// in place (the port's WriteWith); over a port that does not take SDUs
// in place (a pipe) fill writes into a buffer that goes out with Write:
// the same SDU either way, counted; a length beyond the flow's limit is
// ErrTooBig.
func TestFlowWriteWith(t *testing.T) {
	shmProg, shmNode := flow.ShmPair(t, 16)
	pipeProg, pipeNode := flowtest.Pipe(16)
	for _, tc := range []struct {
		name       string
		prog, node flow.Port
	}{{"shared rings", shmProg, shmNode}, {"pipe", pipeProg, pipeNode}} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := flow.New(tc.prog, flow.Info{QoS: flow.BestEffort(), MaxSDU: flow.MaxSDU})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want := bytes.Repeat([]byte("x"), 1000)
			if err := f.WriteWith(len(want), func(sdu []byte) { copy(sdu, want) }); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, flow.MaxSDU)
			n, err := tc.node.Read(buf, time.Now().Add(2*time.Second))
			if err != nil || !bytes.Equal(buf[:n], want) {
				t.Fatalf("the other end read %d bytes, %v; want the 1000 written", n, err)
			}
			if s := f.Stats(); s.SentSDUs != 1 || s.SentBytes != 1000 {
				t.Errorf("stats %+v, want 1 SDU, 1000 bytes sent", s)
			}
			if err := f.WriteWith(f.MaxSDU()+1, func([]byte) { t.Fatal("fill called") }); !errors.Is(err, flow.ErrTooBig) {
				t.Errorf("beyond the limit: %v, want ErrTooBig", err)
			}
		})
	}
}
