//go:build tamago && arm && (pi2 || pizero || pi1)

package main

import (
	"encoding/base64"
	"fmt"

	"github.com/ouronet/ouro/board/raspberrypi"
	"github.com/ouronet/ouro/images/internal/node"
)

// The Raspberry Pi 2, Zero and 1 and QEMU's raspi2b, raspi0 and raspi1ap
// (board/raspberrypi; build tags pi2|pizero|pi1 and linkcpuinit, see
// docs/boards-pi.md). Its link device is the mini UART, QEMU's second
// -serial; the console is the PL011, the first.
type board = raspberrypi.Board

const boardPrefix = "pi"

// piDefaultConfig is the configuration of a Pi image built without
// CONFIG: the serial shim on the link UART and an echo app, so that a
// node at the other end of the serial line can allocate a flow to "echo".
// (The shared defaultConfig, an Ethernet shim on the board NIC, does not
// apply: the Pi image has no NIC.)
const piDefaultConfig = `
[[ipcp]]
kind = "serial"
layer = "serial"
[ipcp.serial]
board = true

[[app]]
kind = "echo"
`

// init runs before main and after the linker's -X main.config: an image
// built without CONFIG gets piDefaultConfig rather than defaultConfig.
func init() {
	if config == "" {
		config = base64.StdEncoding.EncodeToString([]byte(piDefaultConfig))
	}
}

// boardExit prints the link UART's counters (when a serial IPCP used it)
// and exits: semihosting under QEMU, halt on a real board.
func boardExit(code int) {
	if u := node.BoardLinkUART(); u != nil {
		s := u.Stats()
		fmt.Printf("link uart: rx %d bytes, tx %d bytes, %d interrupts, %d overruns, %d stalls\n",
			s.RxBytes, s.TxBytes, s.Interrupts, s.RxOverruns, s.RxStalls)
	}
	raspberrypi.Exit(code)
}
