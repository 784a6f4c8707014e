//go:build !kerneldebug

package kernel

// debug enables ownership tracking of packet buffers (see debug_on.go).
const debug = false
