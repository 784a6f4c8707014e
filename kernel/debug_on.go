//go:build kerneldebug

package kernel

// debug enables ownership tracking of packet buffers: using a buffer after
// it moved into a ring or was freed, or pushing/freeing a buffer another
// component holds, panics. Build with -tags kerneldebug.
const debug = true
