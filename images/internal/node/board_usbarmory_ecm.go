//go:build tamago && arm && !pi2 && !pizero && !pi1

package node

import (
	"fmt"
	"sync"

	"github.com/ouronet/ouro/board/usbarmory"
	"github.com/ouronet/ouro/board/usbarmory/ecm"
	"github.com/ouronet/ouro/flow"
	"github.com/ouronet/ouro/images/internal/netstack"
	"github.com/ouronet/ouro/layer"
	"github.com/ouronet/ouro/layer/shim/eth"
)

// The board's USB CDC-ECM gadget (board = "usb") is a second link device,
// independent of the ENET: the first IPCP that asks for it initialises it
// and splits it with its own netstack.Mux between the Ethernet shim and
// the netstack, like the ENET (board_usbarmory.go).
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

// boardUSBFrames is port i of the USB gadget's mux.
func boardUSBFrames(i int, r layer.Runner) (eth.Device, error) {
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
		m, err := netstack.NewMux(newNICDevice("usb gadget", e, ecm.MaxSegmentSize, ecm.MaxSegmentSize-eth.EthLen), r)
		if err != nil {
			return nil, err
		}
		boardUSB.mux = m
	}
	return boardUSB.mux.Port(i), nil
}
