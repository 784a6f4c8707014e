//go:build !linux

package serial

import (
	"errors"
	"fmt"
	"os"
)

// OpenTTY opens a serial device by path; only on Linux (bare metal boards
// hand the shim their UART driver as a Device instead).
func OpenTTY(path string, baud int) (*os.File, error) {
	return nil, fmt.Errorf("serial: open %s: %w", path, errors.ErrUnsupported)
}

// OpenPTY creates a pseudo-terminal pair; only on Linux.
func OpenPTY() (master *os.File, slave string, err error) {
	return nil, "", fmt.Errorf("serial: pty: %w", errors.ErrUnsupported)
}
