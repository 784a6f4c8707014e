//go:build tamago && arm && !pi2 && !pizero && !pi1

package node

import (
	"fmt"
	"sync"

	"github.com/ouronet/ouro/board/usbarmory"
	"github.com/ouronet/ouro/board/usbarmory/ecm"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// The board's USB CDC-ECM gadget (board = "usb") is a second link device,
// independent of the ENET, with a driver component of its own
// ("driver.usb"), set up like the ENET's (board_usbarmory.go).
var boardUSB struct {
	mu  sync.Mutex // guards the fields
	mux *netstack.Mux
	ecm *usbarmory.ECM
}

// BoardECM returns the board's USB Ethernet gadget once an IPCP
// initialised it, or nil.
func BoardECM() *usbarmory.ECM {
	boardUSB.mu.Lock()
	defer boardUSB.mu.Unlock()
	return boardUSB.ecm
}

// openBoardUSB initialises the USB gadget, once, and returns its Mux.
func openBoardUSB() (*netstack.Mux, error) {
	board.mu.Lock()
	b := board.b
	board.mu.Unlock()
	if b == nil {
		return nil, fmt.Errorf(`board = "usb": the image did not call UseBoard: %w`, flow.ErrInvalid)
	}
	boardUSB.mu.Lock()
	defer boardUSB.mu.Unlock()
	if boardUSB.mux == nil {
		e, err := b.ECM()
		if err != nil {
			return nil, fmt.Errorf("board USB Ethernet: %w", err)
		}
		if err := e.Init(); err != nil {
			return nil, fmt.Errorf("board USB Ethernet: %w", err)
		}
		boardUSB.ecm = e
		// MTU: wMaxSegmentSize less the Ethernet header, 1500.
		boardUSB.mux = netstack.NewMux(newNICDevice("usb gadget", e, ecm.MaxSegmentSize, ecm.MaxSegmentSize-eth.EthLen))
	}
	return boardUSB.mux, nil
}

// resetBoardUSB re-initialises the USB gadget for a restarted driver
// (usbarmory.ECM.Reset): its queues emptied, its receive framing and
// link notifications started over, its interrupts unmasked and serviced,
// without a re-enumeration.
func resetBoardUSB() error {
	boardUSB.mu.Lock()
	e := boardUSB.ecm
	boardUSB.mu.Unlock()
	if e == nil {
		return fmt.Errorf("board USB Ethernet: reset before it was opened: %w", flow.ErrInvalid)
	}
	if err := e.Reset(); err != nil {
		return fmt.Errorf("board USB Ethernet: %w", err)
	}
	return nil
}
