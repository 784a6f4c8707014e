package flow

import (
	"syscall"
	"testing"

	"github.com/ouronet/ouro/flow/shmring"
)

// ShmPair returns two ShmPorts over one flow's shared rings: the
// program's end, and one over the node's End of the same mapping (its
// own mapping and descriptors, as in the node), joined by the flow's
// socket pair.
func ShmPair(t testing.TB, slots int) (program, node Port) {
	t.Helper()
	m, err := shmring.Create(shmring.Geometry{Slots: slots, MaxSDU: MaxSDU})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := shmring.NewEventfds()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dup := func(fd int) int {
		d, err := syscall.Dup(fd)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// The program's side, as the node hands it over.
	pp, err := newShmPort([]int{sp[1], dup(m.FD()), dup(evs[0]), dup(evs[1]), dup(evs[2]), dup(evs[3])})
	if err != nil {
		t.Fatal(err)
	}
	m.CloseFD()
	e, err := shmring.NewEnd(m, shmring.Node, evs)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newSeqpacketPort(sp[0])
	if err != nil {
		t.Fatal(err)
	}
	np := &ShmPort{e: e, c: c.c, gone: make(chan struct{})}
	go np.watch()
	t.Cleanup(func() { pp.Close(); np.Close() })
	return pp, np
}
