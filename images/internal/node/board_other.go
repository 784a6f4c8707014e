//go:build !(tamago && (arm || amd64))

package node

import (
	"fmt"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/serial"
)

// openBoardLink is board link p; hosted images have none.
func openBoardLink(p boardPort) (*netstack.Mux, error) {
	if p == "usb" {
		return nil, fmt.Errorf(`board = "usb": this image has no USB Ethernet gadget: %w`, flow.ErrInvalid)
	}
	return nil, fmt.Errorf("board = true: this image runs hosted and has no board NIC: %w", flow.ErrInvalid)
}

// resetBoardLink returns what re-initialises board link p: nothing here.
func resetBoardLink(boardPort) func() error { return nil }

// boardLinks are the board link devices this image has: none hosted.
func boardLinks() []boardPort { return nil }

// boardUART is the board's link UART for the serial shim; this board has none.
func boardUART() (serial.Device, error) {
	return nil, fmt.Errorf("[ipcp.serial] board = true: this image runs hosted and has no board link UART: %w", flow.ErrInvalid)
}
