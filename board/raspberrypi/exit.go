//go:build tamago && arm

package raspberrypi

import (
	"runtime/goos"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Semihosting operations and reasons ("Semihosting for AArch32 and
// AArch64", ARM DUI 0058, 6.6 SYS_EXIT_EXTENDED, 6.15 SYS_GET_CMDLINE,
// table 6-1 for the reason code).
const (
	semihostingSysGetCmdline   = 0x15
	semihostingSysExitExtended = 0x20
	adpStoppedApplicationExit  = 0x20026
)

func semihostingCall(op uint32, arg uintptr) uintptr

// exitBlock is the SYS_EXIT_EXTENDED parameter block; static so that its
// address does not move.
var exitBlock [2]uint32

var exiting atomic.Bool

// useSemihosting: under QEMU unless Board.NoSemihosting (set by Init).
var useSemihosting bool

// installExit makes the package the runtime's exit hook (os.Exit, and a
// panic with code 2), replacing the one arm.CPU.Init installed.
func installExit() {
	goos.Exit = exit
}

// ExitMarker starts the line Exit prints before it stops: "raspberrypi:
// exit N". A harness that cannot use semihosting (or a real board's
// serial log) reads the code from it.
const ExitMarker = "raspberrypi: exit "

// Exit ends the program with code. It first prints ExitMarker and the
// code on the console. Under QEMU it then issues semihosting
// SYS_EXIT_EXTENDED, so qemu-system-arm exits with exactly code (QEMU must
// run with -semihosting, or the image must set Board.NoSemihosting: an
// unexpected trap is an unhandled SVC, and the guest halts after the
// marker line). On a real board it halts the CPU in
// WFI with interrupts masked.
func Exit(code int) {
	exit(int32(code))
}

func exit(code int32) {
	if exiting.Swap(true) {
		// a fault in the semihosting trap (QEMU without -semihosting)
		// comes back here through a panic
		halt()
	}
	print(ExitMarker, code, "\n")
	if useSemihosting {
		exitBlock[0] = adpStoppedApplicationExit
		exitBlock[1] = uint32(code)
		semihostingCall(semihostingSysExitExtended, uintptr(unsafe.Pointer(&exitBlock[0])))
	}
	halt()
}

func halt() {
	ARM.DisableInterrupts(false)
	for {
		modelIdle(0)
	}
}

// Args returns the command line QEMU hands the guest through semihosting
// SYS_GET_CMDLINE, split on spaces ("-semihosting-config
// enable=on,arg=WORD,arg=WORD"). On a real board, and under QEMU with
// Board.NoSemihosting, it returns nil: there is no host to ask.
func (b *Board) Args() []string {
	if !useSemihosting {
		return nil
	}
	buf := make([]byte, 1024)
	blk := [2]uint32{uint32(uintptr(unsafe.Pointer(&buf[0]))), uint32(len(buf) - 1)}
	if semihostingCall(semihostingSysGetCmdline, uintptr(unsafe.Pointer(&blk[0]))) != 0 {
		return nil
	}
	n := min(int(blk[1]), len(buf))
	return strings.Fields(string(buf[:n]))
}
