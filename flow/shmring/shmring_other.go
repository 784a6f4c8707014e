//go:build !linux

package shmring

import (
	"fmt"
	"time"
)

// Mapping is one flow's shared memory; without Linux there is none.
type Mapping struct{}

// Create is unsupported without Linux (memfd, eventfd).
func Create(g Geometry) (*Mapping, error) {
	return nil, fmt.Errorf("shmring: create: %w", ErrUnsupported)
}

// Open is unsupported without Linux.
func Open(fd int) (*Mapping, error) {
	return nil, fmt.Errorf("shmring: open: %w", ErrUnsupported)
}

// End is one side of a flow's rings; without Linux there is none.
type End struct{}

// Recv is unsupported without Linux.
func (e *End) Recv(b []byte, deadline time.Time) (int, error) { return 0, ErrUnsupported }

// Send is unsupported without Linux.
func (e *End) Send(p []byte, deadline time.Time) error { return ErrUnsupported }

// Release does nothing without Linux.
func (e *End) Release() {}
