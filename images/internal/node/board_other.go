//go:build !(tamago && (arm || amd64))

package node

import (
	"fmt"

	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/serial"
)

// boardFrames is the board NIC's port i; hosted images have no board.
func boardFrames(int, layer.Runner) (eth.Device, error) {
	return nil, fmt.Errorf("board = true: this image runs hosted and has no board NIC: %w", flow.ErrInvalid)
}

// boardUART is the board's link UART for the serial shim; this board has none.
func boardUART() (serial.Device, error) {
	return nil, fmt.Errorf("[ipcp.serial] board = true: this image runs hosted and has no board link UART: %w", flow.ErrInvalid)
}

// boardUSBFrames is the USB gadget's port i; this image has none.
func boardUSBFrames(int, layer.Runner) (eth.Device, error) {
	return nil, fmt.Errorf(`board = "usb": this image has no USB Ethernet gadget: %w`, flow.ErrInvalid)
}
