//go:build tamago && arm

package usbarmory

import (
	"runtime/goos"
	"strings"
	"unsafe"

	"github.com/usbarmory/tamago/soc/nxp/imx6ul"
)

// Semihosting operations and reasons ("Semihosting for AArch32 and AArch64",
// ARM DUI 0058, sections 6.5 SYS_EXIT and 6.6 SYS_EXIT_EXTENDED, and table
// 6-1 for the reason codes).
const (
	semihostingSysGetCmdline   = 0x15
	semihostingSysExitExtended = 0x20
	adpStoppedApplicationExit  = 0x20026
)

// defined in semihosting_arm.s
func semihostingCall(op uint32, arg uintptr) uintptr

// exitBlock is the SYS_EXIT_EXTENDED parameter block. It is a package
// variable so that its address is static: QEMU reads it through the guest
// MMU after the trap.
var exitBlock [2]uint32

// haltHook is the exit TamaGo's arm package installed (WFI forever); Exit
// falls back to it on real hardware.
var haltHook func(int32)

func init() {
	haltHook = goos.Exit
	goos.Exit = exit
}

// Exit ends the program with code. Under QEMU it issues semihosting
// SYS_EXIT_EXTENDED, so qemu-system-arm exits with exactly code (QEMU must
// run with -semihosting; without it the trap is an unhandled SVC and the
// guest hangs, which is why every QEMU run is wrapped in timeout). On a
// real board it prints the code on the console and halts the CPU in WFI
// with interrupts masked; use a watchdog or power cycle to restart.
//
// os.Exit and a panic (code 2) in any goroutine reach Exit too, because the
// package installs it as the runtime's exit hook.
func Exit(code int) {
	exit(int32(code))
}

func exit(code int32) {
	if !imx6ul.Native {
		exitBlock[0] = adpStoppedApplicationExit
		exitBlock[1] = uint32(code)
		semihostingCall(semihostingSysExitExtended, uintptr(unsafe.Pointer(&exitBlock[0])))
	}

	print("usbarmory: exit with code ", code, ", halting\n")

	if haltHook != nil {
		haltHook(code)
	}

	for {
	}
}

// Args returns the command line QEMU hands the guest through semihosting
// SYS_GET_CMDLINE, split on spaces: the words given with
// "-semihosting-config enable=on,arg=WORD,arg=WORD" (QEMU puts the kernel
// file name first when no arg= is given). On a real board it returns nil:
// there is no host to ask. Under QEMU started without -semihosting the trap
// is an unhandled SVC, so images call Args only on the test bench.
func (b *Board) Args() []string {
	if imx6ul.Native {
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
