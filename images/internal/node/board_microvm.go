//go:build tamago && amd64

package node

import (
	"fmt"
	"sync"

	"github.com/ouronet/ouro/board/qemu/microvm"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/eth"
	"github.com/ouronet/ouro/layer/shim/serial"
)

// The QEMU microvm board (board/qemu/microvm): its virtio-net device is
// adapted exactly as board_usbarmory.go adapts the ENET.
//
// The board's Ethernet port is one piece of hardware for the whole image:
// the image hands its board over with UseBoard before New, and the node
// initialises the NIC (openBoardLink) before it boots the kernel, for the
// driver component that runs its receive half (driver.go) and the shims
// that open its ports.
var board struct {
	mu  sync.Mutex // guards the fields
	b   *microvm.Board
	mux *netstack.Mux
	nic *microvm.NIC
}

// UseBoard gives the node package the image's initialised board: IPCPs
// configured with "board = true" use its NIC.
func UseBoard(b *microvm.Board) {
	board.mu.Lock()
	defer board.mu.Unlock()
	board.b = b
}

// BoardNIC returns the board's NIC once an IPCP initialised it, or nil.
func BoardNIC() *microvm.NIC {
	board.mu.Lock()
	defer board.mu.Unlock()
	return board.nic
}

// openBoardLink initialises the NIC, once, and returns its Mux; this
// board has no USB gadget.
func openBoardLink(p boardPort) (*netstack.Mux, error) {
	if p == "usb" {
		return nil, fmt.Errorf(`board = "usb": this image has no USB Ethernet gadget: %w`, flow.ErrInvalid)
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
		board.mux = netstack.NewMux(newNICDevice("microvm", nic, microvm.MaxFrameLen, microvm.MaxFrameLen-eth.EthLen-4))
	}
	return board.mux, nil
}

// boardLinks are the board link devices this board has: the virtio-net
// NIC.
func boardLinks() []boardPort { return []boardPort{"enet"} }

// resetBoardLink returns what re-initialises board link p once it is open
// (microvm.NIC.Reset); this board has no USB gadget.
func resetBoardLink(p boardPort) func() error {
	if p == "usb" {
		return nil
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
	return nil, fmt.Errorf("[ipcp.serial] board = true: the microvm image has no link UART: %w", flow.ErrInvalid)
}
