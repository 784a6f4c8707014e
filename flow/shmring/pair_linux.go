package shmring

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Pair returns both ends of one flow's rings of geometry g in this
// process, each over its own mapping of the memfd and its own eventfd
// descriptors, as a node and its program hold them after the hand-over:
// for tests and benchmarks of what runs over the rings. Release frees
// each.
func Pair(g Geometry) (node, prog *End, err error) {
	m, err := Create(g)
	if err != nil {
		return nil, nil, err
	}
	evs, err := NewEventfds()
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	dups := make([]int, 0, 5)
	for _, fd := range append([]int{m.FD()}, evs[:]...) {
		d, err := unix.Dup(fd)
		if err != nil {
			for _, d := range dups {
				unix.Close(d)
			}
			for _, fd := range evs {
				unix.Close(fd)
			}
			m.Close()
			return nil, nil, fmt.Errorf("shmring: dup: %w", err)
		}
		dups = append(dups, d)
	}
	m.CloseFD()
	pm, err := Open(dups[0]) // takes dups[0]
	if err != nil {
		for _, d := range dups[1:] {
			unix.Close(d)
		}
		for _, fd := range evs {
			unix.Close(fd)
		}
		m.Close()
		return nil, nil, err
	}
	if node, err = NewEnd(m, Node, evs); err != nil { // takes m and evs
		for _, d := range dups[1:] {
			unix.Close(d)
		}
		pm.Close()
		return nil, nil, err
	}
	if prog, err = NewEnd(pm, Program, [4]int(dups[1:])); err != nil { // takes pm and the dups
		node.Release()
		return nil, nil, err
	}
	return node, prog, nil
}
