//go:build tamago && arm && (pi2 || pizero || pi1)

package node

import (
	"fmt"
	"net"
	"sync"

	"github.com/ouronet/ouro/board/raspberrypi"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/serial"
)

// The Raspberry Pi 2, Zero and 1 (board/raspberrypi): no Ethernet the
// image can drive (the Pi's Ethernet is behind USB), one link device, the
// mini UART (Board.LinkUART), for [ipcp.serial] board = true.
var board struct {
	mu   sync.Mutex // guards the fields
	b    *raspberrypi.Board
	link *raspberrypi.UART
}

// UseBoard gives the node package the image's initialised board: a serial
// IPCP configured with "board = true" uses its link UART.
func UseBoard(b *raspberrypi.Board) {
	board.mu.Lock()
	defer board.mu.Unlock()
	board.b = b
}

// NIC stands for a board NIC, which a Pi image never has: BoardNIC
// returns nil. It exists so that the router's shared entry point
// (images/router/main_tamago.go) compiles unchanged for the Pi.
type NIC struct{}

// NICStats has the fields of the other boards' NIC statistics.
type NICStats struct {
	RxFrames, RxBytes, TxFrames, TxBytes, RxFiltered, RxErrors, TxRingFull, Interrupts, RxLate uint64
}

// HardwareAddr is nil: there is no NIC.
func (*NIC) HardwareAddr() net.HardwareAddr { return nil }

// Stats is zero: there is no NIC.
func (*NIC) Stats() NICStats { return NICStats{} }

// BoardNIC is nil: the Pi image has no NIC.
func BoardNIC() *NIC { return nil }

// BoardLinkUART returns the link UART once a serial IPCP opened it, or nil.
func BoardLinkUART() *raspberrypi.UART {
	board.mu.Lock()
	defer board.mu.Unlock()
	return board.link
}

// boardUART is the board's mini UART for the serial shim.
func boardUART() (serial.Device, error) {
	board.mu.Lock()
	defer board.mu.Unlock()
	if board.b == nil {
		return nil, fmt.Errorf("[ipcp.serial] board = true: the image did not call UseBoard: %w", flow.ErrInvalid)
	}
	if board.link != nil {
		return nil, fmt.Errorf("[ipcp.serial] board = true: the link UART is already in use by another IPCP: %w", flow.ErrInvalid)
	}
	board.link = board.b.LinkUART()
	return board.link, nil
}

// resetBoardLink returns what re-initialises board link p: this board has
// none.
func resetBoardLink(boardPort) func() error { return nil }

// boardLinks are the board link devices this board has: none.
func boardLinks() []boardPort { return nil }

// openBoardLink is board link p; the Pi image has none.
func openBoardLink(p boardPort) (*netstack.Mux, error) {
	if p == "usb" {
		return nil, fmt.Errorf(`board = "usb": the Raspberry Pi image has no USB Ethernet gadget: %w`, flow.ErrInvalid)
	}
	return nil, fmt.Errorf("board = true: the Raspberry Pi image has no Ethernet NIC (use [ipcp.serial] board = true): %w", flow.ErrInvalid)
}
