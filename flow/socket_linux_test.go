package flow_test

import (
	"net"
	"os"
	"syscall"
	"testing"

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
