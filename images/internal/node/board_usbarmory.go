//go:build tamago && arm && !pi2 && !pizero && !pi1

package node

import (
	"fmt"
	"sync"

	"github.com/ouronet/ouro/board/usbarmory"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/serial"
)

// The board's Ethernet port is one piece of hardware for the whole image:
// the image hands its board over with UseBoard before New, and the node
// initialises the NIC (openBoardLink) before it boots the kernel, for the
// driver component that runs its receive half (driver.go) and the shims
// that open its ports.
var board struct {
	mu  sync.Mutex // guards the fields
	b   *usbarmory.Board
	mux *netstack.Mux
	nic *usbarmory.NIC
}

// UseBoard gives the node package the image's initialised board: IPCPs
// configured with "board = true" use its NIC.
func UseBoard(b *usbarmory.Board) {
	board.mu.Lock()
	defer board.mu.Unlock()
	board.b = b
}

// BoardNIC returns the board's NIC once an IPCP initialised it, or nil.
func BoardNIC() *usbarmory.NIC {
	board.mu.Lock()
	defer board.mu.Unlock()
	return board.nic
}

// openBoardLink initialises board link p, once, and returns its Mux.
func openBoardLink(p boardPort) (*netstack.Mux, error) {
	if p == "usb" {
		return openBoardUSB()
	}
	board.mu.Lock()
	defer board.mu.Unlock()
	if board.b == nil {
		return nil, fmt.Errorf("board = true: the image did not call UseBoard: %w", flow.ErrInvalid)
	}
	if board.mux == nil {
		nic, err := board.b.NIC()
		if err != nil {
			return nil, err
		}
		if err := nic.Init(); err != nil {
			return nil, fmt.Errorf("board NIC: %w", err)
		}
		board.nic = nic
		// MTU: the payload of a MaxFrameLen frame with an 802.1Q tag.
		board.mux = netstack.NewMux(newNICDevice("usbarmory", nic, usbarmory.MaxFrameLen, usbarmory.MaxFrameLen-eth.EthLen-4))
	}
	return board.mux, nil
}

// boardLinks are the board link devices this board has: the ENET and
// the USB Ethernet gadget. The node describes a driver component for
// each; one no configured IPCP uses initialises its device when a shim
// created at run time first attaches (driver.go).
func boardLinks() []boardPort { return []boardPort{"enet", "usb"} }

// resetBoardLink returns what re-initialises board link p once it is open:
// the ENET's usbarmory.NIC.Reset, the USB gadget's usbarmory.ECM.Reset
// (board_usbarmory_ecm.go).
func resetBoardLink(p boardPort) func() error {
	if p == "usb" {
		return resetBoardUSB
	}
	return func() error {
		board.mu.Lock()
		nic := board.nic
		board.mu.Unlock()
		if nic == nil {
			return fmt.Errorf("board NIC: reset before it was opened: %w", flow.ErrInvalid)
		}
		return nic.Reset()
	}
}

// boardUART is the board's link UART for the serial shim; this board has none.
func boardUART() (serial.Device, error) {
	return nil, fmt.Errorf("[ipcp.serial] board = true: the USB armory image has no link UART (its UART is the console): %w", flow.ErrInvalid)
}
